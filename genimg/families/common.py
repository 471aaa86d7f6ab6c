"""Config blocks and builders that several families share: encoder/decoder trunks, Adam."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import optax

ACTIVATIONS = {"relu": nn.relu, "elu": nn.elu, "silu": nn.silu, "gelu": nn.gelu, "tanh": jnp.tanh}
NORMS = {"none": None, "layer": nn.LayerNorm}
TRUNK_ARCHS = ("conv", "mlp")


def trunk_config(arch: str = "conv") -> ml_collections.ConfigDict:
    """The trunk keys of a ``model`` block (``genimg.models.autoencoder.make_trunks``)."""
    if arch not in TRUNK_ARCHS:
        raise ValueError(f"unknown trunk arch '{arch}'; expected one of {TRUNK_ARCHS}")
    m = ml_collections.ConfigDict()
    m.arch = arch
    m.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params/optimizer/losses float32)
    if arch == "conv":
        m.widths = (32, 64)  # stride-2 stages (the decoder mirrors them)
        m.conv_backend = "auto"  # "auto" (oneDNN on CPU where available) | "xla" | "onednn"
    else:
        m.hidden = (500,)  # hidden layers (the decoder mirrors them)
    m.act = "relu"
    m.norm = "none"  # "none" | "layer"
    m.dropout = 0.0
    return m


def trunk_kwargs(model_cfg) -> dict:
    """``make_trunks`` keyword arguments of a ``model`` block built on `trunk_config`."""
    if model_cfg.act not in ACTIVATIONS:
        raise ValueError(
            f"unknown model.act '{model_cfg.act}'; expected one of {list(ACTIVATIONS)}"
        )
    if model_cfg.norm not in NORMS:
        raise ValueError(f"unknown model.norm '{model_cfg.norm}'; expected one of {list(NORMS)}")
    kwargs = dict(
        act=ACTIVATIONS[model_cfg.act], norm=NORMS[model_cfg.norm], dropout=model_cfg.dropout
    )
    if model_cfg.arch == "conv":
        kwargs.update(widths=tuple(model_cfg.widths), conv_backend=model_cfg.conv_backend)
    elif model_cfg.arch == "mlp":
        kwargs.update(hidden=tuple(model_cfg.hidden))
    return kwargs


def tiny_trunk(model_cfg) -> None:
    """Narrow trunks for the ``tiny`` presets."""
    if model_cfg.arch == "conv":
        model_cfg.widths = (4, 8)
    else:
        model_cfg.hidden = (16,)


def mlp_trunk(model_cfg) -> None:
    """Switch a ``model`` block to MLP trunks (the ``mlp`` presets)."""
    for key in ("widths", "conv_backend"):
        if key in model_cfg:
            del model_cfg[key]
    model_cfg.arch = "mlp"
    model_cfg.hidden = trunk_config("mlp").hidden


def adam_config(lr: float = 1e-3) -> ml_collections.ConfigDict:
    """The ``optim`` block of `make_adam`."""
    o = ml_collections.ConfigDict()
    o.lr = lr
    o.b1 = 0.9
    o.b2 = 0.999
    o.grad_clip = 0.0  # global-norm clipping; 0 = off
    return o


def make_adam(optim_cfg) -> optax.GradientTransformation:
    """Adam, with global-norm gradient clipping when ``optim.grad_clip > 0``."""
    tx = optax.adam(optim_cfg.lr, b1=optim_cfg.b1, b2=optim_cfg.b2)
    if optim_cfg.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), tx)
    return tx
