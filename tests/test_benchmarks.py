"""The benchmark scripts: one JSON record each with the peer's keys, the project's flag names,
and a PyTorch peer (benchmarks/torch_peer.py) whose networks are ours."""

import ast
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

from tests import reference as ref

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
PEER_KEYS = {"impl", "model", "batch", "device", "threads", "img_per_s", "ms_per_step", "steps"}
CLI_SCRIPTS = [
    "train_throughput.py",
    "compare.py",
    "ab.py",
    "loop_overhead.py",
    "accelerator_check.py",
]


def _load(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, timeout=300, check=True):
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _one_record(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def _docstring(script: str) -> str:
    return ast.get_docstring(ast.parse((BENCH / script).read_text()))


def _flag_names(help_text: str) -> str:
    """The flag names a --help lists, joined (their own characters only)."""
    names = [
        line.split(":")[0].strip()[2:] for line in help_text.splitlines() if line.startswith("  --")
    ]
    assert names, help_text
    return "".join(names)


@pytest.mark.parametrize("model", ["dcgan", "mlpgan", "convvae"])
def test_train_throughput_prints_one_record(model):
    out = _run(
        ["benchmarks/train_throughput.py", f"--model={model}", "--batch_size=8", "--steps=2"]
        + ["--warmup=1", "--log_norms"]
    )
    record = _one_record(out.stdout)
    assert PEER_KEYS <= record.keys()
    assert record["impl"] == "jax" and record["model"] == model
    assert record["batch"] == 8 and record["steps"] == 2 and record["log_norms"] is True
    assert record["finite"] is True and record["img_per_s"] > 0
    assert record["cpu_defaults"]["xla_flags"] in ("appended", "kept", "unsupported", "disabled")


def test_train_throughput_no_cpu_defaults_reaches_xla_flags():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--model=mlpgan", "--batch_size=4"]
        + ["--steps=1", "--warmup=0", "--no_cpu_defaults"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=env,
    )
    record = _one_record(out.stdout)
    assert record["cpu_defaults"] is None
    assert "ynn_fusion_type" not in record["xla_flags"]  # cli.run did not apply them either


@pytest.mark.parametrize("script", CLI_SCRIPTS)
def test_cli_scripts_use_the_project_convention(script):
    help_out = _run([f"benchmarks/{script}", "--help"], timeout=120)
    assert help_out.stdout.startswith(_docstring(script).splitlines()[0])
    assert "flags:" in help_out.stdout and "-" not in _flag_names(help_out.stdout)
    bad = _run([f"benchmarks/{script}", "--no-such-flag=1"], timeout=120, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


def test_benchmarks_stand_alone():
    """Nothing under benchmarks/ points at files beside the repository (a `../name` path)."""
    for path in [*BENCH.glob("*.py"), *BENCH.glob("*.md")]:
        assert not re.search(r"\.\./\w", path.read_text()), path


def test_torch_peer_networks_are_ours():
    """benchmarks/torch_peer.py's networks have the parameter tensors of the JAX networks
    that train_throughput.py times: the same counts, and the same shapes up to the order of
    their axes (torch stores [out, in, k, k] where flax stores [k, k, in, out]). Without torch,
    the counts pinned in tests/test_gan_models.py and tests/test_vae.py stand in."""
    ref.require("torch")
    peer, ours = _load("torch_peer"), _load("train_throughput")

    def shapes(tree):
        return sorted(tuple(sorted(x.shape)) for x in jax.tree.leaves(tree))

    def torch_shapes(module):
        return sorted(tuple(sorted(p.shape)) for p in module.parameters())

    for model in ("dcgan", "mlpgan"):
        state = jax.eval_shape(lambda m=model: ours.build_gan(m, 2, "auto", 0.0, False, "xla")[0])
        nets = peer.networks(model)
        assert torch_shapes(nets["g"]) == shapes(state.g_params), model
        assert torch_shapes(nets["d"]) == shapes(state.d_params), model
        counts = peer.param_counts()[model]
        assert counts["g"] == sum(x.size for x in jax.tree.leaves(state.g_params))
        assert counts["d"] == sum(x.size for x in jax.tree.leaves(state.d_params))
    state = jax.eval_shape(lambda: ours.build_vae(2, False, "xla")[0])
    assert torch_shapes(peer.networks("convvae")["vae"]) == shapes(state.params)
    ours_vae = sum(x.size for x in jax.tree.leaves(state.params))
    assert peer.param_counts()["convvae"]["vae"] == ours_vae == 191_265


def test_torch_peer_prints_one_record():
    ref.require("torch")
    out = _run(
        ["benchmarks/torch_peer.py", "--model=mlpgan", "--batch_size=8", "--steps=2"]
        + ["--warmup=1", "--threads=1"],
        timeout=120,
    )
    record = _one_record(out.stdout)
    assert PEER_KEYS <= record.keys()
    assert record["impl"] == "torch" and record["model"] == "mlpgan"
    assert record["batch"] == 8 and record["steps"] == 2 and record["threads"] == 1
    assert record["img_per_s"] > 0 and record["compile"] is False


def test_torch_peer_takes_the_new_flag_names_and_needs_only_torch():
    if ref.available("torch"):
        bad = _run(["benchmarks/torch_peer.py", "--batch=8"], timeout=120, check=False)
        assert bad.returncode == 2 and "--batch" in bad.stderr  # the old name is gone
    tree = ast.parse((BENCH / "torch_peer.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "genimg" for name in imported)  # runs without it


def test_compare_runs_both_sides(tmp_path):
    """compare.py passes flags both scripts accept and finds the in-repo peer by default."""
    have_torch = ref.available("torch")
    out_file = tmp_path / "results.json"
    out = _run(
        ["benchmarks/compare.py", f"--torch_python={sys.executable}", "--models=mlpgan"]
        + ["--batch_sizes=4", "--rounds=1", "--steps=2", "--warmup=1", "--threads=1"]
        + [f"--out={out_file}"]
    )
    results = json.loads(out_file.read_text())
    sides = {rec["side"]: rec for rec in results["records"]}
    assert set(sides) == ({"jax", "torch"} if have_torch else {"jax"})
    for rec in sides.values():
        assert "error" not in rec, rec
        assert rec["batch"] == 4 and rec["steps"] == 2 and rec["img_per_s"] > 0
    row = results["summary"][0]
    assert (row["ratio"] is not None) == have_torch
    assert out.stdout.splitlines()[0].startswith("model")


def test_accelerator_check_needs_an_accelerator_or_allow_cpu():
    if jax.default_backend() != "cpu":
        pytest.skip("an accelerator is present")
    out = subprocess.run(
        ["bash", "benchmarks/accelerator_check.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("error: accelerator_check: jax sees no GPU or TPU")
    assert len(out.stderr.strip().splitlines()) == 1 and "jax[cuda12]" in out.stderr


def test_accelerator_check_runs_its_path_on_the_cpu():
    """The measuring path with --allow_cpu, small: one JSON record per (model, dtype), FLOPs
    from XLA's cost analysis (the conv VAE's forward + backward: several MFLOP per image) and an MFU
    against the given peak. (The DCGAN-64 step takes tens of seconds per image on this CPU.)"""
    out = _run(
        ["benchmarks/accelerator_check.py", "--allow_cpu", "--models=convvae", "--batch_size=4"]
        + ["--steps=2", "--warmup=1", "--peak_tflops=2", '--test_report={"tests": 3}']
    )
    record = _one_record(out.stdout)
    assert record["backend"] == "cpu" and record["peak_tflops"] == {"given": 2.0}
    assert record["tests"] == {"tests": 3}
    row, row16 = record["throughput"]
    assert row["model"] == "convvae" and row["dtype"] == "float32" and row["batch"] == 4
    assert row16["dtype"] == "bfloat16" and row16["finite"] is True
    assert record["bf16_speedup"]["convvae"] == pytest.approx(
        row16["img_per_s"] / row["img_per_s"], rel=0.01
    )
    assert row["finite"] is True and row["img_per_s"] > 0
    assert 4 * 1e6 < row["flops_per_step"] < 4 * 1e9
    achieved = row["flops_per_step"] / (row["ms_per_step"] / 1000) / 1e12
    assert row["mfu"]["given"] == pytest.approx(achieved / 2, rel=0.02, abs=1e-4)
