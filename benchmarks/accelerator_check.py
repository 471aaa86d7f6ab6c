"""Train-step throughput and model FLOP utilisation on a GPU or TPU, printed as one JSON line:
the measuring half of benchmarks/accelerator_check.sh (which runs the test suite's
device-independent subset first and passes its outcome in).

    python benchmarks/accelerator_check.py [--batch_size=256] [--steps=20] [--warmup=3]
        [--models=dcgan64,convvae] [--peak_tflops=X] [--allow_cpu]

Models, built by benchmarks/train_throughput.py as for the PyTorch comparison:
- dcgan64: the DCGAN at 64x64x3 (4 stride-2 stages, width 64): one D update on real + fake,
  then one G update, non-saturating loss, Adam;
- convvae: the conv VAE of experiments/vae.py (28x28x1, latent 16), one Adam step on the ELBO.
One fixed synthetic batch on the device, `warmup` untimed steps, then `steps` timed ones ending
in `block_until_ready`; one device (the first), state donated.

FLOPs per step are XLA's cost analysis of the compiled step
(`jax.jit(step).lower(...).compile().cost_analysis()["flops"]`): what the compiled program
executes, which counts the multiplications by the zeros of the transposed convolutions'
dilated or sub-pixel forms too, so it can overstate the useful FLOPs. Achieved FLOP/s =
FLOPs / measured step time; MFU = achieved / the chip's dense peak from `PEAKS` (datasheet
numbers per jax device), for each kind of arithmetic the chip offers: "fp32" (GPU CUDA cores),
"tf32" (GPU tensor cores, which XLA may use for float32 convolutions and matmuls at the default
precision) and "bf16" (TPUs run float32 matmuls at the default precision as bf16 passes). An
unknown chip gets null unless --peak_tflops is given (one number, reported as "given").

dtypes: float32 and bfloat16 (`model.dtype`: compute in bf16, parameters, optimizer state and
losses in fp32; `genimg.models.precision`); the JSON has one record per (model, dtype) and
the bf16 speedup per model.

--allow_cpu runs the same path on the CPU (to test this script; the numbers mean nothing for
an accelerator). Without it, a CPU-only jax is a one-line error (exit status 1).
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg import cli  # noqa: E402  (repo root on sys.path first)

MODELS = {"dcgan64": (64, 64, 3), "convvae": (28, 28, 1)}
DTYPES = ("float32", "bfloat16")
# Dense peak TFLOP/s per jax device (datasheets; TPU v2/v3 expose each TensorCore, half a chip,
# as a device). The first key contained in `device_kind` wins, so the longer names go first.
PEAKS = {
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
    "V100": {"fp32": 15.7},
    "T4": {"fp32": 8.1},
    "TPU v2": {"bf16": 22.5},
    "TPU v3": {"bf16": 61.5},
    "TPU v4": {"bf16": 275.0},
    "TPU v5 lite": {"bf16": 197.0},
    "TPU v5e": {"bf16": 197.0},
    "TPU v5": {"bf16": 459.0},
    "TPU v6 lite": {"bf16": 918.0},
    "TPU v6e": {"bf16": 918.0},
}
NO_ACCELERATOR = (
    "accelerator_check: jax sees no GPU or TPU (backend cpu). Install jax for the "
    'accelerator (pip install -U "jax[cuda12]" for an NVIDIA GPU, pip install -r '
    "requirements-tpu.txt on a TPU VM) and rerun; --allow_cpu runs the same path on the CPU"
)


def peaks_for(device_kind: str, given: float | None) -> dict[str, float]:
    if given:
        return {"given": given}
    for name, peaks in PEAKS.items():
        if name.lower() in device_kind.lower():
            return dict(peaks)
    return {}


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per module
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


def _build(model: str, batch: int, dtype: str):
    import train_throughput as tt

    if model == "convvae":
        return tt.build_vae(batch, False, "xla", dtype=dtype)
    return tt.build_gan(
        "dcgan", batch, "auto", 0.0, False, "xla", image_shape=MODELS[model], dtype=dtype
    )


def measure(model: str, dtype: str, batch: int, steps: int, warmup: int, peaks: dict) -> dict:
    import jax
    import train_throughput as tt

    state, train_step, data = _build(model, batch, dtype)
    device = jax.devices()[0]
    state, data = jax.block_until_ready(jax.device_put((state, data), device))
    rng = jax.random.key(42)
    t0 = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=0).lower(state, data, rng).compile()
    compile_s = time.perf_counter() - t0
    flops = _flops(step)
    state, metrics, seconds = tt.time_steps(step, state, data, rng, warmup, steps)
    step_s = seconds / steps
    achieved = flops / step_s / 1e12 if flops else None
    finite = all(bool(jax.numpy.isfinite(v).all()) for v in jax.tree.leaves(metrics))
    return {
        "model": model,
        "image_shape": list(MODELS[model]),
        "dtype": dtype,
        "batch": batch,
        "steps": steps,
        "img_per_s": round(batch / step_s, 1),
        "ms_per_step": round(1000 * step_s, 3),
        "compile_s": round(compile_s, 2),
        "flops_per_step": flops,
        "achieved_tflops": None if achieved is None else round(achieved, 3),
        "mfu": {
            kind: (None if achieved is None else round(achieved / peak, 4))
            for kind, peak in peaks.items()
        }
        or None,
        "finite": finite,
    }


def _speedups(records) -> dict:
    """img/s in bfloat16 over img/s in float32, per model."""
    rate = {(r["model"], r["dtype"]): r["img_per_s"] for r in records}
    return {
        m: round(rate[m, "bfloat16"] / rate[m, "float32"], 3)
        for m, _ in rate
        if (m, "float32") in rate and (m, "bfloat16") in rate
    }


def define_flags():
    cli.batch_size_flag(256, "Images per step.")
    cli.define_integer("steps", 20, "Timed steps per model.", lower_bound=1)
    cli.define_integer("warmup", 3, "Untimed steps before the timed ones.", lower_bound=0)
    cli.define_list("models", list(MODELS), f"Some of {', '.join(MODELS)}.")
    cli.define_float("peak_tflops", None, "The chip's peak TFLOP/s (default: the PEAKS table).")
    cli.define_bool("allow_cpu", False, "Run on the CPU too (tests this script).")
    cli.define_string(
        "test_report", None, "JSON of the test run to include (accelerator_check.sh passes it)."
    )


def main(args) -> None:
    import jax

    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        cli.fail(f"unknown --models {unknown}; expected some of {list(MODELS)}")
    backend = jax.default_backend()
    if backend == "cpu" and not args.allow_cpu:
        cli.fail(NO_ACCELERATOR)
    device = jax.devices()[0]
    peaks = peaks_for(device.device_kind, args.peak_tflops)
    records = [
        measure(m, dtype, args.batch_size, args.steps, args.warmup, peaks)
        for m in args.models
        for dtype in DTYPES
    ]
    print(
        json.dumps(
            {
                "backend": backend,
                "device_kind": device.device_kind,
                "num_devices": jax.device_count(),
                "jax": jax.__version__,
                "peak_tflops": peaks or None,
                "tests": json.loads(args.test_report) if args.test_report else None,
                "throughput": records,
                "bf16_speedup": _speedups(records),
            }
        )
    )


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)
