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
    "quality_per_minute.py",
    "op_profile.py",
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
    per_step = ["--per_step"] if model == "mlpgan" else []
    out = _run(
        ["benchmarks/train_throughput.py", f"--model={model}", "--batch_size=8", "--steps=3"]
        + ["--warmup=1", "--log_norms", *per_step]
    )
    record = _one_record(out.stdout)
    assert PEER_KEYS <= record.keys()
    assert record["impl"] == "jax" and record["model"] == model
    assert record["batch"] == 8 and record["steps"] == 3 and record["log_norms"] is True
    assert record["finite"] is True and record["img_per_s"] > 0
    assert record["cpu_defaults"]["xla_flags"] in ("appended", "kept", "unsupported", "disabled")
    if per_step:  # min <= p10 <= median <= p90 <= max, all positive
        spread = [record["per_step_ms"][k] for k in ("min", "p10", "p50", "p90", "max")]
        assert 0 < spread[0] and spread == sorted(spread), spread
    else:
        assert "per_step_ms" not in record


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


def test_torch_peer_trains_for_a_budget_and_writes_samples_at_each_mark(tmp_path):
    ref.require("torch")
    import numpy as np

    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (130, 28, 28), dtype=np.uint8))
    out = _run(
        ["benchmarks/torch_peer.py", "--model=dcgan", "--train_minutes=0.002,0.001"]
        + [f"--data={data}", f"--out={tmp_path / 'out'}", "--num_samples=5", "--threads=1"],
        timeout=120,
    )
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["minutes"] for r in records] == [0.001, 0.002]
    assert 1 <= records[0]["steps"] < records[1]["steps"]
    assert records[1]["images_seen"] == 64 * records[1]["steps"]
    for record in records:
        assert record["train_s"] >= 60 * record["minutes"]
        for mode in ("eval", "train"):
            with np.load(record["files"][mode]) as f:
                images = f["images"]
            assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    bad = _run(["benchmarks/torch_peer.py", "--train_minutes=1"], timeout=120, check=False)
    assert bad.returncode == 2 and "--train_minutes needs --data and --out" in bad.stderr


def test_quality_per_minute_snapshots_table_and_plot(tmp_path):
    import time
    import types

    import numpy as np

    qpm = _load("quality_per_minute")
    snaps = qpm.Snapshots([1.0, 2.0], clock=time.perf_counter() - 90.0)  # 1.5 minutes ago
    ctx = types.SimpleNamespace(step=7, state={"w": jax.numpy.ones(3)})
    snaps(ctx)
    snaps(ctx)  # still before the 2-minute mark
    assert [(s["minutes"], s["step"]) for s in snaps.taken] == [(1.0, 7)]
    assert isinstance(snaps.taken[0]["state"]["w"], np.ndarray)  # a host copy
    snaps.clock -= 60.0
    snaps(types.SimpleNamespace(step=9, state={}))
    assert [s["step"] for s in snaps.taken] == [7, 9] and not snaps.marks

    rows = [
        {"impl": impl, "sampling": mode, "minutes": m, "step": int(10 * m), "fid": fid / m,
         **dict.fromkeys(("kid", "precision", "recall", "density", "coverage"), 0.5)}
        for impl, mode, fid in (("genimg", "ema", 40.0), ("torch", "batch norm eval", 90.0))
        for m in (2.0, 5.0)
    ]  # fmt: skip
    lines = qpm.table(rows).splitlines()
    assert len(lines) == 5 and lines[0].split()[:3] == ["side", "sampling", "min"]
    assert lines[1].split()[:4] == ["genimg", "ema", "2", "20"]
    picture = tmp_path / "docs" / "fid.png"
    qpm.plot(rows, str(picture))
    from PIL import Image

    assert Image.open(picture).size == (600, 400)


def test_op_profile_sorts_ops_into_kinds():
    prof = _load("op_profile")
    hlo = (
        "  %multiply_add_fusion.3 = f32[8]{0} fusion(%a), kind=kLoop, calls=%c, "
        'metadata={op_name="jit(train_step)/add" stack_frame_id=3}\n'
        "  ROOT %add_fusion.1 = f32[8]{0} fusion(%b), kind=kLoop, calls=%d, metadata={op_name="
        '"jit(train_step)/transpose(jvp(DCGANGenerator))/BatchNorm_1/mul"}\n'
        "  %copy.2 = f32[8]{0} copy(%a)\n"
    )
    names = prof.op_names(hlo)
    assert names == {
        "multiply_add_fusion.3": "jit(train_step)/add",
        "add_fusion.1": "jit(train_step)/transpose(jvp(DCGANGenerator))/BatchNorm_1/mul",
    }
    kinds = {op: prof.our_kind(op.split(".")[0], names.get(op, "")) for op in names}
    assert kinds == {"multiply_add_fusion.3": "outside the networks", "add_fusion.1": "batch norm"}
    assert prof.our_kind("ffi_call", "") == "convolution"
    assert prof.our_kind("ynn_fusion", "jit(train_step)/DCGANGenerator/Dense_0/dot_general") == (
        "matmul"
    )
    bn_stats = "jit(train_step)/DCGANGenerator/BatchNorm_0/reduce_sum"
    assert prof.our_kind("ynn_fusion", bn_stats) == "batch norm"
    assert prof.our_kind("copy", "") == "layout copy"
    mod = "jit(train_step)/jvp(DCGANDiscriminator)/Conv_0/add"
    assert prof.our_kind("add_fusion", mod) == "other"
    assert prof.torch_kind("aten::convolution_backward", []) == "convolution"
    assert prof.torch_kind("aten::mul_", ["Optimizer.step#Adam.step"]) == "outside the networks"
    assert prof.torch_kind("aten::mul", ["aten::leaky_relu"]) == "other"


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


def test_experiment_config_takes_presets_and_fails_in_one_line(capsys):
    sys.path.insert(0, str(BENCH))  # loop_overhead imports train_throughput from benchmarks/
    loop_overhead = _load("loop_overhead")
    assert loop_overhead.experiment_config("dcgan").model.g_width == 32
    classic = loop_overhead.experiment_config("dcgan:classic")
    assert (classic.model.g_width, classic.optim.g_lr, classic.train.steps) == (64, 1e-4, 2000)
    for spec, expected in (("dcgan:huge", "unknown preset 'huge'"), ("nope", "experiments.nope")):
        with pytest.raises(SystemExit) as exit_info:
            loop_overhead.experiment_config(spec)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: --experiment={spec}: ") and expected in err
        assert err.count("\n") == 1
