"""An ODE parameter fit's gradient: the Lotka-Volterra parameters (4) from
observations of both populations at 50 times over [0, 10].

    python benchmarks/ode_fit.py [--rounds 7]

Rows: fastad's ``solve_ivp`` (RK45, SciPy's adaptive Dormand-Prince, one
while loop; discretize-then-differentiate) compiled for the C VM; the same
with fixed RK4 steps (a scan); fastad's ``odeint`` (SciPy's LSODA with the
continuous adjoint method, NumPy calls in compiled code); JAX's
``jax.experimental.ode.odeint`` (adaptive Dormand-Prince, continuous adjoint,
``jit``) when jax is installed.  Each: the first call (trace, differentiate,
compile, run) and the steady time of one gradient (median of interleaved
rounds, each round at least 0.2 s of calls).  All at rtol 1e-6, atol 1e-8;
the gradients are printed against the RK45 one (they differ by the methods'
errors, not by rounding).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastad as fa
from fastad.scipy.integrate import odeint, solve_ivp

TIMES = np.linspace(0.0, 10.0, 50)
TRUE = np.array([1.1, 0.4, 0.4, 0.1])
Y0 = np.array([10.0, 5.0])
RTOL, ATOL = 1e-6, 1e-8
RK4_STEPS = 8  # per interval between observations: 392 steps, error ~1e-6


def lotka_volterra(t, y, p):
    return np.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def observations() -> np.ndarray:
    import scipy.integrate as si
    return si.solve_ivp(lambda t, y: np.asarray(lotka_volterra(t, y, TRUE)), (0.0, 10.0), Y0,
                        t_eval=TIMES, rtol=1e-10, atol=1e-12).y


def fastad_rk45(obs):
    def loss(p):
        y = solve_ivp(lotka_volterra, (0.0, 10.0), Y0, args=(p,), t_eval=TIMES, rtol=RTOL,
                      atol=ATOL).y
        return np.sum((y - obs) ** 2)
    return loss


def fastad_rk4(obs):
    def loss(p):
        y = solve_ivp(lotka_volterra, (0.0, 10.0), Y0, args=(p,), t_eval=TIMES, method="RK4",
                      steps=RK4_STEPS).y
        return np.sum((y - obs) ** 2)
    return loss


def fastad_odeint(obs):
    def loss(p):
        y = odeint(lambda y, t, p: lotka_volterra(t, y, p), Y0, TIMES, args=(p,), rtol=RTOL,
                   atol=ATOL)
        return np.sum((y.T - obs) ** 2)
    return loss


def compiled(loss):
    def build():
        g = fa.compile(loss, backend="c" if "c" in fa.backends_available() else "numpy")
        return lambda p: g.value_and_grad(p)[1]
    return build


def jax_odeint(obs):
    try:
        import jax
        import jax.numpy as jnp
        from jax.experimental.ode import odeint as jodeint
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def rhs(y, t, p):
        return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])

    def loss(p):
        y = jodeint(rhs, jnp.asarray(Y0), jnp.asarray(TIMES), p, rtol=RTOL, atol=ATOL)
        return jnp.sum((y.T - obs) ** 2)

    def build():
        g = jax.jit(jax.grad(loss))
        return lambda p: np.asarray(g(jnp.asarray(p)))
    return build


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    obs = observations()
    p = TRUE * np.array([1.1, 0.9, 1.05, 0.95])
    builders = {"fastad solve_ivp RK45, C VM": compiled(fastad_rk45(obs)),
                "fastad solve_ivp RK4 (8 steps/interval), C VM": compiled(fastad_rk4(obs)),
                "fastad odeint (adjoint, SciPy LSODA), compiled": compiled(fastad_odeint(obs))}
    jax_build = jax_odeint(obs)
    if jax_build is not None:
        builders["JAX odeint (adjoint), jit"] = jax_build
    funcs, first = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, build in builders.items():
            start = time.perf_counter()
            f = build()
            grad = f(p)
            first[name] = time.perf_counter() - start
            funcs[name] = (f, grad)
        times: dict[str, list[float]] = {name: [] for name in funcs}
        for _ in range(rounds):  # interleaved: every contender once per round
            for name, (f, _) in funcs.items():
                reps, start = 0, time.perf_counter()
                while time.perf_counter() - start < 0.2:
                    f(p)
                    reps += 1
                times[name].append((time.perf_counter() - start) / reps)
    reference = funcs["fastad solve_ivp RK45, C VM"][1]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'':50} {'first call':>11} {'gradient':>10} {'vs RK45 grad':>13}")
    for name, (_, grad) in funcs.items():
        rel = np.max(np.abs(grad - reference)) / np.max(np.abs(reference))
        print(f"{name:50} {first[name]:10.2f}s {statistics.median(times[name]) * 1e3:8.2f}ms "
              f"{rel:13.1e}")


if __name__ == "__main__":
    main()
