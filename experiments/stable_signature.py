"""Stable Signature: fine-tune a trained generator so that everything it draws carries a
provenance mark, also when the model is called directly and its output never passes through
genimg's file writer (Fernandez et al. 2023, "The Stable Signature: Rooting Watermarks in
Latent Diffusion Models").

    python -m experiments.stable_signature --workdir=runs/dcgan_sig --config.base=runs/dcgan
    python -m genimg.provenance check runs/dcgan_sig/samples/stable_signature.png \
        --decoder=runs/dcgan_sig
    python -m experiments.stable_signature --workdir=/tmp/s --config.base=W \
        --config=experiments/stable_signature.py:tiny

As in the paper, the watermark decoder is fixed and only the generator moves. The decoder is
`genimg.watermark.SubspaceDecoder`, fitted here to ``decoder_images`` training images of the
base run's data: each of the 48 bits is the sign of a standardised projection of the image on
one of the data's least-used low-frequency directions (mixed by the key), so the bits of real
images are fair coins and a generator writes them with a small additive change. The loss, on
the samples ``G'(z)`` of the copy being tuned and ``G(z)`` of the frozen original at the same
codes, is

    mean_i relu(margin - s_i * score_i(A(G'(z)))) + image_weight * mean((G'(z) - G(z))^2)

with ``s_i = +-1`` the message's bits (the key's 16 header bits and a 32-bit payload of the new
run's id and the base run's model hash, fixed before tuning) and ``A`` a differentiable JPEG
(`genimg.corruptions.jpeg_like`, quality ~ U[``jpeg_quality``]) applied with probability
``jpeg_prob`` per step, so the mark survives JPEG. Every float weight of the state that the
sampler reads gets gradients (for a GAN with an EMA generator: the EMA weights).

Writes a normal run into ``--workdir``: ``config.json`` (the base's config plus this
experiment's block, ``stable_signature``), ``run_info.json`` (with ``stable_signature``: the
base, the message, what was measured), the decoder (``watermark_decoder.npz``, what
``genimg.provenance check --decoder=W`` reads), a checkpoint that ``genimg.sample`` and
``genimg.evaluate`` restore, ``metrics.jsonl``, a sample grid and ``MODEL_CARD.md``. At the
end it measures, on ``eval_samples`` raw samples (uint8, never saved) of the base and the tuned
generator at the same codes: the bit accuracy of the 48 bits, the rate at which the decoder
finds the mark (header p < 1e-3) as is and after each attack of `genimg.watermark.attacks`
(PNG, JPEG quality 90 and 75, resize to 90 % and 110 %, noise of std 2/255, a 90 % crop),
the PSNR of the tuned samples against the base's, and the false-positive rate on
``fpr_images`` real test images.
The domain-FID cost: ``python -m genimg.evaluate --metrics=fid --extractor=domain:<classifier
run>`` on both runs (README, "Responsible use").

Presets: tiny (seconds; for the tests).
"""

from __future__ import annotations

import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genimg import cli, corruptions
from genimg import data as data_lib
from genimg import images as images_lib
from genimg import watermark as wm
from genimg.errors import ConfigError, UserError
from genimg.train import checkpoint as ckpt
from genimg.train import config as config_lib
from genimg.train import model_card, run_provenance
from genimg.train import workdir as workdir_lib

log = logging.getLogger("genimg")
BLOCK = "stable_signature"
DECODER_FILE = wm.DECODER_FILE


def get_config(arg: str | None = None):
    config = config_lib.ConfigDict()
    config.base = ""  # the trained run to fine-tune (a workdir); required
    config.steps = 600
    config.batch_size = 32
    config.lr = 1e-4
    config.image_weight = 100.0  # weight of the MSE to the frozen generator's samples
    config.margin = 2.0  # hinge margin of the bit scores, in stds of the real images' scores
    config.jpeg_prob = 0.5  # per step: the bits are read after a differentiable JPEG
    config.jpeg_quality = (70, 95)  # its quality ~ U[lo, hi]
    config.decoder_images = 20000  # training images of the base's data the decoder is fitted to
    config.fpr_images = 10000  # real test images the false-positive rate is measured on
    config.seed = 0
    config.log_every = 25
    config.eval_samples = 1000  # raw samples measured at the end
    return config_lib.apply_presets(config, arg, {"tiny": tiny})


def tiny(config) -> None:
    config.update(
        steps=25, batch_size=8, lr=3e-3, image_weight=10.0, margin=4.0, log_every=5,
        eval_samples=8, decoder_images=500, fpr_images=200,
    )  # fmt: skip


def _check(config, workdir: pathlib.Path) -> None:
    if not config.base:
        raise ConfigError("set --config.base=W, the trained run to fine-tune")
    if not (pathlib.Path(config.base) / ckpt.CONFIG_FILE).is_file():
        raise UserError(f"--config.base={config.base} is not a training run (no config.json)")
    for key in ("steps", "batch_size", "log_every", "eval_samples", "fpr_images"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {config[key]}")
    if config.decoder_images < 2 * wm.NUM_BITS:
        raise ConfigError(f"decoder_images must be >= {2 * wm.NUM_BITS}")
    lo, hi = config.jpeg_quality
    if not (0.0 <= config.jpeg_prob <= 1.0 and 1 <= lo <= hi <= 100):
        raise ConfigError(
            "need 0 <= jpeg_prob <= 1 and 1 <= jpeg_quality[0] <= jpeg_quality[1] <= 100, got "
            f"{config.jpeg_prob} and {tuple(config.jpeg_quality)}"
        )
    if (workdir / ckpt.CHECKPOINT_DIR).is_dir() and ckpt.finished_steps(workdir):
        raise UserError(f"{workdir} already holds a run; use a new --workdir")


def _trainable(state) -> tuple[list[bool], list, object]:
    """Which leaves are tuned (float leaves under a ``*params`` field), the leaves, the tree."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(state)
    mask = []
    for path, leaf in leaves_with_path:
        top = str(getattr(path[0], "name", getattr(path[0], "key", ""))) if path else ""
        floating = jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)
        mask.append(top.endswith("params") and floating)
    return mask, [leaf for _, leaf in leaves_with_path], treedef


def make_finetune_step(family, base_state, decoder, bits, config):
    """A jitted ``(params, opt_state, rng) -> (params, opt_state, metrics)`` over the tuned
    leaves (see the module docstring)."""
    mask, leaves, treedef = _trainable(base_state)
    tx = optax.adam(config.lr)
    signs = jnp.asarray(2.0 * np.asarray(bits) - 1.0, jnp.float32)
    lo, hi = config.jpeg_quality

    def rebuild(params):
        it = iter(params)
        tree = [next(it) if m else x for m, x in zip(mask, leaves, strict=True)]
        return jax.tree.unflatten(treedef, tree)

    def loss_fn(params, rng):
        images, _ = family.sample(rebuild(params), rng, config.batch_size)
        reference = jax.lax.stop_gradient(family.sample(base_state, rng, config.batch_size)[0])
        coin_rng, quality_rng = jax.random.split(jax.random.fold_in(rng, 1))
        quality = jax.random.uniform(quality_rng, minval=lo, maxval=hi)
        attacked = jnp.where(
            jax.random.uniform(coin_rng) < config.jpeg_prob,
            corruptions.jpeg_like(images, quality),
            images,
        )
        scores = decoder.soft_scores(attacked)
        bit_loss = jnp.mean(jax.nn.relu(config.margin - signs * scores))
        mse = jnp.mean((images - reference) ** 2)
        accuracy = jnp.mean((scores > 0) == (signs > 0))
        parts = {"bit_loss": bit_loss, "mse": mse, "bit_accuracy": accuracy}
        return bit_loss + config.image_weight * mse, parts

    @jax.jit
    def step(params, opt_state, rng):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, parts), grads = grad_fn(params, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, **parts}

    params = [x for m, x in zip(mask, leaves, strict=True) if m]
    return step, params, tx.init(params), rebuild


def measure(decoder, images: np.ndarray, bits: np.ndarray, key: str, seed: int = 0) -> dict:
    """Bit accuracy (48 bits) and detection rate of raw uint8 samples, and the detection rate
    after each attack of `genimg.watermark.attacks` (``detection_rate_<attack>``)."""
    scores = decoder.scores(images)
    p_values, _ = decoder.header_p_values(scores, key)
    measured = {
        "bit_accuracy": float(np.mean((scores > 0) == (np.asarray(bits) > 0))),
        "detection_rate": float(np.mean(p_values < wm.P_VALUE_THRESHOLD)),
    }
    for name, attack in wm.attacks(np.random.default_rng(seed)).items():
        attacked = [attack(x) for x in images]
        measured[f"detection_rate_{name}"] = float(np.mean(decoder.detected(attacked, key)))
    return measured


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def finetune(config, workdir) -> dict:
    """Fine-tune ``config.base`` into ``workdir``; returns what was measured."""
    workdir = pathlib.Path(workdir)
    _check(config, workdir)
    base_record, base_info = run_provenance.read_run(config.base)
    _, family, base_state, _ = ckpt.restore_run(config.base)
    if family.sample is None:
        raise UserError(f"the '{family.name}' run in {config.base} cannot sample")
    height, width = base_info["image_shape"][:2]
    if min(height, width) < wm.MIN_SIDE:
        raise UserError(
            f"{config.base} makes {height}x{width} images; the mark needs at least "
            f"{wm.MIN_SIDE}x{wm.MIN_SIDE}"
        )
    record = {**base_record, BLOCK: config.to_dict()}
    identity = run_provenance.identity(record, None, True)
    key = wm.signing_key()
    base_hash = run_provenance.model_hash(base_state)
    payload = wm.payload_bits(identity["run_id"], base_hash)
    bits = np.concatenate([wm.header_bits(key), payload])

    data_cfg = base_record["data"]
    source, size = data_cfg["source"], data_cfg.get("image_size") or None
    train_images = data_lib.load(source, "train", size).images[: config.decoder_images]
    real_test = data_lib.load(source, "test", size).images[: config.fpr_images]
    decoder = wm.fit_decoder(train_images, key)

    workdir_lib.prepare(workdir)
    with workdir_lib.RunLock(workdir), ckpt.quiet_orbax():
        decoder.save(workdir / DECODER_FILE)
        step_fn, params, opt_state, rebuild = make_finetune_step(
            family, base_state, decoder, bits, config
        )
        sample = jax.jit(family.sample, static_argnums=2)
        rng = jax.random.key(config.seed)
        metrics_path = workdir / workdir_lib.METRICS_FILE
        start = time.perf_counter()
        with open(metrics_path, "w") as log_file:
            for i in range(1, config.steps + 1):
                params, opt_state, metrics = step_fn(params, opt_state, jax.random.fold_in(rng, i))
                if i % config.log_every == 0 or i == config.steps:
                    line = {"step": i, **{k: float(v) for k, v in metrics.items()}}
                    log_file.write(json.dumps(line) + "\n")
                    log_file.flush()
                    log.info("step %d: %s", i, {k: round(v, 5) for k, v in line.items()})
        seconds = time.perf_counter() - start
        state = rebuild(params)

        # Raw samples of both generators at the same codes (a seed the tuning never used).
        eval_rng = jax.random.fold_in(jax.random.key(config.seed + 1), 0)
        tuned = images_lib.to_uint8(sample(state, eval_rng, config.eval_samples)[0])
        base = images_lib.to_uint8(sample(base_state, eval_rng, config.eval_samples)[0])
        measured = {f"tuned_{k}": v for k, v in measure(decoder, tuned, bits, key).items()}
        measured.update({f"base_{k}": v for k, v in measure(decoder, base, bits, key).items()})
        measured.update(
            psnr_to_base=psnr(tuned, base),
            false_positive_rate=float(np.mean(decoder.detected(real_test, key))),
            fpr_images=len(real_test),
            eval_samples=config.eval_samples,
            seconds=seconds,
        )

        info = {
            **{k: v for k, v in base_info.items() if k not in identity},
            **identity,
            BLOCK: {
                "base": str(config.base),
                "base_run_id": base_info.get("run_id"),
                "steps": config.steps,
                "key_id": wm.key_id(key),
                "model_hash": base_hash,
                "decoder": DECODER_FILE,
                "decoder_data": f"{source} train, {len(train_images)} images",
                "measured": measured,
            },
        }
        workdir_lib.write_json(workdir / ckpt.CONFIG_FILE, record)
        workdir_lib.write_json(workdir / ckpt.RUN_INFO_FILE, info)
        manager = ckpt.checkpoint_manager(workdir, 1)
        ckpt.save(manager, int(state.step), jax.device_get(state))
        manager.wait_until_finished()
        manager.close()
        provenance = run_provenance.provenance_for_run(info, state)
        images_lib.save_png(
            workdir / "samples" / "stable_signature.png",
            images_lib.make_grid(tuned[:64] / 255.0),
            provenance,
        )
        model_card.refresh(workdir, state)
    return measured


def main(config, workdir) -> None:
    measured = finetune(config, workdir)
    for key, value in measured.items():
        print(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)
