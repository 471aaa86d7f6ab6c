"""Mixed precision for any ``flax.linen`` module: parameters and optimizer state in float32,
the forward and backward computation in a lower ``dtype`` (bfloat16), the outputs -- and so
the losses -- in float32.

    model = precision.wrap(DCGANGenerator(...), "bfloat16")
    variables = model.init(rng, z)                 # float32 parameters, as without the wrap
    images = model.apply(variables, z)             # computed in bfloat16, returned as float32

`wrap` casts the floating-point ``params`` and the floating-point positional / keyword
arguments to ``dtype`` on the way in and every floating-point output (including updated
``batch_stats``) back to float32 on the way out. Gradients with respect to the float32
parameters flow through the casts, so the optimizer never sees bfloat16. Other collections
(batch-norm running averages, spectral-norm vectors) stay float32 (flax computes batch
statistics in float32). This is the policy of ``jmp``/Haiku's mixed precision ("params
float32, compute bfloat16, output float32") applied at the ``apply`` boundary, so no layer
needs a ``dtype`` field. With ``dtype="float32"`` `wrap` returns the module itself: the
default path is unchanged bit for bit.

bfloat16 has the float32 exponent range, so no loss scaling is needed (unlike float16, which
is not offered). On CPU, XLA computes most bfloat16 ops by converting to float32 (no speedup);
the gain is on TPUs and recent GPUs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16")


def check_dtype(dtype: str) -> None:
    """ValueError (one line) unless ``dtype`` is one of `DTYPES`."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def cast_floats(tree, dtype):
    """``tree`` with every floating-point array cast to ``dtype`` (others unchanged)."""

    def cast(x):
        if isinstance(x, (jax.Array, jnp.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True)
class MixedPrecision:
    """A module whose ``apply`` computes in ``dtype`` (see the module docstring)."""

    module: Any
    dtype: Any = jnp.bfloat16

    def init(self, *args, **kwargs):
        return self.module.init(*args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        variables = dict(variables)
        if "params" in variables:
            variables["params"] = cast_floats(variables["params"], self.dtype)
        special = {k: kwargs.pop(k) for k in ("method", "mutable", "rngs") if k in kwargs}
        args, kwargs = cast_floats((args, kwargs), self.dtype)
        return cast_floats(self.module.apply(variables, *args, **kwargs, **special), jnp.float32)

    def __getattr__(self, name):  # module fields and methods (e.g. ``VAE.encode``) pass through
        return getattr(self.module, name)


def wrap(module, dtype: str = "float32"):
    """``module`` computing in ``dtype`` ("float32": ``module`` itself, "bfloat16")."""
    check_dtype(dtype)
    if dtype == "float32":
        return module
    return MixedPrecision(module, jnp.dtype(dtype))
