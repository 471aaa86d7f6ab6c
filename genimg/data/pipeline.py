"""Training batches from an in-memory dataset that lives on the accelerator.

The uint8 images are put on the device once; every step gathers its batch there with a
jitted ``take``. The order is a fresh permutation per epoch derived from ``(seed, epoch)``,
so the batch of any step is a pure function of ``(seed, step)``: a resumed run sees exactly
the batches an uninterrupted run sees. The last partial batch of an epoch is dropped.

With several processes (``process_count > 1``) every process draws the same global batch
indices and gathers only its own contiguous slice of them, which it splits over its local
devices: process ``p``'s devices get exactly the rows that devices ``p * n_local ...`` get in a
one-process run over all devices.

With ``host_augment`` (a numpy/PIL transform of uint8 batches that XLA cannot run, e.g. JPEG
re-encoding) the images stay on the host: a batch is gathered there in the same order,
transformed with a generator seeded by ``(seed, step)``, then scaled and sent to the device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genimg.data.sources import DataError

SCALES = ("-1_1", "0_1")


def scale_images(images, scale: str):
    """uint8 [0, 255] -> float32 in [-1, 1] (``"-1_1"``) or [0, 1] (``"0_1"``)."""
    x = jnp.asarray(images, jnp.float32) / 255.0
    if scale == "-1_1":
        return x * 2.0 - 1.0
    if scale == "0_1":
        return x
    raise ValueError(f"unknown pixel scale '{scale}'; expected one of {', '.join(SCALES)}")


def decode_inputs(inputs, input_classes: int | None = None):
    """Paired-data inputs as a model sees them: uint8 label ids [N, H, W, 1] -> one-hot
    float32 [N, H, W, input_classes]; uint8 images -> float32 in [0, 1] (whatever the
    family's pixel scale: the first layer of a translator absorbs any affine change)."""
    if input_classes:
        return jax.nn.one_hot(jnp.asarray(inputs)[..., 0], input_classes, dtype=jnp.float32)
    return jnp.asarray(inputs, jnp.float32) / 255.0


@functools.partial(jax.jit, static_argnums=(1,))
def _permutation(key, n):
    return jax.random.permutation(key, n)


@functools.partial(jax.jit, static_argnames=("batch", "n_devices", "scale", "input_classes"))
def _gather(images, labels, inputs, perm, start, *, batch, n_devices, scale, input_classes):
    idx = jax.lax.dynamic_slice_in_dim(perm, start, batch)
    out = {"image": scale_images(jnp.take(images, idx, axis=0), scale)}
    if labels is not None:
        out["label"] = jnp.take(labels, idx, axis=0)
    if inputs is not None:
        out["input"] = decode_inputs(jnp.take(inputs, idx, axis=0), input_classes)
    return _split_devices(out, n_devices)


def _split_devices(batch: dict, n_devices: int) -> dict:
    """``[n_devices, batch / n_devices, ...]`` for pmap (unchanged on one device)."""
    if n_devices == 1:
        return batch
    return jax.tree.map(lambda x: x.reshape((n_devices, -1) + x.shape[1:]), batch)


class TrainData:
    """Deterministic, device-resident, per-epoch shuffled training batches.

    Paired data (``inputs``, see `genimg.data.paired`) adds ``"input"`` to every batch: the
    input of each example, gathered with the same indices as its image (`decode_inputs`:
    one-hot label maps when ``input_classes`` is set, else images in [0, 1]).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        global_batch: int,
        seed: int = 0,
        n_devices: int = 1,
        scale: str = "-1_1",
        process_index: int = 0,
        process_count: int = 1,
        inputs: np.ndarray | None = None,
        input_classes: int | None = None,
        host_augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"TrainData expects uint8 images [N, H, W, C], got {images.dtype} {images.shape}"
            )
        if inputs is not None and (
            inputs.dtype != np.uint8 or inputs.shape[:3] != images.shape[:3]
        ):
            raise ValueError(
                f"TrainData expects uint8 inputs [N, H, W, C'] like the images {images.shape}, "
                f"got {inputs.dtype} {inputs.shape}"
            )
        if scale not in SCALES:
            raise ValueError(f"unknown pixel scale '{scale}'; expected one of {', '.join(SCALES)}")
        n = images.shape[0]
        if global_batch > n:
            raise DataError(
                f"batch size {global_batch} is larger than the dataset ({n} images); "
                "lower train.batch_size"
            )
        if global_batch % (n_devices * process_count):
            where = f"{n_devices} devices" + (
                f" x {process_count} processes" if process_count > 1 else ""
            )
            raise DataError(
                f"batch size {global_batch} is not divisible by the {where}; "
                "set train.batch_size to a multiple of the device count"
            )
        self.num_examples = n
        self.global_batch = global_batch
        self.process_batch = global_batch // process_count  # this process's rows of a batch
        self.process_index = process_index
        self.n_devices = n_devices
        self.scale = scale
        self.steps_per_epoch = n // global_batch
        self.image_shape = tuple(images.shape[1:])
        self.seed = seed
        self.host_augment = host_augment
        labels = None if labels is None else labels.astype(np.int32)
        if host_augment is None:
            self._images = jax.device_put(images)
            self._labels = None if labels is None else jax.device_put(labels)
        else:
            if inputs is not None:
                raise ValueError("host_augment does not support paired inputs")
            self._images, self._labels = images, labels
        self._inputs = None if inputs is None else jax.device_put(inputs)
        self.input_classes = int(input_classes) if input_classes else None
        self.input_shape = None
        if inputs is not None:
            self.input_shape = (*inputs.shape[1:3], self.input_classes or inputs.shape[-1])
        self._key = jax.random.fold_in(jax.random.key(seed), 0x0DA7A)  # data stream of `seed`
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> dict:
        """The batch of global step ``step``: ``{"image": float32, "label": int32}`` (and
        ``"input"`` for paired data)."""
        epoch, index = divmod(int(step), self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm = _permutation(jax.random.fold_in(self._key, epoch), self.num_examples)
            self._epoch = epoch
        if self.host_augment is not None:
            return self._host_batch(int(step), index)
        return _gather(
            self._images,
            self._labels,
            self._inputs,
            self._perm,
            index * self.global_batch + self.process_index * self.process_batch,
            batch=self.process_batch,
            n_devices=self.n_devices,
            scale=self.scale,
            input_classes=self.input_classes,
        )

    def first(self, num: int) -> dict:
        """The first ``num`` examples in stored order (``"image"`` in the family's scale,
        ``"input"`` when paired), unsharded: the fixed examples of progress figures."""
        out = {"image": scale_images(self._images[:num], self.scale)}
        if self._inputs is not None:
            out["input"] = decode_inputs(self._inputs[:num], self.input_classes)
        return out

    def _host_batch(self, step: int, index: int) -> dict:
        """The batch of ``step`` gathered on the host and passed through ``host_augment``."""
        start = index * self.global_batch + self.process_index * self.process_batch
        idx = np.asarray(jax.device_get(self._perm))[start : start + self.process_batch]
        # (with several processes each draws its own stream for its own rows)
        key = (self.seed, 0x0A06, step) + ((self.process_index,) if self.process_index else ())
        rng = np.random.default_rng(key)
        images = self.host_augment(self._images[idx], rng)
        if images.dtype != np.uint8 or images.shape != (len(idx), *self.image_shape):
            raise ValueError(
                f"host_augment must return uint8 images of shape {(len(idx), *self.image_shape)}"
                f", got {images.dtype} {images.shape}"
            )
        out = {"image": scale_images(images, self.scale)}
        if self._labels is not None:
            out["label"] = jnp.asarray(self._labels[idx])
        return _split_devices(out, self.n_devices)
