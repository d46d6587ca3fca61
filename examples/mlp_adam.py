"""A small neural network trained with a hand-written Adam loop.

    python examples/mlp_adam.py

The data are three interleaved spirals in the plane (generated here, so the
example needs nothing beyond fastad): no straight line separates them, a
network with one hidden layer does.  The weights live in a dict, and
``fa.compile(loss)`` returns gradients as a dict of the same shape, so the
optimizer is a few lines of NumPy over the dict's entries.
"""
from __future__ import annotations

import sys
import time

import numpy as np

import fastad as fa


def spirals(points_per_class: int, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """Points on `classes` spiral arms, with one-hot float labels."""
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.05, 1.0, points_per_class), classes)
    arm = np.repeat(np.arange(classes), points_per_class)
    angle = 4.0 * radius + arm * 2 * np.pi / classes + noise * rng.standard_normal(radius.size)
    X = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
    # Labels as a float one-hot matrix, not ints: float arrays are traced
    # inputs, so every mini-batch reuses one compiled gradient.  (Integer
    # arrays are compiled in as constants: each new batch would retrace.)
    return X, np.eye(classes)[arm]


def init_params(sizes, seed: int = 1) -> dict:
    """Weights scaled by 1/sqrt(fan-in) so the tanh units start unsaturated."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        params[f"b{i}"] = np.zeros(n_out)
    return params


def predict(params, X):
    """Logits of a two-layer tanh network."""
    hidden = np.tanh(X @ params["W1"] + params["b1"])
    return hidden @ params["W2"] + params["b2"]


def loss(params, X, Y):
    """Mean softmax cross-entropy against one-hot Y."""
    logits = predict(params, X)
    return np.mean(fa.numpy.logsumexp(logits, axis=1) - np.sum(Y * logits, axis=1))


def accuracy(params, X, Y) -> float:
    return float(np.mean(np.argmax(predict(params, X), axis=1) == np.argmax(Y, axis=1)))


class Adam:
    """Adam (Kingma & Ba, 2015) over a dict of arrays."""

    def __init__(self, params: dict, lr: float = 0.01, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}  # mean of gradients
        self.v = {k: np.zeros_like(v) for k, v in params.items()}  # mean of squares
        self.t = 0

    def step(self, params: dict, grads: dict) -> dict:
        self.t += 1
        # Both running means start at 0; dividing by 1 - beta^t removes that bias.
        lr = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        new = {}
        for k in params:
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * grads[k]
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * grads[k] ** 2
            new[k] = params[k] - lr * self.m[k] / (np.sqrt(self.v[k]) + self.eps)
        return new


def progress_bar(step: int, total: int, text: str, width: int = 30) -> None:
    """One line on stderr, redrawn in place."""
    filled = width * step // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {text}")
    if step == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(size: int = 300, quiet: bool = False, hidden: int = 64, steps: int = 2000,
         batch: int = 64) -> dict:
    say = (lambda *a: None) if quiet else print
    X, Y = spirals(size)
    params = init_params([X.shape[1], hidden, Y.shape[1]])
    say(f"spirals: {len(X)} points, {Y.shape[1]} classes; "
        f"MLP 2-{hidden}-{Y.shape[1]}, {steps} Adam steps on batches of {batch}")

    # Step 1: compile the gradient once.  It takes the same dict the model
    # uses and returns a dict of gradients with the same keys and shapes.
    grad = fa.compile(loss)
    optimizer = Adam(params)
    rng = np.random.default_rng(2)
    loss_start = float(loss(params, X, Y))

    # Step 2: the training loop: a fixed-size random batch per step (a fixed
    # shape keeps the compiled signature the same), one gradient, one update.
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = rng.choice(len(X), size=batch, replace=False)
        value, grads = grad.value_and_grad(params, X[idx], Y[idx])
        params = optimizer.step(params, grads)
        if not quiet and (step % 50 == 0 or step == steps):
            progress_bar(step, steps, f"batch loss {value:.4f}")
    seconds = time.perf_counter() - start

    # Step 3: the result on the whole data set.
    loss_end, acc = float(loss(params, X, Y)), accuracy(params, X, Y)
    say(f"loss {loss_start:.4f} -> {loss_end:.4f}, accuracy {acc:.1%} "
        f"(chance {1 / Y.shape[1]:.0%}); {steps} steps in {seconds:.2f} s "
        f"({seconds / steps * 1e6:.0f} us per step)")
    return {"loss_start": loss_start, "loss": loss_end, "accuracy": acc,
            "chance": 1 / Y.shape[1], "seconds": seconds}


if __name__ == "__main__":
    main()
