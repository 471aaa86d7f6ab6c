"""PyTorch peer of benchmarks/train_throughput.py: the same networks and training steps as
genimg's JAX models, in PyTorch eager, timed the same way. compare.py runs both.

    python benchmarks/torch_peer.py --model=dcgan --batch_size=64 --steps=30 --warmup=5
        [--threads=N] [--device=cpu|cuda] [--compile]

prints one JSON line on stdout:

    {"impl": "torch", "torch": "2.13.0+cpu", "model": "dcgan", "batch": 64, "device": "cpu",
     "threads": 2, "img_per_s": ..., "ms_per_step": ..., "steps": 30, "compile": false}

With `--train_minutes=2,5,10,20 --data=IMAGES.npy --out=DIR` it instead trains the DCGAN on
real images for that wall-clock budget and writes 10k samples at each mark (see
`train_for_minutes`; benchmarks/quality_per_minute.py runs it and scores the samples).

It needs only torch (it runs under a separate interpreter, e.g. one holding the CPU build of
torch, and does not import genimg). The flags use the project's underscore names.

Timing. `warmup` untimed iterations (they also absorb torch.compile and the allocator's
first growth), then `steps` timed ones; on CUDA the device is synchronized before and after.
img_per_s = batch_size * steps / seconds and ms_per_step = 1000 * seconds / steps. The input
is one fixed synthetic batch of 28x28x1 images drawn uniformly from [-1, 1] (rescaled to
[0, 1] for the sigmoid and Bernoulli models), so that the numbers measure compute, not data
loading. The latent noise is drawn inside each iteration, as the JAX step does. Seed 0;
weights keep torch's default initialisation, which does not affect speed.

The networks (NCHW here, NHWC in genimg; the parameter counts are equal, see
tests/test_benchmarks.py). `ConvT(k, s, p, op)` is `nn.ConvTranspose2d` with kernel k,
stride s, padding p and output_padding op, which genimg's `layers.ConvTranspose` reproduces
with the same (p, op). Batch norm uses torch's defaults (momentum 0.1, eps 1e-5), the same
as flax's momentum 0.9, epsilon 1e-5, in training mode (batch statistics).

- dcgan, the TensorFlow-tutorial DCGAN at 28x28x1, width 64, z of 100:
  G: Linear(100, 7*7*256, no bias), BN, ReLU, view as [256, 7, 7];
     ConvT(5, 1, 2, 0) to 128, no bias, BN, ReLU  -> [128, 7, 7];
     ConvT(5, 2, 2, 1) to 64, no bias, BN, ReLU   -> [64, 14, 14];
     ConvT(5, 2, 2, 1) to 1, with bias, tanh      -> [1, 28, 28].
  D: Conv(5, s2, p2) to 64, LeakyReLU(0.2)        -> [64, 14, 14];
     Conv(5, s2, p2) to 128, LeakyReLU(0.2)       -> [128, 7, 7];
     flatten, Linear(6272, 1): one logit.
- mlpgan, z of 100, pixels in [0, 1]:
  G: 100 -> 256 -> 512 -> 1024 (ReLU after each) -> 784, sigmoid.
  D: 784 -> 512 -> 256 (ReLU after each) -> 1 logit.
- convvae, latent 16, pixels in [0, 1]:
  encoder: Conv(3, s2, p1) to 32, ReLU -> Conv(3, s2, p1) to 64, ReLU -> flatten ->
           Linear(3136, 2*16), split into mean and log-variance;
  decoder: Linear(16, 3136), ReLU, view as [64, 7, 7] -> ConvT(3, 2, 1, 1) to 32, ReLU ->
           ConvT(3, 2, 1, 1) to 1: Bernoulli logits [1, 28, 28].

The iterations:
- GANs: one D update, then one G update, each network with its own Adam(lr 2e-4,
  betas (0.5, 0.999)). D: fake images from fresh noise without gradients into G, loss =
  BCE(D(real), 1) + BCE(D(fake), 0) (two D calls). G: fresh noise, non-saturating loss
  BCE(D(G(z)), 1), gradients for G's weights only (D's weights are frozen for that pass).
  BCE is the sigmoid cross-entropy on logits, averaged over the batch.
- convvae: one Adam(lr 1e-3) step on the negative ELBO averaged over the batch: the
  per-image sum over pixels of the Bernoulli cross-entropy of the logits, plus the analytic
  KL(N(mean, exp(logvar)) || N(0, I)), with z drawn by the reparameterisation trick.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("dcgan", "mlpgan", "convvae")
IMAGE = (1, 28, 28)  # C, H, W
Z_GAN = 100
Z_VAE = 16


def dcgan_networks(width: int = 64) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of the tutorial DCGAN at 28x28x1."""
    top = 4 * width  # channels of the 7x7 projection
    generator = nn.Sequential(
        nn.Linear(Z_GAN, 7 * 7 * top, bias=False),
        nn.BatchNorm1d(7 * 7 * top),
        nn.ReLU(),
        nn.Unflatten(1, (top, 7, 7)),
        nn.ConvTranspose2d(top, 2 * width, 5, stride=1, padding=2, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 5, stride=2, padding=2, output_padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.ConvTranspose2d(width, IMAGE[0], 5, stride=2, padding=2, output_padding=1),
        nn.Tanh(),
    )
    discriminator = nn.Sequential(
        nn.Conv2d(IMAGE[0], width, 5, stride=2, padding=2),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 5, stride=2, padding=2),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, 1),
    )
    return generator, discriminator


def _mlp(sizes, hidden_act, final: list[nn.Module]) -> list[nn.Module]:
    """Linear layers through `sizes`, `hidden_act()` between them, `final` after the last."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        if i:
            layers.append(hidden_act())
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
    return layers + final


def mlpgan_networks() -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of the fully connected GAN."""
    pixels = IMAGE[0] * IMAGE[1] * IMAGE[2]
    generator = nn.Sequential(
        *_mlp((Z_GAN, 256, 512, 1024, pixels), nn.ReLU, [nn.Sigmoid(), nn.Unflatten(1, IMAGE)])
    )
    discriminator = nn.Sequential(nn.Flatten(), *_mlp((pixels, 512, 256, 1), nn.ReLU, []))
    return generator, discriminator


class ConvVAE(nn.Module):
    """The conv VAE: forward(x) -> (logits, mean, logvar) for one sample of z per image."""

    def __init__(self, latent: int = Z_VAE):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(IMAGE[0], 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 2 * latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 64 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, IMAGE[0], 3, stride=2, padding=1, output_padding=1),
        )

    def forward(self, x):
        mean, logvar = torch.chunk(self.encoder(x), 2, dim=1)
        eps = torch.randn_like(mean)
        return self.decoder(mean + eps * torch.exp(0.5 * logvar)), mean, logvar


def networks(model: str) -> dict[str, nn.Module]:
    """The named networks of `model`: {"g", "d"} for the GANs, {"vae"} for convvae."""
    if model in ("dcgan", "mlpgan"):
        g, d = dcgan_networks() if model == "dcgan" else mlpgan_networks()
        return {"g": g, "d": d}
    if model == "convvae":
        return {"vae": ConvVAE()}
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def param_count(module: nn.Module) -> int:
    """Trainable parameters (batch-norm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())


def param_counts() -> dict[str, dict[str, int]]:
    """{model: {network: parameter count}} for every model, e.g. for checks against genimg."""
    return {m: {k: param_count(v) for k, v in networks(m).items()} for m in MODELS}


def _logit_bce(logits, label: float):
    """Mean sigmoid cross-entropy of `logits` against the constant `label`."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def gan_iteration(g: nn.Module, d: nn.Module, batch_size: int, device, compile_: bool):
    """A function real -> None doing one D update then one G update."""
    adam = lambda net: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g, opt_d = adam(g), adam(d)
    # Only the modules are compiled; backward and the optimizer steps stay eager.
    run_g, run_d = (torch.compile(g), torch.compile(d)) if compile_ else (g, d)
    noise = lambda: torch.randn(batch_size, Z_GAN, device=device)

    def iteration(real):
        # Discriminator: the fakes are constants, so no graph is built through G.
        with torch.no_grad():
            fake = run_g(noise())
        d.requires_grad_(True)
        loss_d = _logit_bce(run_d(real), 1.0) + _logit_bce(run_d(fake), 0.0)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # Generator: gradients flow through D to G, but D's own weight gradients are
        # skipped, as a JAX gradient with respect to G's parameters alone skips them.
        d.requires_grad_(False)
        loss_g = _logit_bce(run_d(run_g(noise())), 1.0)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return iteration


def vae_iteration(vae: nn.Module, compile_: bool):
    """A function x -> None doing one Adam step on the negative ELBO."""
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    run = torch.compile(vae) if compile_ else vae

    def iteration(x):
        logits, mean, logvar = run(x)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).sum(1)
        loss = (nll + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return iteration


def _to_uint8(images) -> np.ndarray:
    """Generator outputs in [-1, 1], NCHW -> uint8 NHWC, as genimg writes samples."""
    unit = (images.clamp(-1.0, 1.0) + 1.0) / 2.0
    return np.round(unit.permute(0, 2, 3, 1).cpu().numpy() * 255.0).astype(np.uint8)


@torch.no_grad()
def draw_samples(g: nn.Module, num: int, batch_size: int, batch_norm: str, seed: int = 0):
    """`num` samples of a copy of `g`, uint8 NHWC; `batch_norm` "eval" uses the running
    statistics, "train" the statistics of each sampled batch (the copy's running statistics
    absorb that; `g` is untouched)."""
    net = copy.deepcopy(g).train(batch_norm == "train")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, num, batch_size):
        z = torch.randn(min(batch_size, num - start), Z_GAN, generator=gen)
        out.append(_to_uint8(net(z)))
    return np.concatenate(out)


def train_for_minutes(args) -> list[dict]:
    """The DCGAN iteration on real images for a wall-clock budget, samples at each mark.

    The images (`--data`, a .npy of uint8 [N, 28, 28] or [N, 28, 28, 1]) are scaled to
    [-1, 1] and shuffled every epoch (batches of `--batch_size`, the last partial batch
    dropped). The clock starts before the data is read and stops while samples are drawn: at
    the first iteration past each mark of `--train_minutes`, `--num_samples` images of G with
    each batch-norm mode are written to `--out`/torch_<M>min_<mode>.npz (key "images").
    Returns one record per mark."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    marks = sorted(float(m) for m in args.train_minutes.split(","))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    images = np.load(args.data)
    data = torch.from_numpy(images.reshape(-1, 1, 28, 28)).float().div_(127.5).sub_(1.0)
    nets = networks("dcgan")
    g, d = nets["g"].train(), nets["d"].train()
    iteration = gan_iteration(g, d, args.batch_size, torch.device("cpu"), args.compile)
    per_epoch = len(data) // args.batch_size
    if not per_epoch:
        raise SystemExit(
            f"error: --data holds {len(data)} images, fewer than one batch of "
            f"{args.batch_size}: give more images or a smaller --batch_size"
        )
    step, order, records = 0, None, []
    while marks:
        if step % per_epoch == 0:
            order = torch.randperm(len(data))
        pick = order[(step % per_epoch) * args.batch_size :][: args.batch_size]
        iteration(data[pick])
        step += 1
        elapsed = time.perf_counter() - clock
        if elapsed < 60.0 * marks[0]:
            continue
        paused = time.perf_counter()
        minutes = marks.pop(0)
        files = {}
        for mode in ("eval", "train"):
            path = out / f"torch_{minutes:g}min_{mode}.npz"
            np.savez(path, images=draw_samples(g, args.num_samples, 500, mode))
            files[mode] = str(path)
        record = {"impl": "torch", "torch": torch.__version__, "minutes": minutes,
                  "train_s": round(elapsed, 1), "steps": step,
                  "images_seen": step * args.batch_size, "files": files}  # fmt: skip
        print(json.dumps(record), flush=True)
        records.append(record)
        clock += time.perf_counter() - paused  # sampling is not training time
    return records


def build(model: str, batch_size: int, device, compile_: bool = False):
    """(iteration, real): the training iteration of `model` (seeded networks) and the fixed
    synthetic batch it is timed on."""
    torch.manual_seed(0)
    nets = {k: v.to(device).train() for k, v in networks(model).items()}
    if model == "convvae":
        iteration = vae_iteration(nets["vae"], compile_)
    else:
        iteration = gan_iteration(nets["g"], nets["d"], batch_size, device, compile_)
    real = torch.rand(batch_size, *IMAGE, device=device) * 2.0 - 1.0  # uniform [-1, 1]
    if model != "dcgan":  # the sigmoid / Bernoulli models see pixels in [0, 1]
        real = (real + 1.0) / 2.0
    return iteration, real


def benchmark(args) -> dict:
    """Build, warm up and time `args.model`; returns the JSON record."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    iteration, real = build(args.model, args.batch_size, device, args.compile)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        iteration(real)
    synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        iteration(real)
    synchronize()
    seconds = time.perf_counter() - start

    return {
        "impl": "torch",
        "torch": torch.__version__,
        "model": args.model,
        "batch": args.batch_size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "img_per_s": round(args.batch_size * args.steps / seconds, 1),
        "ms_per_step": round(1000.0 * seconds / args.steps, 2),
        "steps": args.steps,
        "compile": args.compile,
    }


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(  # no abbreviations: absl, genimg's flag parser, has none
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--model", choices=MODELS, default="dcgan")
    parser.add_argument("--batch_size", type=positive_int, default=64, help="images per step")
    parser.add_argument("--steps", type=positive_int, default=30, help="timed iterations")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed iterations before the timed ones"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=os.cpu_count(), help="torch intra-op threads"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    train = parser.add_argument_group(
        "training for a wall-clock budget (dcgan on real images; see train_for_minutes)"
    )
    train.add_argument("--train_minutes", help="comma-separated marks, e.g. 2,5,10,20")
    train.add_argument("--data", help=".npy of uint8 training images [N, 28, 28(, 1)]")
    train.add_argument("--out", help="folder for the samples at each mark")
    train.add_argument("--num_samples", type=positive_int, default=10000)
    train.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train_minutes and not (args.data and args.out and args.model == "dcgan"):
        parser.error("--train_minutes needs --data and --out, and --model=dcgan")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.train_minutes:
        train_for_minutes(args)  # prints one JSON line per mark
    else:
        print(json.dumps(benchmark(args)))


if __name__ == "__main__":
    main()
