"""How much of the class an encoder's features carry: a linear probe and 1-nearest-neighbour
classification on frozen features (the protocol of the BiGAN paper's Table 1 and of linear
evaluation in self-supervised learning).

- `logistic_regression`: multinomial logistic regression, ``mean CE + l2 / 2 * ||W||^2``
  (bias not penalised), minimised to convergence with optax's L-BFGS on the full batch. It is
  sklearn's ``LogisticRegression(C)`` with ``l2 = 1 / (C * N)``.
- `linear_probe`: standardise the features (train mean / std), pick ``l2`` from a grid by
  accuracy on a held-out tenth of the training set, refit on all of it, report test accuracy.
- `nearest_neighbour_accuracy`: each test point takes the label of its nearest training point
  (cosine similarity by default, or Euclidean distance), in chunks.
- `encode_images`: features of uint8 images through any ``fn(images in [0, 1]) -> [B, D]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import tqdm

L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


def encode_images(
    fn: Callable[[jax.Array], jax.Array],
    images: np.ndarray,
    batch_size: int = 500,
    progress: bool = False,
) -> np.ndarray:
    """float32 ``[N, D]`` features of uint8 images ``[N, H, W, C]`` (``fn`` is jitted; the last
    batch is padded so it compiles once)."""
    images = np.asarray(images)
    jitted = jax.jit(lambda x: fn(x.astype(jnp.float32) / 255.0))
    batch = min(batch_size, len(images))
    out = []
    for start in tqdm.trange(0, len(images), batch, desc="features", disable=not progress):
        chunk = images[start : start + batch]
        keep = len(chunk)
        if keep < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - keep, *chunk.shape[1:]), np.uint8)])
        feats = np.asarray(jax.device_get(jitted(chunk)), np.float32)
        out.append(feats.reshape(batch, -1)[:keep])
    return np.concatenate(out)


def _loss(params, x, y, l2):
    logits = x @ params["w"] + params["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + 0.5 * l2 * jnp.sum(jnp.square(params["w"]))


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter"))
def _fit(x, y, l2, *, num_classes, max_iter, tol):
    params = {
        "w": jnp.zeros((x.shape[1], num_classes), x.dtype),
        "b": jnp.zeros((num_classes,), x.dtype),
    }
    fun = functools.partial(_loss, x=x, y=y, l2=l2)
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    def going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        return (count == 0) | ((count < max_iter) & (otu.tree_norm(grad) >= tol))

    params, state = jax.lax.while_loop(going, step, (params, opt.init(params)))
    return params, otu.tree_get(state, "count")


def logistic_regression(
    x, y, num_classes: int, l2: float, max_iter: int = 500, tol: float = 1e-5
) -> tuple[dict, int]:
    """``({"w": [D, K], "b": [K]}, iterations)`` minimising the mean cross-entropy of ``x``
    ``[N, D]``, integer ``y`` ``[N]``, plus ``l2 / 2 * ||w||^2``, with L-BFGS until the gradient
    norm is below ``tol`` (or ``max_iter``)."""
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    params, count = _fit(x, y, jnp.float32(l2), num_classes=num_classes, max_iter=max_iter, tol=tol)
    return jax.device_get(params), int(count)


def _accuracy(params, x, y) -> float:
    logits = np.asarray(x, np.float32) @ params["w"] + params["b"]
    return float(np.mean(np.argmax(logits, -1) == np.asarray(y)))


def standardize(train: np.ndarray, *others: np.ndarray, floor: float = 1e-6):
    """z-scores with the training set's mean and std (constant features stay 0)."""
    train = np.asarray(train, np.float64)
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > floor, std, 1.0)
    return [((np.asarray(a, np.float64) - mean) / std).astype(np.float32) for a in (train, *others)]


def linear_probe(
    train_x, train_y, test_x, test_y, *, l2_grid=L2_GRID, val_fraction: float = 0.1, seed: int = 0
) -> dict:
    """Test accuracy of logistic regression on standardised features, ``l2`` chosen on a
    held-out ``val_fraction`` of the training set (then refit on all of it)."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    n = len(train_y)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    val, fit = order[:n_val], order[n_val:]
    xs_fit, xs_val = standardize(np.asarray(train_x)[fit], np.asarray(train_x)[val])
    val_acc = {}
    for l2 in l2_grid:
        params, _ = logistic_regression(xs_fit, train_y[fit], num_classes, l2)
        val_acc[l2] = _accuracy(params, xs_val, train_y[val])
    best = max(l2_grid, key=lambda l2: (val_acc[l2], l2))  # ties: the stronger penalty
    x_train, x_test = standardize(train_x, test_x)
    params, iterations = logistic_regression(x_train, train_y, num_classes, best)
    return {
        "linear_acc": _accuracy(params, x_test, test_y),
        "linear_train_acc": _accuracy(params, x_train, train_y),
        "linear_l2": float(best),
        "linear_val_acc": val_acc[best],
        "linear_iterations": iterations,
    }


def nearest_neighbour_accuracy(
    train_x, train_y, test_x, test_y, metric: str = "cosine", chunk: int = 1000
) -> float:
    """Accuracy of 1-NN classification of ``test_x`` by ``train_x`` (``"cosine"`` similarity
    or ``"euclidean"`` distance; ties go to the first training point)."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric '{metric}'; expected 'cosine' or 'euclidean'")
    train = jnp.asarray(train_x, jnp.float32)
    if metric == "cosine":
        train = train / jnp.maximum(jnp.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    train_sq = jnp.sum(jnp.square(train), axis=1)

    @jax.jit
    def nearest(q):
        if metric == "cosine":
            q = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            return jnp.argmax(q @ train.T, axis=1)
        # ||q - t||^2 = ||q||^2 - 2 q.t + ||t||^2; ||q||^2 does not change the argmin.
        return jnp.argmin(train_sq[None, :] - 2.0 * q @ train.T, axis=1)

    test_x = np.asarray(test_x, np.float32)
    idx = np.concatenate(
        [
            np.asarray(nearest(jnp.asarray(test_x[s : s + chunk])))
            for s in range(0, len(test_x), chunk)
        ]
    )
    return float(np.mean(np.asarray(train_y)[idx] == np.asarray(test_y)))


def probe_scores(train_x, train_y, test_x, test_y, seed: int = 0) -> dict:
    """``probe_linear_acc`` (with the chosen l2 and train accuracy), ``probe_1nn_acc``
    (cosine) and ``probe_dim`` of frozen features."""
    scores = linear_probe(train_x, train_y, test_x, test_y, seed=seed)
    scores["1nn_acc"] = nearest_neighbour_accuracy(train_x, train_y, test_x, test_y)
    scores["dim"] = int(np.asarray(train_x).shape[1])
    return {f"probe_{k}": v for k, v in scores.items()}
