"""Per-layer speed of the DCGAN and conv VAE: each conv / dense, forward + both gradients, ours vs
PyTorch, in GFLOP/s against a measured fp32 matmul peak.

Run from the repository root with an interpreter that has both jax and torch (prints a
markdown table on stdout):

    python benchmarks/layer_table.py [--batch_size=64] [--iters=10] [--rounds=3]
        [--backends=auto,xla]

Each layer is the module the models use (`flax.linen.Conv` with the backend's
`conv_general_dilated`, `genimg.models.layers.ConvTranspose`, `flax.linen.Dense`) and its
torch counterpart (`Conv2d`, `ConvTranspose2d`, `Linear`, NCHW, torch's default threads); one
timing = `--iters` calls of forward + the gradients with respect to the input and the
parameters (jax.jit of a VJP; torch `backward` on the same cotangent). Sides and backends
alternate over `--rounds`; the table gives medians. FLOPs count the layer's own
multiply-adds (2 per MAC, forward + 2 gradients = 3x the forward, the first layer's input
gradient included), not the zeros that a sub-pixel or dilated form computes. The peak is the
best of a 2048^3 fp32 matmul in torch and in jax.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)

# name, kind, (H, W, Cin), Cout, kernel, stride, padding, output_padding
LAYERS = [
    ("dcgan D conv1 1->64 s2", "conv", (28, 28, 1), 64, 5, 2, 2, 0),
    ("dcgan D conv2 64->128 s2", "conv", (14, 14, 64), 128, 5, 2, 2, 0),
    ("dcgan D dense 6272->1", "dense", 6272, 1, 0, 0, 0, 0),
    ("dcgan G dense 100->12544", "dense", 100, 12544, 0, 0, 0, 0),
    ("dcgan G convT 256->128 s1", "convT", (7, 7, 256), 128, 5, 1, 2, 0),
    ("dcgan G convT 128->64 s2", "convT", (7, 7, 128), 64, 5, 2, 2, 1),
    ("dcgan G convT 64->1 s2", "convT", (14, 14, 64), 1, 5, 2, 2, 1),
    ("vae enc conv 1->32 s2", "conv", (28, 28, 1), 32, 3, 2, 1, 0),
    ("vae enc conv 32->64 s2", "conv", (14, 14, 32), 64, 3, 2, 1, 0),
    ("vae enc dense 3136->32", "dense", 3136, 32, 0, 0, 0, 0),
    ("vae dec dense 16->3136", "dense", 16, 3136, 0, 0, 0, 0),
    ("vae dec convT 64->32 s2", "convT", (7, 7, 64), 32, 3, 2, 1, 1),
    ("vae dec convT 32->1 s2", "convT", (14, 14, 32), 1, 3, 2, 1, 1),
]


def flops(layer, batch: int) -> float:
    """Forward + both gradients: 3 x 2 x the forward's multiply-adds."""
    _, kind, shape, cout, k, s, p, op = layer
    if kind == "dense":
        macs = batch * shape * cout
    elif kind == "conv":
        h, w, cin = shape
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        macs = batch * ho * wo * cout * cin * k * k
    else:  # every input pixel scatters a k x k x cout patch
        h, w, cin = shape
        macs = batch * h * w * cin * cout * k * k
    return 6.0 * macs


def jax_layer(layer, batch: int, backend: str):
    import flax.linen as nn
    import jax
    import numpy as np

    from genimg.models.layers import ConvTranspose
    from genimg.ops import onednn

    _, kind, shape, cout, k, s, p, op = layer
    if kind == "dense":
        module, x_shape = nn.Dense(cout), (batch, shape)
    elif kind == "conv":
        conv_fn = onednn.conv_fn(backend)
        module = nn.Conv(cout, (k, k), (s, s), ((p, p), (p, p)), conv_general_dilated=conv_fn)
        x_shape = (batch, *shape)
    else:
        module = ConvTranspose(
            cout, kernel_size=k, strides=s, padding=p, output_padding=op, conv_backend=backend
        )
        x_shape = (batch, *shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, np.float32)
    params = jax.jit(module.init)(jax.random.key(0), x)
    y_shape = jax.eval_shape(module.apply, params, x).shape
    g = rng.standard_normal(y_shape, np.float32)

    @jax.jit
    def f(params, x, g):
        _, vjp = jax.vjp(module.apply, params, x)
        return vjp(g)

    jax.block_until_ready(f(params, x, g))

    def run(iters):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = f(params, x, g)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / iters

    return run


def torch_layer(layer, batch: int):
    import torch

    _, kind, shape, cout, k, s, p, op = layer
    torch.manual_seed(0)
    if kind == "dense":
        module, x_shape = torch.nn.Linear(shape, cout), (batch, shape)
    elif kind == "conv":
        module = torch.nn.Conv2d(shape[2], cout, k, s, p)
        x_shape = (batch, shape[2], shape[0], shape[1])
    else:
        module = torch.nn.ConvTranspose2d(shape[2], cout, k, s, p, op)
        x_shape = (batch, shape[2], shape[0], shape[1])
    x = torch.randn(x_shape, requires_grad=True)
    g = torch.randn(module(x).shape)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(g)

    step()

    def run(iters):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        return (time.perf_counter() - t0) / iters

    return run


def matmul_peak(n: int = 2048, iters: int = 5) -> float:
    """GFLOP/s: the best of torch's and jax's n^3 fp32 matmul."""
    import jax
    import jax.numpy as jnp
    import torch

    a = torch.randn(n, n)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iters):
            a @ a
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t0) / 1e9)
    b = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda b: b @ b)
    jax.block_until_ready(mm(b))
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = mm(b)
        jax.block_until_ready(out)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - t0) / 1e9)
    return best


def run(args):
    sides = {f"jax {b}": None for b in args.backends}
    rows = []
    for layer in LAYERS:
        runners = {f"jax {b}": jax_layer(layer, args.batch_size, b) for b in args.backends}
        runners["torch"] = torch_layer(layer, args.batch_size)
        times = {name: [] for name in runners}
        for r in range(args.rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for name in order:
                times[name].append(runners[name](args.iters))
        med = {name: statistics.median(t) for name, t in times.items()}
        rows.append((layer, med))
        print(layer[0], {k: round(v * 1e3, 2) for k, v in med.items()}, file=sys.stderr)
    peak = matmul_peak()
    names = [*sides, "torch"]
    cols = " | ".join(f"{n} ms (GFLOP/s)" for n in names)
    head = f"| layer (batch {args.batch_size}) | GFLOP | {cols}"
    ratio = f"{names[0]} / torch"
    print(head + f" | {ratio} |")
    print("|" + "---|" * (len(names) + 3))
    for layer, med in rows:
        gf = flops(layer, args.batch_size) / 1e9
        cells = " | ".join(f"{med[n] * 1e3:.2f} ({gf / med[n]:.0f})" for n in names)
        print(f"| {layer[0]} | {gf:.3f} | {cells} | {med['torch'] / med[names[0]]:.2f}x |")
    print(f"\nfp32 matmul peak (best of torch / jax, 2048^3): {peak:.0f} GFLOP/s")
    print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


def define_flags():
    cli.batch_size_flag(64, "Images per call.")
    cli.define_integer("iters", 10, "Calls per timing.", lower_bound=1)
    cli.define_integer("rounds", 3, "Alternating rounds.", lower_bound=1)
    cli.define_list("backends", ["auto", "xla"], "conv_backend values for our side.")


def main(args):
    platform.configure_cpu_defaults()
    run(args)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)
