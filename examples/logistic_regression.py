"""Multinomial logistic regression on the handwritten digits bundled with scikit-learn.

    python -m pip install scikit-learn
    python examples/logistic_regression.py

``sklearn.datasets.load_digits`` reads 1797 8x8 images from a file inside the
scikit-learn wheel; nothing is downloaded.  We fit an L2-regularized softmax
classifier by minimizing its loss with ``fa.minimize`` (L-BFGS-B and fastad's
compiled gradient), then check it against scikit-learn's own
``LogisticRegression`` fitted to the same objective.
"""
from __future__ import annotations

import time

import numpy as np

import fastad as fa

N_CLASSES = 10


def load_data(size: int | None, seed: int = 0):
    """Digits as standardized features and one-hot labels, split 75% / 25%."""
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(X))[:size]
    X, labels = X[order], labels[order]
    n_train = int(0.75 * len(X))
    # Standardize with training statistics only; constant pixels (the
    # corners are always 0) keep a scale of 1 instead of dividing by zero.
    mean, std = X[:n_train].mean(axis=0), X[:n_train].std(axis=0)
    X = (X - mean) / np.where(std > 0, std, 1.0)
    return (X[:n_train], labels[:n_train]), (X[n_train:], labels[n_train:])


def unpack(theta, n_features):
    """SciPy optimizes one flat vector; the model wants a matrix and a bias."""
    W = theta[: n_features * N_CLASSES].reshape(n_features, N_CLASSES)
    b = theta[n_features * N_CLASSES:]
    return W, b


def loss(theta, X, Y, lam):
    """Mean cross-entropy of softmax(X W + b) against one-hot Y, plus (lam/2) |W|^2."""
    W, b = unpack(theta, X.shape[1])
    logits = X @ W + b
    # log softmax = logits - logsumexp(logits): stable for large logits.
    log_probs = logits - fa.numpy.logsumexp(logits, axis=1, keepdims=True)
    return -np.mean(np.sum(Y * log_probs, axis=1)) + 0.5 * lam * np.sum(W ** 2)


def accuracy(theta, X, labels):
    W, b = unpack(theta, X.shape[1])
    return float(np.mean(np.argmax(X @ W + b, axis=1) == labels))


def main(size: int | None = None, quiet: bool = False, lam: float = 1e-3) -> dict:
    say = (lambda *a: None) if quiet else print
    (X_train, y_train), (X_test, y_test) = load_data(size)
    # Labels enter the loss as a float one-hot matrix: float arrays are traced
    # inputs, so new data reuses the compiled tape instead of being baked in.
    Y_train = np.eye(N_CLASSES)[y_train]
    n_features = X_train.shape[1]
    say(f"digits: {len(X_train)} training and {len(X_test)} test images, "
        f"{n_features} features, {N_CLASSES} classes")

    # Step 1: minimize.  fa.minimize compiles `loss` once; the data and lam
    # pass through `args` exactly as with scipy.optimize.minimize.
    iteration = 0

    def show_progress(intermediate_result):
        nonlocal iteration
        iteration += 1
        if iteration % 25 == 0:
            say(f"  iteration {iteration:>4}  loss = {intermediate_result.fun:.5f}")

    theta0 = np.zeros(n_features * N_CLASSES + N_CLASSES)
    args = (X_train, Y_train, lam)
    start = time.perf_counter()
    result = fa.minimize(loss, theta0, args=args, method="L-BFGS-B", callback=show_progress,
                         options={"ftol": 1e-12, "gtol": 1e-8})
    seconds = time.perf_counter() - start
    train_acc = accuracy(result.x, X_train, y_train)
    test_acc = accuracy(result.x, X_test, y_test)
    say(f"fastad + L-BFGS-B: {result.nit} iterations, {seconds:.2f} s, "
        f"loss {loss(theta0, *args):.4f} -> {result.fun:.4f}")
    say(f"  train accuracy {train_acc:.1%}, test accuracy {test_acc:.1%} "
        f"(chance {1 / N_CLASSES:.0%})")

    # Step 2: the same objective in scikit-learn.  LogisticRegression minimizes
    # C * sum(cross-entropy) + |W|^2 / 2, which is ours times 1 / lam when
    # C = 1 / (n lam); both should land on the same model.
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=1.0 / (len(X_train) * lam), tol=1e-10, max_iter=10_000)
    reference.fit(X_train, y_train)
    theta_ref = np.concatenate([reference.coef_.T.ravel(), reference.intercept_])
    # Softmax is unchanged by adding a constant to every class's bias, and
    # sklearn leaves its intercepts unregularized too: compare biases centred.
    theta_ref[-N_CLASSES:] += np.mean(result.x[-N_CLASSES:]) - np.mean(theta_ref[-N_CLASSES:])
    say(f"scikit-learn: loss {loss(theta_ref, *args):.4f}, test accuracy "
        f"{reference.score(X_test, y_test):.1%}, "
        f"max |weight difference| {np.max(np.abs(result.x - theta_ref)):.1e}")

    assert result.success, result.message
    return {"loss_start": float(loss(theta0, *args)), "loss": float(result.fun),
            "loss_sklearn": float(loss(theta_ref, *args)),
            "train_accuracy": train_acc, "test_accuracy": test_acc,
            "nit": result.nit, "seconds": seconds}


if __name__ == "__main__":
    main()
