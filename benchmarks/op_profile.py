"""Per-op time of one training step, ours (from a jax profiler trace) against the PyTorch
peer's (from torch.profiler), grouped into the same kinds of work.

Run from the repository root (needs jax and torch in one interpreter; prints tables on stderr
and one JSON line on stdout):

    python benchmarks/op_profile.py [--model=dcgan|mlpgan|convvae] [--batch_size=64]
        [--steps=20] [--warmup=5] [--top=12]

Both sides run the steps `train_throughput.py` and `torch_peer.py` time (same networks and
losses, one fixed synthetic batch), one after the other in this process, each at its default
threads. Ours: the jitted step (state donated) under `jax.profiler.trace`; every XLA:CPU thunk
the trace records (`hlo_op` in the event's arguments: a fusion, a oneDNN custom call
`ffi_call`, a YNNPACK fusion, a `copy`, ...) is one op. Torch: `torch.profiler.profile` over
the peer's iterations; an op is an aten operator's self time (its own work, without the
operators it calls). Each side's op times are summed per kind (`KINDS`: convolutions,
matmuls, batch norm, outside the networks, layout copies, other elementwise work and
reductions) and divided by the number of steps, next to the wall time per step measured
outside the profiler. "outside the
networks" is the optimizer update, the losses and the noise draws (ours: ops whose jax op_name
names no flax module; torch: everything under `Optimizer.step`, plus the noise and the
loss). Op times are busy time: two ops running at once on the two cores both count, so a
side's sum can exceed its wall time, and idle gaps (dispatch, waiting) do not show up in it.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)

MODELS = ("dcgan", "mlpgan", "convvae")
KINDS = ("convolution", "matmul", "batch norm", "outside the networks", "layout copy", "other")
# Torch ops outside the networks besides the optimizer step's: the noise and the loss.
TORCH_OUTSIDE = re.compile(r"randn|normal_|binary_cross_entropy|sigmoid|log_sigmoid")


def our_kind(op: str, op_name: str) -> str:
    """The kind of the HLO op ``op`` (its name, no numeric suffix) with jax's ``op_name``
    metadata (``jit(train_step)/transpose(jvp(DCGANGenerator))/BatchNorm_1/mul``: a flax
    module's ops carry its CamelCase class or field names; the optimizer, EMA, losses and
    noise do not)."""
    if re.match(r"(ffi_call|custom-call|convolution)", op):
        return "convolution"
    # YNNPACK fusions hold dots and reductions (batch-norm statistics, bias gradients).
    if op.startswith("dot") or (op.startswith("ynn_fusion") and "dot_general" in op_name):
        return "matmul"
    if re.match(r"(copy|transpose|bitcast)", op):
        return "layout copy"
    if "BatchNorm" in op_name:
        return "batch norm"
    if op_name and not re.search(r"[A-Z]", op_name.replace("jit(train_step)", "")):
        return "outside the networks"
    return "other"


def torch_kind(name: str, ancestors: list[str]) -> str:
    """The kind of the aten op ``name`` called under ``ancestors`` (outermost first)."""
    if "conv" in name:
        return "convolution"
    if re.match(r"aten::(addmm|mm|bmm|matmul|linear)$", name):
        return "matmul"
    if "batch_norm" in name:
        return "batch norm"
    if any(a.startswith("Optimizer.") for a in [*ancestors, name]) or TORCH_OUTSIDE.search(name):
        return "outside the networks"
    if re.match(r"aten::(copy_|clone|contiguous|t|transpose|permute)$", name):
        return "layout copy"
    return "other"


def hlo_ops(trace_dir: str) -> dict[str, float]:
    """{HLO op name: summed microseconds} of the newest perfetto trace in ``trace_dir``."""
    paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    totals: dict[str, float] = collections.defaultdict(float)
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op:
            totals[op] += float(event["dur"])
    return totals


def op_names(hlo_text: str) -> dict[str, str]:
    """{instruction name: jax op_name metadata} of a compiled HLO module's text."""
    found = re.finditer(r"^\s*(?:ROOT )?%?([\w.-]+) = [^\n]*?op_name=\"([^\"]*)\"", hlo_text, re.M)
    return {m.group(1): m.group(2) for m in found}


def profile_ours(args) -> tuple[dict[str, tuple[str, float]], float]:
    """({op [kind]: (kind, microseconds)}, wall ms per step) of our step; an op is an HLO
    op name without its numeric suffix (all ``ffi_call``s together, ...)."""
    import jax  # noqa: PLC0415
    from train_throughput import build_gan, build_vae, time_steps  # noqa: PLC0415

    if args.model == "convvae":
        state, step, batch = build_vae(args.batch_size, False, "auto")
    else:
        state, step, batch = build_gan(args.model, args.batch_size, "auto", 0.0, False, "auto")
    step = jax.jit(step, donate_argnums=0)
    rng = jax.random.key(0)
    names = op_names(step.lower(state, batch, rng).compile().as_text())
    state, _, seconds = time_steps(step, state, batch, rng, args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(args.steps):
                state, metrics = step(state, batch, rng)
            jax.block_until_ready((state, metrics))
        ops = hlo_ops(tmp)
    grouped: dict[str, list] = {}
    for op, us in ops.items():
        base = re.sub(r"\.\d+$", "", op)
        kind = our_kind(base, names.get(op, ""))
        grouped.setdefault(f"{base} [{kind}]", [kind, 0.0])[1] += us
    return {name: tuple(entry) for name, entry in grouped.items()}, 1000.0 * seconds / args.steps


def profile_torch(args) -> tuple[dict[str, tuple[str, float]], float]:
    """({op [kind]: (kind, microseconds)}, wall ms per step) of the peer's iteration."""
    import torch  # noqa: PLC0415
    import torch_peer  # noqa: PLC0415

    iteration, real = torch_peer.build(args.model, args.batch_size, torch.device("cpu"))
    for _ in range(args.warmup):
        iteration(real)
    start = time.perf_counter()
    for _ in range(args.steps):
        iteration(real)
    seconds = time.perf_counter() - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            iteration(real)
    ops: dict[str, list] = {}
    for event in prof.events():
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.insert(0, parent.name)
            parent = parent.cpu_parent
        kind = torch_kind(event.name, ancestors)
        ops.setdefault(f"{event.name} [{kind}]", [kind, 0.0])[1] += event.self_cpu_time_total
    return {name: tuple(entry) for name, entry in ops.items()}, 1000.0 * seconds / args.steps


def summarise(ops: dict[str, tuple[str, float]], steps: int, top: int) -> dict:
    per_step = {name: us / 1000.0 / steps for name, (_, us) in ops.items()}
    kinds = dict.fromkeys(KINDS, 0.0)
    for name, (kind, _) in ops.items():
        kinds[kind] += per_step[name]
    ranked = sorted(per_step.items(), key=lambda item: -item[1])[:top]
    return {
        "busy_ms": round(sum(per_step.values()), 2),
        "kinds_ms": {k: round(v, 2) for k, v in kinds.items()},
        "top_ops_ms": [[name, round(ms, 3)] for name, ms in ranked],
    }


def define_flags():
    cli.define_enum("model", "dcgan", list(MODELS), "Model of train_throughput.py / torch_peer.py.")
    cli.define_integer("batch_size", 64, "Images per step.", lower_bound=1)
    cli.define_integer("steps", 20, "Profiled (and, before, timed) steps per side.", lower_bound=1)
    cli.define_integer("warmup", 5, "Untimed steps first (compile, allocator).", lower_bound=1)
    cli.define_integer("top", 12, "Ops listed per side.", lower_bound=1)


def main(args):
    platform.configure_cpu_defaults()  # applied already by cli.run; as train_throughput.py
    record = {"model": args.model, "batch": args.batch_size, "steps": args.steps}
    for side, profile in (("genimg", profile_ours), ("torch", profile_torch)):
        ops, wall_ms = profile(args)
        record[side] = {
            "wall_ms_per_step": round(wall_ms, 2),
            **summarise(ops, args.steps, args.top),
        }
    record["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    lines = [f"{'ms per step':22s} {'genimg':>8s} {'torch':>8s}"]
    for kind in KINDS:
        lines.append(f"{kind:22s} {record['genimg']['kinds_ms'][kind]:8.2f} "
                     f"{record['torch']['kinds_ms'][kind]:8.2f}")  # fmt: skip
    for key in ("busy_ms", "wall_ms_per_step"):
        lines.append(f"{key:22s} {record['genimg'][key]:8.2f} {record['torch'][key]:8.2f}")
    for side in ("genimg", "torch"):
        lines.append(f"\n{side} top ops (ms per step):")
        lines += [f"  {ms:8.3f}  {name}" for name, ms in record[side]["top_ops_ms"]]
    print("\n".join(lines), file=sys.stderr)
    print(json.dumps(record))


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)
