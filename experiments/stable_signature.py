"""Stable Signature: fine-tune a trained generator so that everything it draws carries the
provenance mark, also when the model is called directly and its output never passes through
genimg's file writer (Fernandez et al. 2023, "The Stable Signature: Rooting Watermarks in
Latent Diffusion Models").

    python -m experiments.stable_signature --workdir=runs/dcgan_sig --config.base=runs/dcgan
    python -m experiments.stable_signature --workdir=/tmp/s --config.base=W \\
        --config=experiments/stable_signature.py:tiny

As in the paper, the watermark decoder is fixed -- here it is genimg's own (`genimg.watermark`,
made differentiable by ``soft_bit_loss``) -- and only the generator moves. The loss, on the
samples ``G'(z)`` of the copy being tuned and ``G(z)`` of the frozen original at the same
codes, is

    soft_bit_loss(G'(z), header + payload) + image_weight * mean((G'(z) - R(z))^2)

where the reference ``R(z)`` is ``G(z)`` marked by the file writer (``reference="marked"``,
the default: the image loss then also shows the generator the mark's pixels) or ``G(z)``
itself (``reference="original"``, the paper's choice).
The message is the one the run's files would carry: the key's 16 header bits and the payload
of the new run's id and the base run's model hash (fixed before tuning, so it cannot depend on
the tuned weights). Every float weight of the state that the sampler reads gets gradients
(for a GAN with an EMA generator: the EMA weights); nothing else changes.

Writes a normal run into ``--workdir``: ``config.json`` (the base's config plus this
experiment's block, ``stable_signature``), ``run_info.json`` (with ``stable_signature``: the
base, the message, what was measured), a checkpoint that ``genimg.sample`` and
``genimg.evaluate`` restore, ``metrics.jsonl``, a sample grid and ``MODEL_CARD.md``. At the end
it measures, on ``eval_samples`` raw samples (uint8, never saved) of the base and the tuned
generator at the same codes: the bit accuracy of the 48 bits read as is, the rate at which
``genimg.watermark.detect`` finds the mark (p < 1e-3), the same after JPEG quality 90, and the
PSNR of the tuned samples against the base's. The domain-FID cost: ``python -m genimg.evaluate
--metrics=fid --extractor=domain:<classifier run>`` on both runs (README, "Responsible use").

Presets: tiny (seconds; for the tests).
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from genimg import cli
from genimg import images as images_lib
from genimg import watermark as wm
from genimg.errors import ConfigError, UserError
from genimg.train import checkpoint as ckpt
from genimg.train import config as config_lib
from genimg.train import model_card, run_provenance
from genimg.train import workdir as workdir_lib

log = logging.getLogger("genimg")
BLOCK = "stable_signature"
REFERENCES = ("marked", "original")


def get_config(arg: str | None = None):
    config = config_lib.ConfigDict()
    config.base = ""  # the trained run to fine-tune (a workdir); required
    config.steps = 300
    config.batch_size = 32
    config.lr = 2e-4
    config.image_weight = 100.0  # weight of the MSE to the reference images
    config.reference = "marked"  # "marked": the frozen generator's samples, marked; "original"
    config.seed = 0
    config.log_every = 25
    config.eval_samples = 200  # raw samples measured at the end
    return config_lib.apply_presets(config, arg, {"tiny": tiny})


def tiny(config) -> None:
    config.update(steps=25, batch_size=8, lr=3e-3, image_weight=10.0, log_every=5, eval_samples=8)


def _check(config, workdir: pathlib.Path) -> None:
    if not config.base:
        raise ConfigError("set --config.base=W, the trained run to fine-tune")
    if not (pathlib.Path(config.base) / ckpt.CONFIG_FILE).is_file():
        raise UserError(f"--config.base={config.base} is not a training run (no config.json)")
    for key in ("steps", "batch_size", "log_every", "eval_samples"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {config[key]}")
    if config.reference not in REFERENCES:
        raise ConfigError(
            f"reference='{config.reference}'; expected one of {', '.join(REFERENCES)}"
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


def make_finetune_step(family, base_state, bits, key: str, config):
    """A jitted ``(params, opt_state, rng, reference) -> (params, opt_state, metrics)`` over the
    tuned leaves: ``reference`` holds the images the tuned samples at ``rng`` are pulled
    towards (see `reference_images`)."""
    mask, leaves, treedef = _trainable(base_state)
    tx = optax.adam(config.lr)

    def rebuild(params):
        it = iter(params)
        tree = [next(it) if m else x for m, x in zip(mask, leaves, strict=True)]
        return jax.tree.unflatten(treedef, tree)

    def loss_fn(params, rng, reference):
        images, _ = family.sample(rebuild(params), rng, config.batch_size)
        bit_loss = wm.soft_bit_loss(images, bits, key)
        mse = jnp.mean((images - reference) ** 2)
        return bit_loss + config.image_weight * mse, {"bit_loss": bit_loss, "mse": mse}

    @jax.jit
    def step(params, opt_state, rng, reference):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, parts), grads = grad_fn(params, rng, reference)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, **parts}

    params = [x for m, x in zip(mask, leaves, strict=True) if m]
    return step, params, tx.init(params), rebuild


def reference_images(sample, base_state, rng, num, payload, key, marked: bool):
    """The frozen generator's samples at ``rng`` (float [0, 1]); with ``marked``, as the file
    writer would mark them (``genimg.watermark.embed``): the image loss then teaches the
    tuned generator the mark's exact pixels, not only to stay close."""
    images = np.asarray(jax.device_get(sample(base_state, rng, num)[0]), np.float32)
    if not marked:
        return images
    out = []
    for image in images_lib.to_uint8(images):
        marked_image = wm.embed(image, payload, key)
        out.append(image if marked_image is None else marked_image)
    return np.stack(out).astype(np.float32) / 255.0


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    array = image[..., 0] if image.shape[-1] == 1 else image
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    return back[..., None] if back.ndim == 2 else back


def measure(images: np.ndarray, bits: np.ndarray, key: str) -> dict:
    """Bit accuracy (48 bits read as is), detection rate, and detection after JPEG 90 of raw
    uint8 samples."""
    accuracy = [np.mean(wm.decode_bits(x, key) == bits) for x in images]
    detected = [wm.detect(x, key).marked for x in images]
    jpeg = [wm.detect(_jpeg(x, 90), key).marked for x in images]
    return {
        "bit_accuracy": float(np.mean(accuracy)),
        "detection_rate": float(np.mean(detected)),
        "detection_rate_jpeg90": float(np.mean(jpeg)),
    }


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

    marked = config.reference == "marked"
    workdir_lib.prepare(workdir)
    with workdir_lib.RunLock(workdir), ckpt.quiet_orbax():
        step_fn, params, opt_state, rebuild = make_finetune_step(
            family, base_state, bits, key, config
        )
        sample = jax.jit(family.sample, static_argnums=2)
        rng = jax.random.key(config.seed)
        metrics_path = workdir / workdir_lib.METRICS_FILE
        start = time.perf_counter()
        with open(metrics_path, "w") as log_file:
            for i in range(1, config.steps + 1):
                step_rng = jax.random.fold_in(rng, i)
                reference = reference_images(
                    sample, base_state, step_rng, config.batch_size, payload, key, marked
                )
                params, opt_state, metrics = step_fn(params, opt_state, step_rng, reference)
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
        measured = {f"tuned_{k}": v for k, v in measure(tuned, bits, key).items()}
        measured.update({f"base_{k}": v for k, v in measure(base, bits, key).items()})
        measured.update(
            psnr_to_base=psnr(tuned, base), eval_samples=config.eval_samples, seconds=seconds
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
