"""Eager ``fa.grad`` against autograd's ``grad``, per call, side by side.

    python benchmarks/eager_vs_autograd.py [--rounds 9] [--only NAME ...]

Both trace the function on every call.  ``--cpu``: rounds timed by the
process's CPU time, each engine's best round kept (on a shared machine a
round's wall time includes waits for a core).  Each program is written once over a
NumPy namespace ``xp`` (plain NumPy for fastad, ``autograd.numpy`` for
autograd), in the style of autograd's own examples: a tanh network with
log-softmax, logistic regression, a Gaussian mixture's log likelihood with
logsumexp, a recurrent net unrolled in Python, vectorized Rosenbrock, a
60-operation function of 10-vectors; and, written after the others were
tuned, a Gaussian process likelihood (solve, slogdet), an einsum attention
layer and a reparameterized variational objective; and, written after the
second round, a ReLU network with ``np.maximum``, a negative binomial
regression with ``gammaln`` and a GP likelihood with ``cholesky`` and
general solves; and, written after the third round, with the data passed
as arguments: a Poisson regression, a two-layer ReLU network and a ridge
regression through ``np.linalg.solve``; and, written after the fourth, a
total-variation denoising objective and a Student-t regression (data as
arguments).  One BLAS thread (as
``benchmarks/usercode.py``).  Rounds interleave (`timing.interleaved`); medians.  Every
gradient is checked against autograd's.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as report.py does
    os.environ.pop(_name, None)
# one BLAS thread, also for a BLAS loaded after the start (SciPy's, on the
# first triangular solve), which threadpoolctl's limit would not reach
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402


def tanh_net(xp, rng):
    """autograd's examples/neural_net.py: log-softmax of a tanh MLP, 64-32-10, batch 128."""
    sizes = [(64, 32), (32, 10)]
    params = [(rng.standard_normal(s) * 0.1, rng.standard_normal(s[1]) * 0.1) for s in sizes]
    X, T = rng.standard_normal((128, 64)), np.eye(10)[rng.integers(0, 10, 128)]

    def loss(params):
        h = X
        for W, b in params:
            out = xp.dot(h, W) + b
            h = xp.tanh(out)
        logp = out - _logsumexp(xp, out)
        return -xp.sum(logp * T) + 0.01 * sum(xp.sum(W ** 2) for W, _ in params)
    return loss, params


def _logsumexp(xp, a):
    m = xp.max(a, axis=1, keepdims=True)
    return m + xp.log(xp.sum(xp.exp(a - m), axis=1, keepdims=True))


def logistic(xp, rng):
    """autograd's README example: logistic regression with tanh for the sigmoid."""
    X, t = rng.standard_normal((200, 10)), rng.integers(0, 2, 200) * 2.0 - 1.0

    def loss(w):
        p = 0.5 * (xp.tanh(xp.dot(X, w)) + 1.0)
        label_p = p * (t > 0) + (1.0 - p) * (t < 0)
        return -xp.sum(xp.log(label_p))
    return loss, rng.standard_normal(10) * 0.1


def mixture(xp, rng):
    """autograd's examples/gmm.py: log likelihood of a 4-component diagonal mixture in 2-D."""
    data = rng.standard_normal((300, 2))

    def loss(p):
        logits, means, log_sd = p
        log_w = logits - xp.log(xp.sum(xp.exp(logits)))
        z = (data[:, None, :] - means[None]) / xp.exp(log_sd)[None]
        comp = -0.5 * xp.sum(z ** 2, axis=2) - xp.sum(log_sd, axis=1)[None] + log_w[None]
        return -xp.sum(_logsumexp(xp, comp))
    return loss, (rng.standard_normal(4), rng.standard_normal((4, 2)), 0.1 * rng.standard_normal((4, 2)))


def rnn(xp, rng):
    """autograd's examples/rnn.py shape: a tanh RNN over 20 steps, hidden 16, input 8."""
    xs = rng.standard_normal((20, 4, 8))
    W = (rng.standard_normal((24, 16)) * 0.3, rng.standard_normal((16, 8)) * 0.3)

    def loss(W):
        Wh, Wo = W
        h = xp.zeros((4, 16))
        total = 0.0
        for x in xs:
            h = xp.tanh(xp.dot(xp.concatenate((x, h), axis=1), Wh))
            total = total + xp.sum((xp.dot(h, Wo) - x) ** 2)
        return total
    return loss, W


def rosenbrock(xp, rng):
    def loss(x):
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return loss, rng.standard_normal(100)


def ops60(xp, rng):
    """60 elementwise operations and reductions on 10-vectors: per-operation overhead."""
    def loss(x):
        a, b = x, x * 0.5
        total = 0.0
        for _ in range(6):
            c = xp.sin(a) * b + 1.0
            d = xp.exp(-c * c) - a / (b * b + 1.0)
            a, b = xp.tanh(d), c - d
            total = total + xp.sum(a * b)
        return total
    return loss, rng.standard_normal(10)


def gp_nll(xp, rng):
    """autograd's examples/gaussian_process.py: the negative log marginal
    likelihood of an RBF-kernel GP in its log hyperparameters, 40 points."""
    X, y = rng.uniform(-3, 3, (40, 1)), rng.standard_normal(40)

    def loss(p):
        log_amp, log_len, log_noise = p[0], p[1], p[2]
        sq = (X - X.T) ** 2
        K = xp.exp(2.0 * log_amp) * xp.exp(-0.5 * sq / xp.exp(2.0 * log_len))
        K = K + (xp.exp(2.0 * log_noise) + 1e-6) * xp.eye(40)
        alpha = xp.linalg.solve(K, y)
        return 0.5 * xp.dot(y, alpha) + 0.5 * xp.linalg.slogdet(K)[1]
    return loss, np.array([0.1, -0.2, -1.0])


def einsum_layer(xp, rng):
    """A bilinear attention-like layer with einsum: scores of 16 queries
    against 16 keys per example (batch 8, width 12), softmax, weighted values."""
    Q, Kx = rng.standard_normal((8, 16, 12)), rng.standard_normal((8, 16, 12))

    def loss(W):
        Wq, Wv = W
        q = xp.einsum("bqd,de->bqe", Q, Wq)
        s = xp.einsum("bqe,bke->bqk", q, Kx)
        s = s - xp.max(s, axis=2, keepdims=True)
        a = xp.exp(s) / xp.sum(xp.exp(s), axis=2, keepdims=True)
        v = xp.einsum("bqk,bkd,de->bqe", a, Kx, Wv)
        return xp.sum(xp.tanh(v) ** 2)
    return loss, (rng.standard_normal((12, 12)) * 0.2, rng.standard_normal((12, 12)) * 0.2)


def variational(xp, rng):
    """autograd's examples/black_box_svi.py: a reparameterized ELBO of a
    diagonal Gaussian on a 2-D banana density, 64 fixed draws."""
    eps = rng.standard_normal((64, 2))

    def loss(p):
        mean, log_std = p[:2], p[2:]
        z = mean + xp.exp(log_std) * eps
        log_p = -0.5 * z[:, 0] ** 2 - 0.5 * (z[:, 1] - z[:, 0] ** 2) ** 2 / 0.25 \
            - xp.log(1.0 + xp.exp(-z[:, 1]))
        entropy = xp.sum(log_std) + 0.5 * 2 * (1.0 + xp.log(2 * np.pi))
        return -(xp.mean(log_p) + entropy)
    return loss, np.array([0.1, -0.3, -0.5, -0.2])


def _special(xp):
    """The ``scipy.special`` a user of ``xp`` imports: autograd's wraps its own."""
    if xp.__name__.startswith("autograd"):
        import autograd.scipy.special
        return autograd.scipy.special
    import scipy.special  # fastad traces SciPy's ufuncs through __array_ufunc__
    return scipy.special


def relu_net(xp, rng):
    """A ReLU network 16-32-32-1 written with ``np.maximum``, squared error,
    batch 64, weight decay: autograd's README style, not tuned for."""
    sizes = [(16, 32), (32, 32), (32, 1)]
    params = [(rng.standard_normal(s) / np.sqrt(s[0]), 0.1 * rng.standard_normal(s[1]))
              for s in sizes]
    X, y = rng.standard_normal((64, 16)), rng.standard_normal((64, 1))

    def loss(params):
        h = X
        for i, (W, b) in enumerate(params):
            h = h @ W + b
            if i < len(params) - 1:
                h = xp.maximum(h, 0.0)
        return xp.mean((h - y) ** 2) + 1e-4 * sum(xp.sum(W * W) for W, _ in params)
    return loss, params


def negbin(xp, rng):
    """A negative binomial regression's negative log likelihood with ``gammaln``
    (log link, 300 counts, 5 covariates, log dispersion as the last parameter)."""
    gammaln = _special(xp).gammaln
    X = rng.standard_normal((300, 5))
    counts = rng.poisson(3.0, 300).astype(float)

    def loss(p):
        beta, log_r = p[:5], p[5]
        mu = xp.exp(X @ beta)
        r = xp.exp(log_r)
        ll = (gammaln(counts + r) - gammaln(r) - gammaln(counts + 1.0)
              + r * xp.log(r / (r + mu)) + counts * xp.log(mu / (r + mu)))
        return -xp.sum(ll)
    return loss, np.concatenate([0.1 * rng.standard_normal(5), [0.3]])


def gp_cholesky(xp, rng):
    """A GP's negative log likelihood as a NumPy user writes it without SciPy:
    ``cholesky``, two general ``solve``s against its factor and its transpose,
    the log determinant from the factor's diagonal; 60 points in 2-D."""
    X, y = rng.uniform(-2, 2, (60, 2)), rng.standard_normal(60)
    sq = xp.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)

    def loss(p):
        amp, length, noise = xp.exp(p[0]), xp.exp(p[1]), xp.exp(p[2])
        K = amp * xp.exp(-0.5 * sq / length ** 2) + (noise + 1e-6) * xp.eye(60)
        L = xp.linalg.cholesky(K)
        alpha = xp.linalg.solve(L.T, xp.linalg.solve(L, y))
        return 0.5 * y @ alpha + xp.sum(xp.log(xp.diag(L)))
    return loss, np.array([0.2, -0.1, -1.5])


# Written after the third round, with the data passed as arguments (the way
# scipy.optimize and training loops call a loss): ``make`` returns the loss,
# the point and the data arguments, differentiated with respect to the first.

def poisson_data_args(xp, rng):
    """A Poisson regression's negative log likelihood (log link), 20000
    counts and 30 covariates, ``loss(beta, X, counts)``."""
    X = rng.standard_normal((20000, 30)) / np.sqrt(30)
    counts = rng.poisson(np.exp(X @ (0.3 * rng.standard_normal(30)))).astype(float)

    def loss(beta, X, counts):
        eta = X @ beta
        return xp.sum(xp.exp(eta) - counts * eta) / X.shape[0]
    return loss, 0.1 * rng.standard_normal(30), (X, counts)


def relu_data_args(xp, rng):
    """A two-layer ReLU network 64-128-10 with ``np.maximum``, batch 512,
    squared error, ``loss(params, X, Y)``."""
    params = (rng.standard_normal((64, 128)) / 8.0, np.zeros(128),
              rng.standard_normal((128, 10)) / np.sqrt(128), np.zeros(10))
    X, Y = rng.standard_normal((512, 64)), rng.standard_normal((512, 10))

    def loss(params, X, Y):
        W1, b1, W2, b2 = params
        h = xp.maximum(X @ W1 + b1, 0.0)
        return xp.mean((h @ W2 + b2 - Y) ** 2)
    return loss, params, (X, Y)


def ridge_solve_data_args(xp, rng):
    """Ridge regression's validation loss through ``np.linalg.solve`` of the
    300x300 normal equations, differentiated with respect to the log penalty
    and per-feature log scales: ``loss(p, X, y, Xv, yv)``."""
    X, Xv = rng.standard_normal((600, 300)), rng.standard_normal((200, 300))
    beta = rng.standard_normal(300) / np.sqrt(300)
    y = X @ beta + 0.1 * rng.standard_normal(600)
    yv = Xv @ beta + 0.1 * rng.standard_normal(200)

    def loss(p, X, y, Xv, yv):
        s = xp.exp(p[1:])
        Xs = X * s
        A = Xs.T @ Xs + xp.exp(p[0]) * xp.eye(300)
        w = xp.linalg.solve(A, Xs.T @ y)
        r = (Xv * s) @ w - yv
        return xp.mean(r ** 2)
    return loss, np.concatenate([[0.0], 0.01 * rng.standard_normal(300)]), (X, y, Xv, yv)


# Written after the fourth round, not tuned on: a total-variation denoising
# objective (differences of neighbours, a smoothed absolute value) and a
# Student-t regression's likelihood with the data passed as arguments.

def tv_denoise(xp, rng):
    """1-D total-variation denoising of 2000 samples: squared error plus
    a smoothed |x[i+1] - x[i]| summed (``np.diff``, ``sqrt``)."""
    clean = np.repeat(rng.standard_normal(20), 100)
    noisy = clean + 0.3 * rng.standard_normal(2000)

    def loss(x):
        return 0.5 * xp.sum((x - noisy) ** 2) + 0.8 * xp.sum(xp.sqrt(xp.diff(x) ** 2 + 1e-3))
    return loss, noisy.copy()


def student_t_data_args(xp, rng):
    """A Student-t (4 degrees of freedom) linear regression's negative log
    likelihood, 3000 points and 20 features, with respect to the
    coefficients and the log scale: ``loss(p, X, y)``."""
    X = rng.standard_normal((3000, 20))
    y = X @ rng.standard_normal(20) + rng.standard_t(4, 3000)

    def loss(p, X, y):
        r = (y - X @ p[1:]) / xp.exp(p[0])
        return xp.sum(2.5 * xp.log1p(r ** 2 / 4.0)) / y.shape[0] + p[0]
    return loss, np.concatenate([[0.1], 0.1 * rng.standard_normal(20)]), (X, y)


def _usercode(name):
    """A workload of `benchmarks/usercode.py` (data passed as arguments)."""
    def make(xp, rng):
        import usercode
        wl = usercode.BUILDERS[name]()
        return wl.make_f(xp), wl.args[0], tuple(wl.args[1:])
    make.__name__ = f"usercode_{name}"
    return make


#: the programs tuned for (the first six), three written after the first
#: tuning, three more after the second and three (with data arguments)
#: after the third, to check that the speed holds on code it was not tuned on
PROGRAMS = {f.__name__: f for f in (tanh_net, logistic, mixture, rnn, rosenbrock, ops60,
                                      gp_nll, einsum_layer, variational,
                                      relu_net, negbin, gp_cholesky,
                                      poisson_data_args, relu_data_args,
                                      ridge_solve_data_args, tv_denoise, student_t_data_args,
                                      *(_usercode(n) for n in ("logreg", "softmax", "mlp", "GP-n200")))}


def _flat(tree):
    if isinstance(tree, (list, tuple)):
        return [leaf for t in tree for leaf in _flat(t)]
    return [np.asarray(tree)]


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def main() -> None:
    with _one_blas_thread():
        _main()


def _main() -> None:
    import autograd
    import autograd.numpy as anp

    import fastad as fa
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-round", type=float, default=0.2)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--cpu", action="store_true",
                        help="time rounds by the process's CPU time and keep each engine's "
                             "best round (a loaded machine's waits for a core left out)")
    opts = parser.parse_args()
    clock = time.process_time if opts.cpu else time.perf_counter
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"| program | fa.grad (eager) | autograd | speed vs autograd |")
    print("|---|---|---|---|")
    for name, make in PROGRAMS.items():
        if opts.only and name not in opts.only:
            continue
        f_np, x, *data = make(np, np.random.default_rng(0))
        f_ag, *_ = make(anp, np.random.default_rng(0))
        args = (x, *(data[0] if data else ()))
        fns = {"fastad": fa.grad(f_np), "autograd": autograd.grad(f_ag)}
        for got, want in zip(_flat(fns["fastad"](*args)), _flat(fns["autograd"](*args))):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        t = timing.interleaved(fns, args, opts.min_round, opts.rounds, clock,
                               min if opts.cpu else None)
        print(f"| {name} | {timing.format_seconds(t['fastad'])} | "
              f"{timing.format_seconds(t['autograd'])} | {t['autograd'] / t['fastad']:.2f}x |",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
