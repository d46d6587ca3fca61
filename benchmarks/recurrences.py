"""Recurrences (issue 22): the RK4 ODE fit of benchmarks/usercode.py written
with ``fastad.scan``, at T = 200, 2,000 and 20,000 steps, against the same
fit as a Python loop (unrolled by tracing), JAX's ``lax.scan`` and a
hand-written Numba forward and adjoint loop.

    python benchmarks/report.py --only recurrences
    python benchmarks/recurrences.py            # the section alone
    python benchmarks/recurrences.py --python-loops   # only the Python loops found as loops
    python benchmarks/recurrences.py --steady   # steady gradients side by side, one table
    python benchmarks/recurrences.py --vmap-while   # vmap of a while loop, 1,000 examples

Each row: the first call (trace, differentiate, compile, run) of the
compiled gradient, the steady gradient time (interleaved rounds), and the
memory of one gradient and of one value of the same function, both compiled:
the C VM arena each runs in, plus the peak Python's allocator sees during a
call (tracemalloc, which NumPy's arrays report to).  Every gradient is checked against the Python loop's eager
gradient.  The unrolled loop is built only where its trace stays under
about a minute (T = 200, 2,000); JAX rows run when jax is installed.
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing  # noqa: E402
from usercode import _rk4_trajectory, make_rk4_fit, rk4_step  # noqa: E402

STEPS = (200, 2_000, 20_000)
UNROLLED_UP_TO = 2_000  # tracing 2,000 unrolled steps takes ~40 s; 20,000 is out of reach
TOLERANCE = 1e-8


def make_rk4_scan(fa, xnp=np):
    """The RK4 fit's loop as ``fastad.scan``."""
    def rk4_fit(theta, data):
        (_, _, loss), _ = fa.scan(rk4_step(theta[0], theta[1]), (1.0, 0.0, 0.0), data)
        return loss
    return rk4_fit


def _jax_grad():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def fit(theta, data):
        init = (jnp.float64(1.0), jnp.float64(0.0), jnp.float64(0.0))
        (_, _, loss), _ = jax.lax.scan(rk4_step(theta[0], theta[1]), init, data)
        return loss
    grad = jax.jit(jax.grad(fit))
    return lambda theta, data: np.asarray(grad(theta, data))


def _numba_grad():
    """The fit's gradient by hand, for Numba: a forward loop storing every
    state, then the RK4 step's adjoint written out, step by step backwards."""
    try:
        import numba
    except ImportError:
        return None
    from usercode import RK4_DT

    @numba.njit(cache=True)
    def grad(theta, data):
        k, c, h = theta[0], theta[1], RK4_DT
        steps = data.shape[0]
        qs, ps = np.empty(steps + 1), np.empty(steps + 1)
        q, p = 1.0, 0.0
        for t in range(steps):
            qs[t], ps[t] = q, p
            q1, p1 = p, -k * q - c * p
            qa, pa = q + 0.5 * h * q1, p + 0.5 * h * p1
            q2, p2 = pa, -k * qa - c * pa
            qb, pb = q + 0.5 * h * q2, p + 0.5 * h * p2
            q3, p3 = pb, -k * qb - c * pb
            qc, pc = q + h * q3, p + h * p3
            q4, p4 = pc, -k * qc - c * pc
            q = q + h / 6.0 * (q1 + 2.0 * q2 + 2.0 * q3 + q4)
            p = p + h / 6.0 * (p1 + 2.0 * p2 + 2.0 * p3 + p4)
        qs[steps], ps[steps] = q, p
        gk = gc = bq_next = bp_next = 0.0
        for t in range(steps - 1, -1, -1):
            q, p = qs[t], ps[t]
            q1, p1 = p, -k * q - c * p
            qa, pa = q + 0.5 * h * q1, p + 0.5 * h * p1
            q2, p2 = pa, -k * qa - c * pa
            qb, pb = q + 0.5 * h * q2, p + 0.5 * h * p2
            qc, pc = q + h * pb, p + h * (-k * qb - c * pb)
            bqn = bq_next + 2.0 * (qs[t + 1] - data[t])
            bpn = bp_next
            bq, bp = bqn, bpn
            bq1, bq2, bq3, bq4 = h / 6.0 * bqn, h / 3.0 * bqn, h / 3.0 * bqn, h / 6.0 * bqn
            bp1, bp2, bp3, bp4 = h / 6.0 * bpn, h / 3.0 * bpn, h / 3.0 * bpn, h / 6.0 * bpn
            bqc, bpc = -k * bp4, -c * bp4 + bq4
            gk -= qc * bp4
            gc -= pc * bp4
            bq += bqc
            bq3 += h * bqc
            bp += bpc
            bp3 += h * bpc
            bqb, bpb = -k * bp3, -c * bp3 + bq3
            gk -= qb * bp3
            gc -= pb * bp3
            bq += bqb
            bq2 += 0.5 * h * bqb
            bp += bpb
            bp2 += 0.5 * h * bpb
            bqa, bpa = -k * bp2, -c * bp2 + bq2
            gk -= qa * bp2
            gc -= pa * bp2
            bq += bqa
            bq1 += 0.5 * h * bqa
            bp += bpa
            bp1 += 0.5 * h * bpa
            bq -= k * bp1
            bp += -c * bp1 + bq1
            gk -= q * bp1
            gc -= p * bp1
            bq_next, bp_next = bq, bp
        return np.array([gk, gc])
    return grad


def _arena_bytes(fn) -> int:
    """The bytes of the C VM arena a compiled function's program runs in (its
    memory besides the arrays it returns), 0 if it runs elsewhere."""
    program = getattr(getattr(fn, "program", None), "program", None)
    return int(getattr(program, "arena_bytes", 0))


def _peak_bytes(fn, args) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def _first_call(build, args):
    start = time.perf_counter()
    fn = build()
    result = fn(*args)
    return fn, result, time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    import fastad as fa
    warnings.simplefilter("ignore", UserWarning)  # the loop's host-call notice
    theta = np.array([2.0, 0.3])
    jax_grad = _jax_grad()
    numba_grad = _numba_grad()
    rows = []
    for steps in STEPS:
        print(f"  T = {steps}", flush=True)
        noise = 0.01 * np.random.default_rng(4).standard_normal(steps)
        data = _rk4_trajectory(np.array([2.5, 0.2]), steps) + noise
        args = (theta, data)
        want = fa.grad(make_rk4_scan(fa))(*args) if steps > UNROLLED_UP_TO else \
            fa.grad(make_rk4_fit())(*args)
        row = {"steps": steps, "first_s": {}, "error": {}, "peak": {}}
        fns = {}
        builds = {"fastad scan [c]": lambda: fa.compile(make_rk4_scan(fa), backend="c")}
        if "numba" in fa.backends_available():
            builds["fastad scan [numba]"] = lambda: fa.compile(make_rk4_scan(fa),
                                                               backend="numba")
        if steps <= UNROLLED_UP_TO and not (quick and steps > 200):
            # as traced: reroll=False keeps the loop from being found and made a loop
            builds["fastad unrolled [c]"] = lambda: fa.compile(make_rk4_fit(), reroll=False)
        if jax_grad is not None:
            builds["JAX lax.scan"] = _jax_grad
        if numba_grad is not None:
            builds["Numba by hand"] = _numba_grad
        for name, build in builds.items():
            fn, result, seconds = _first_call(build, args)
            row["first_s"][name] = seconds
            row["error"][name] = error = float(np.max(np.abs(result - want))
                                               / np.max(np.abs(want)))
            if error <= TOLERANCE:
                fns[name] = fn
        scan_value = fa.jit(make_rk4_scan(fa), backend="c")
        scan_value(*args)
        scan_grad = fns.get("fastad scan [c]")
        if scan_grad is not None:
            # arena plus what Python's allocator sees during a call; the data
            # (8 T bytes) is copied into both arenas, where the loops read it
            row["peak"] = {"gradient": _arena_bytes(scan_grad) + _peak_bytes(scan_grad, args),
                           "value": _arena_bytes(scan_value) + _peak_bytes(scan_value, args),
                           "data": data.nbytes}
        row["steady_s"] = timing.interleaved(fns, args, 0.05 if quick else 0.2,
                                             3 if quick else 5)
        row["load"] = os.getloadavg()[0]
        rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    names = ["fastad scan [c]", "fastad scan [numba]", "fastad unrolled [c]", "JAX lax.scan",
             "Numba by hand"]
    lines = ["## Recurrences: the RK4 fit as fastad.scan, unrolled, JAX's lax.scan and "
             "a hand-written Numba adjoint", "",
             "| T | " + " | ".join(f"first call: {n}" for n in names) + " | "
             + " | ".join(f"gradient: {n}" for n in names)
             + " | memory, scan gradient / value (data) | load |",
             "|---|" + "---|" * (2 * len(names) + 2)]
    for row in rows:
        first = [timing.format_seconds(row["first_s"].get(n)) if n in row["first_s"]
                 else "not run" for n in names]
        steady = []
        for n in names:
            t = row["steady_s"].get(n)
            if t is not None:
                steady.append(timing.format_seconds(t))
            else:
                steady.append("wrong result" if row["error"].get(n, 0) > TOLERANCE
                              else "not run")
        peak = row["peak"]
        mem = (f"{peak['gradient'] / 1024:.0f} KiB / {peak['value'] / 1024:.0f} KiB "
               f"({peak['data'] / 1024:.0f} KiB)" if peak else "–")
        lines.append(f"| {row['steps']:,} | " + " | ".join(first) + " | "
                     + " | ".join(steady) + f" | {mem} | {row.get('load', 0):.1f} |")
    lines += ["", "First call: trace, differentiate, compile and run the compiled gradient "
              "(JAX: jit and the first gradient). The unrolled Python loop is not run at "
              "T = 20,000 (its trace at 2,000 already takes tens of seconds). The scan's "
              "loops are LOOP instructions of the C VM; reverse mode's loops over chunks "
              "of sqrt(T) steps hold inner LOOPs. Memory: the C VM arena of each compiled "
              "program plus Python's allocations during a call; both arenas hold a copy "
              "of the data, which the loops read there (the Numba kernel's memory is "
              "not measured). fastad scan [numba]: the loops as `for` loops around their "
              "bodies' generated code. Numba by hand: a forward loop "
              "storing every state and the RK4 step's adjoint written out (first call "
              "includes its compile, or its load from Numba's disk cache).", ""]
    return "\n".join(lines)




# -- Python loops found as recurrences (fastad/transforms/recurrence.py) -------------------
# The same fit as the plain Python loop of benchmarks/usercode.py, which
# recurrence detection turns into one loop instruction before differentiation;
# plus a vanilla RNN over a sequence and Gauss-Seidel sweeps, both as Python loops.
RNN_STEPS, RNN_HIDDEN, RNN_INPUT = 500, 16, 4
GS_SWEEPS, GS_GRID = 50, 8


def make_rnn(xnp=np):
    """A vanilla RNN over a sequence, its loss the squared error of a readout per step."""
    def rnn_loss(W, U, V, xs, ys):
        h = xnp.zeros(W.shape[0])
        loss = 0.0
        for t in range(xs.shape[0]):
            h = xnp.tanh(W @ h + U @ xs[t])
            loss = loss + xnp.sum((V @ h - ys[t]) ** 2)
        return loss
    return rnn_loss


def make_rnn_scan(jax, jnp):
    def rnn_loss(W, U, V, xs, ys):
        def step(h, xy):
            x, y = xy
            h = jnp.tanh(W @ h + U @ x)
            return h, jnp.sum((V @ h - y) ** 2)
        _, losses = jax.lax.scan(step, jnp.zeros(W.shape[0]), (xs, ys))
        return jnp.sum(losses)
    return rnn_loss


GRU_STEPS, GRU_HIDDEN, GRU_INPUT = 300, 32, 8


def make_gru(xnp=np):
    """A GRU over a sequence (update and reset gates, a candidate state), the
    loss the squared error of a readout per step: a recurrence of small
    products that no code was tuned for."""
    def sigmoid(v):
        return 1.0 / (1.0 + xnp.exp(-v))

    def gru_loss(Wz, Wr, Wh, Uz, Ur, Uh, V, xs, ys):
        h = xnp.zeros(Wz.shape[0])
        loss = 0.0
        for t in range(xs.shape[0]):
            z = sigmoid(Wz @ h + Uz @ xs[t])
            r = sigmoid(Wr @ h + Ur @ xs[t])
            c = xnp.tanh(Wh @ (r * h) + Uh @ xs[t])
            h = (1.0 - z) * h + z * c
            loss = loss + xnp.sum((V @ h - ys[t]) ** 2)
        return loss
    return gru_loss


def make_gru_scan(jax, jnp):
    def gru_loss(Wz, Wr, Wh, Uz, Ur, Uh, V, xs, ys):
        def step(h, xy):
            x, y = xy
            z = jax.nn.sigmoid(Wz @ h + Uz @ x)
            r = jax.nn.sigmoid(Wr @ h + Ur @ x)
            c = jnp.tanh(Wh @ (r * h) + Uh @ x)
            h = (1.0 - z) * h + z * c
            return h, jnp.sum((V @ h - y) ** 2)
        _, losses = jax.lax.scan(step, jnp.zeros(Wz.shape[0]), (xs, ys))
        return jnp.sum(losses)
    return gru_loss


def _gru_args(rng):
    h, d = GRU_HIDDEN, GRU_INPUT
    return (*(rng.normal(0, 0.5 / np.sqrt(h), (h, h)) for _ in range(3)),
            *(rng.normal(0, 0.5 / np.sqrt(d), (h, d)) for _ in range(3)),
            rng.normal(0, 0.3, (1, h)), rng.normal(size=(GRU_STEPS, d)),
            rng.normal(size=(GRU_STEPS, 1)))


LSTM_STEPS, LSTM_HIDDEN, LSTM_INPUT = 200, 24, 8


def make_lstm(xnp=np):
    """An LSTM over a sequence (input, forget and output gates, a cell state),
    the loss the squared error of a readout per step: two carries, eight
    small products a step; no code was tuned for it."""
    def sigmoid(v):
        return 1.0 / (1.0 + xnp.exp(-v))

    def lstm_loss(Wi, Wf, Wo, Wc, Ui, Uf, Uo, Uc, V, xs, ys):
        h = xnp.zeros(Wi.shape[0])
        c = xnp.zeros(Wi.shape[0])
        loss = 0.0
        for t in range(xs.shape[0]):
            x = xs[t]
            i = sigmoid(Wi @ h + Ui @ x)
            f = sigmoid(Wf @ h + Uf @ x)
            o = sigmoid(Wo @ h + Uo @ x)
            c = f * c + i * xnp.tanh(Wc @ h + Uc @ x)
            h = o * xnp.tanh(c)
            loss = loss + xnp.sum((V @ h - ys[t]) ** 2)
        return loss
    return lstm_loss


def make_lstm_scan(jax, jnp):
    def lstm_loss(Wi, Wf, Wo, Wc, Ui, Uf, Uo, Uc, V, xs, ys):
        def step(hc, xy):
            (h, c), (x, y) = hc, xy
            i = jax.nn.sigmoid(Wi @ h + Ui @ x)
            f = jax.nn.sigmoid(Wf @ h + Uf @ x)
            o = jax.nn.sigmoid(Wo @ h + Uo @ x)
            c = f * c + i * jnp.tanh(Wc @ h + Uc @ x)
            h = o * jnp.tanh(c)
            return (h, c), jnp.sum((V @ h - y) ** 2)
        zero = jnp.zeros(Wi.shape[0])
        _, losses = jax.lax.scan(step, (zero, zero), (xs, ys))
        return jnp.sum(losses)
    return lstm_loss


def _lstm_args(rng):
    h, d = LSTM_HIDDEN, LSTM_INPUT
    return (*(rng.normal(0, 0.5 / np.sqrt(h), (h, h)) for _ in range(4)),
            *(rng.normal(0, 0.5 / np.sqrt(d), (h, d)) for _ in range(4)),
            rng.normal(0, 0.3, (1, h)), rng.normal(size=(LSTM_STEPS, d)),
            rng.normal(size=(LSTM_STEPS, 1)))


def make_gauss_seidel(sweeps=GS_SWEEPS, xnp=np):
    """``sweeps`` Gauss-Seidel sweeps of the Poisson equation on a grid whose
    source is the parameter; the loss compares the result with a target."""
    def gs_loss(source, target):
        n = target.shape[0]
        u = 0.0 * source  # a traced array, whose elements assignment replaces
        for _ in range(sweeps):
            for i in range(1, n - 1):
                for j in range(1, n - 1):
                    u[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]
                                      + source[i, j])
        return xnp.sum((u - target) ** 2)
    return gs_loss


def make_gauss_seidel_scan(jax, jnp, sweeps=GS_SWEEPS):
    """The sweeps as JAX needs them: ``lax.scan`` over the sweeps, each sweep's
    point updates unrolled in its body (``.at[i, j].set``)."""
    def gs_loss(source, target):
        n = target.shape[0]

        def sweep(u, _):
            for i in range(1, n - 1):
                for j in range(1, n - 1):
                    u = u.at[i, j].set(0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1]
                                               + u[i, j + 1] + source[i, j]))
            return u, None
        u, _ = jax.lax.scan(sweep, 0.0 * source, None, length=sweeps)
        return jnp.sum((u - target) ** 2)
    return gs_loss


def _jax_modules():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _python_loop_row(fa, name, f, args, argnums, extra_builds, quick):
    """First calls, trace alone, detection alone and steady gradients of the
    Python loop ``f`` compiled, against the extra builds (name -> build)."""
    from fastad.transforms.recurrence import find_recurrences
    tape, trace_s = _timed(lambda: fa.make_tape(f)(*args))
    looped, detect_s = _timed(find_recurrences, tape)
    loops = [i for i in (looped or tape).instrs if i.prim == "loop"]
    row = {"workload": name, "traced": len(tape.instrs), "trace_s": trace_s,
           "detect_s": detect_s, "loops": [dict(i.params)["length"] for i in loops],
           "first_s": {}, "error": {}}
    want = fa.grad(f, argnums=argnums)(*args)
    want = np.concatenate([np.ravel(w) for w in (want if isinstance(want, tuple) else (want,))])
    builds = {f"Python loop [{b}]": (lambda b=b: fa.compile(f, argnums=argnums, backend=b))
              for b in ("auto", "c", "numba") if b in fa.backends_available() + ["auto"]}
    builds.update(extra_builds)
    fns = {}
    for label, build in builds.items():
        fn, result, seconds = _first_call(build, args)
        got = np.concatenate([np.ravel(r) for r in (result if isinstance(result, tuple)
                                                      else (result,))])
        row["first_s"][label] = seconds
        row["error"][label] = error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        if error <= TOLERANCE:
            fns[label] = fn
    row["steady_s"] = timing.interleaved(fns, args, 0.05 if quick else 0.2, 3 if quick else 5)
    row["load"] = os.getloadavg()[0]
    return row


def run_python_loops(quick: bool = False) -> list[dict]:
    import fastad as fa
    warnings.simplefilter("ignore", UserWarning)  # the loop's host-call notice
    jax_mods = _jax_modules()
    theta = np.array([2.0, 0.3])
    rows = []
    for steps in STEPS[:2] if quick else STEPS:
        print(f"  RK4 Python loop, T = {steps}", flush=True)
        noise = 0.01 * np.random.default_rng(4).standard_normal(steps)
        data = _rk4_trajectory(np.array([2.5, 0.2]), steps) + noise
        extra = {"fastad scan [c]": lambda: fa.compile(make_rk4_scan(fa))}
        if jax_mods is not None:
            extra["JAX lax.scan"] = _jax_grad
        rows.append(_python_loop_row(fa, f"RK4 fit, T = {steps:,}", make_rk4_fit(),
                                     (theta, data), 0, extra, quick))
    rng = np.random.default_rng(7)
    h, d = RNN_HIDDEN, RNN_INPUT
    rnn_args = (rng.normal(0, 0.3, (h, h)), rng.normal(0, 0.3, (h, d)), rng.normal(0, 0.3, (1, h)),
                rng.normal(size=(RNN_STEPS, d)), rng.normal(size=(RNN_STEPS, 1)))
    print(f"  RNN, {RNN_STEPS} steps", flush=True)
    extra = {}
    if jax_mods is not None:
        jax, jnp = jax_mods
        rnn_grad = jax.jit(jax.grad(make_rnn_scan(jax, jnp), argnums=(0, 1, 2)))
        extra["JAX lax.scan"] = lambda: (lambda *a: tuple(np.asarray(g) for g in rnn_grad(*a)))
    rows.append(_python_loop_row(fa, f"RNN, {RNN_STEPS} steps", make_rnn(), rnn_args,
                                 (0, 1, 2), extra, quick))
    print(f"  Gauss-Seidel, {GS_SWEEPS} sweeps", flush=True)
    n = GS_GRID
    gs_args = (rng.uniform(0, 1, (n, n)), rng.uniform(0, 0.1, (n, n)))
    rows.append(_python_loop_row(fa, f"Gauss-Seidel, {GS_SWEEPS} sweeps of {n}x{n}",
                                 make_gauss_seidel(), gs_args, 0, {}, quick))
    return rows


def report_python_loops(rows: list[dict]) -> str:
    names = ["Python loop [auto]", "Python loop [c]", "Python loop [numba]", "fastad scan [c]",
             "JAX lax.scan"]
    lines = ["## Recurrences found in Python loops", "",
             "| workload | traced instructions | loops found (steps) | trace alone | detection | "
             + " | ".join(f"first call: {n}" for n in names) + " | "
             + " | ".join(f"gradient: {n}" for n in names) + " | load |",
             "|---|---|---|---|---|" + "---|" * (2 * len(names) + 1)]
    for row in rows:
        first = [timing.format_seconds(row["first_s"][n]) if n in row["first_s"] else "–"
                 for n in names]
        steady = []
        for n in names:
            if n in row["steady_s"]:
                steady.append(timing.format_seconds(row["steady_s"][n]))
            else:
                steady.append("wrong result" if row["error"].get(n, 0) > TOLERANCE else "–")
        lines.append(f"| {row['workload']} | {row['traced']:,} | "
                     f"{', '.join(map(str, row['loops'])) or 'none'} | "
                     f"{timing.format_seconds(row['trace_s'])} | "
                     f"{timing.format_seconds(row['detect_s'])} | " + " | ".join(first) + " | "
                     + " | ".join(steady) + f" | {row['load']:.1f} |")
    lines += ["", "Trace alone: `fastad.make_tape` of the Python loop (per step in Python); "
              "detection: `transforms.recurrence.find_recurrences` on that tape. First call: "
              "trace, detect, differentiate, compile and run the compiled gradient (JAX: jit "
              "and the first gradient of the `lax.scan` rewrite).", ""]
    return "\n".join(lines)


# -- steady gradients side by side (issue 22's targets) ------------------------------------
# The RK4 fit as fastad.scan on both backends against the hand-written Numba
# adjoint and JAX's lax.scan; the RNN and Gauss-Seidel Python loops on both
# backends; a GRU Python loop (small products no code was tuned for); and a
# recurrence no code was tuned for: a leapfrog integrator of three bodies in
# the plane (12 scalar states), fitted to a track of the first body, its
# gradient with respect to the masses.
LEAPFROG_STEPS, LEAPFROG_DT = 2_000, 0.002


def leapfrog_step(m1, m2, m3):
    """One leapfrog (kick-drift-kick) step of three softened gravitating
    bodies; the carry is the 6 positions, 6 velocities and the loss, the
    step's input the first body's observed x."""
    h = LEAPFROG_DT

    def accel(x1, y1, x2, y2, x3, y3):
        def pull(dx, dy):
            r = (dx * dx + dy * dy + 0.01) ** -1.5
            return dx * r, dy * r
        ax12, ay12 = pull(x2 - x1, y2 - y1)
        ax13, ay13 = pull(x3 - x1, y3 - y1)
        ax23, ay23 = pull(x3 - x2, y3 - y2)
        return (m2 * ax12 + m3 * ax13, m2 * ay12 + m3 * ay13,
                m3 * ax23 - m1 * ax12, m3 * ay23 - m1 * ay12,
                -m1 * ax13 - m2 * ax23, -m1 * ay13 - m2 * ay23)

    def step(carry, obs):
        pos, vel, loss = carry[:6], carry[6:12], carry[12]
        acc = accel(*pos)
        half = [v + 0.5 * h * a for v, a in zip(vel, acc)]
        pos = [x + h * v for x, v in zip(pos, half)]
        acc = accel(*pos)
        vel = [v + 0.5 * h * a for v, a in zip(half, acc)]
        loss = loss + (pos[0] - obs) ** 2
        return (*pos, *vel, loss), None
    return step


LEAPFROG_START = (1.0, 0.0, -0.5, 0.8, -0.5, -0.8, 0.0, 0.6, -0.5, -0.3, 0.5, -0.3, 0.0)


def make_leapfrog_scan(scan):
    def fit(masses, track):
        carry, _ = scan(leapfrog_step(masses[0], masses[1], masses[2]), LEAPFROG_START, track)
        return carry[12]
    return fit


def _leapfrog_track(steps):
    """The first body's x under masses (1.0, 0.9, 1.1), with noise."""
    positions, carry, step = [], LEAPFROG_START, leapfrog_step(1.0, 0.9, 1.1)
    for _ in range(steps):
        carry, _ = step(carry, 0.0)
        positions.append(carry[0])
    return np.array(positions) + 0.01 * np.random.default_rng(5).standard_normal(steps)


# A recurrence the native loop steps were not tuned on: a damped pendulum,
# semi-implicit Euler steps, fitted to a noisy track of its angle; the
# gradient with respect to (g / L, damping).
PENDULUM_STEPS, PENDULUM_DT, PENDULUM_START = 2_000, 0.01, (1.2, 0.0, 0.0)


def pendulum_step(w2, damping, xnp=np):
    def step(carry, obs):
        theta, omega, loss = carry
        omega = omega - PENDULUM_DT * (w2 * xnp.sin(theta) + damping * omega)
        theta = theta + PENDULUM_DT * omega
        return (theta, omega, loss + (theta - obs) ** 2), None
    return step


def make_pendulum_scan(scan, xnp=np):
    def fit(params, track):
        (_, _, loss), _ = scan(pendulum_step(params[0], params[1], xnp), PENDULUM_START, track)
        return loss
    return fit


def _pendulum_track(steps):
    """The angle under (g / L, damping) = (9.0, 0.15), with noise."""
    angles, carry, step = [], PENDULUM_START, pendulum_step(9.0, 0.15)
    for _ in range(steps):
        carry, _ = step(carry, 0.0)
        angles.append(carry[0])
    return np.array(angles) + 0.01 * np.random.default_rng(6).standard_normal(steps)


# A second recurrence no code was tuned on, with another integrator: a
# Lotka-Volterra predator-prey fit, Heun's method (explicit trapezoidal, two
# stages a step), fitted to a noisy prey track over 20,000 steps (long enough
# for reverse mode to checkpoint); the gradient with respect to its four rates.
LOTKA_STEPS, LOTKA_DT, LOTKA_START = 20_000, 0.001, (1.0, 0.5, 0.0)


def lotka_step(a, b, c, d):
    h = LOTKA_DT

    def step(carry, obs):
        x, y, loss = carry
        fx, fy = a * x - b * x * y, d * x * y - c * y
        px, py = x + h * fx, y + h * fy
        gx, gy = a * px - b * px * py, d * px * py - c * py
        x, y = x + 0.5 * h * (fx + gx), y + 0.5 * h * (fy + gy)
        return (x, y, loss + (x - obs) ** 2), None
    return step


def make_lotka_scan(scan):
    def fit(rates, track):
        (_, _, loss), _ = scan(lotka_step(rates[0], rates[1], rates[2], rates[3]), LOTKA_START,
                               track)
        return loss
    return fit


def _lotka_track(steps):
    """The prey under rates (1.1, 0.4, 0.4, 0.1), with noise."""
    prey, carry, step = [], LOTKA_START, lotka_step(1.1, 0.4, 0.4, 0.1)
    for _ in range(steps):
        carry, _ = step(carry, 0.0)
        prey.append(carry[0])
    return np.array(prey) + 0.01 * np.random.default_rng(8).standard_normal(steps)


def _cell_case(fa, backends, jax_mods, name, make, make_scan, args):
    """A recurrent cell's steady-gradient case: its gradient with respect to
    every weight (all arguments but the sequences), compiled on each backend
    and as JAX's ``lax.scan``."""
    argnums = tuple(range(len(args) - 2))
    builds = {f"fastad [{b}]": (lambda b=b: fa.compile(make(), argnums=argnums, backend=b))
              for b in backends}
    if jax_mods is not None:
        jax, jnp = jax_mods
        grad = jax.jit(jax.grad(make_scan(jax, jnp), argnums=argnums))
        builds["JAX lax.scan"] = lambda: (lambda *a: tuple(np.asarray(g) for g in grad(*a)))
    return name, make(), args, argnums, builds


def run_steady(quick: bool = False) -> list[dict]:
    """Steady gradients of each workload, interleaved rounds, every result
    checked against the eager gradient."""
    import fastad as fa
    warnings.simplefilter("ignore", UserWarning)
    jax_mods = _jax_modules()
    backends = [b for b in ("c", "numba") if b in fa.backends_available()]
    rounds, min_s = (3, 0.05) if quick else (7, 0.1)
    cases = []
    theta = np.array([2.0, 0.3])
    numba_grad = _numba_grad()
    for steps in STEPS:
        noise = 0.01 * np.random.default_rng(4).standard_normal(steps)
        data = _rk4_trajectory(np.array([2.5, 0.2]), steps) + noise
        builds = {f"fastad [{b}]": (lambda b=b: fa.compile(make_rk4_scan(fa), backend=b))
                  for b in backends}
        if numba_grad is not None:
            builds["Numba by hand"] = _numba_grad
        if jax_mods is not None:
            builds["JAX lax.scan"] = _jax_grad
        cases.append((f"RK4 fit (fastad.scan), T = {steps:,}", make_rk4_scan(fa), (theta, data),
                      0, builds))
    rng = np.random.default_rng(7)
    h, d = RNN_HIDDEN, RNN_INPUT
    rnn_args = (rng.normal(0, 0.3, (h, h)), rng.normal(0, 0.3, (h, d)), rng.normal(0, 0.3, (1, h)),
                rng.normal(size=(RNN_STEPS, d)), rng.normal(size=(RNN_STEPS, 1)))
    cases.append(_cell_case(fa, backends, jax_mods, f"RNN (Python loop), {RNN_STEPS} steps",
                            make_rnn, make_rnn_scan, rnn_args))
    n = GS_GRID
    gs_args = (rng.uniform(0, 1, (n, n)), rng.uniform(0, 0.1, (n, n)))
    builds = {f"fastad [{b}]": (lambda b=b: fa.compile(make_gauss_seidel(), backend=b))
              for b in backends}
    if jax_mods is not None:
        jax, jnp = jax_mods
        gs_grad = jax.jit(jax.grad(make_gauss_seidel_scan(jax, jnp)))
        builds["JAX lax.scan"] = lambda gs_grad=gs_grad: (lambda *a: np.asarray(gs_grad(*a)))
    cases.append((f"Gauss-Seidel (Python loop), {GS_SWEEPS} sweeps of {n}x{n}",
                  make_gauss_seidel(), gs_args, 0, builds))
    cases.append(_cell_case(fa, backends, jax_mods,
                            f"GRU (Python loop), {GRU_STEPS} steps, hidden {GRU_HIDDEN}",
                            make_gru, make_gru_scan, _gru_args(rng)))
    cases.append(_cell_case(fa, backends, jax_mods,
                            f"LSTM (Python loop), {LSTM_STEPS} steps, hidden {LSTM_HIDDEN}",
                            make_lstm, make_lstm_scan, _lstm_args(rng)))
    track = _leapfrog_track(LEAPFROG_STEPS)
    masses = np.array([1.1, 0.8, 1.2])
    # (each build binds its own function: `fit` and `jgrad` are reused below)
    fit = make_leapfrog_scan(lambda f, c, xs: fa.scan(f, c, xs))
    builds = {f"fastad [{b}]": (lambda b=b, fit=fit: fa.compile(fit, backend=b))
              for b in backends}
    if jax_mods is not None:
        jax, jnp = jax_mods
        jfit = make_leapfrog_scan(lambda f, c, xs: jax.lax.scan(
            f, tuple(jnp.float64(v) for v in c), xs))
        jgrad = jax.jit(jax.grad(jfit))
        builds["JAX lax.scan"] = lambda jgrad=jgrad: (lambda *a: np.asarray(jgrad(*a)))
    cases.append((f"3-body leapfrog (fastad.scan), T = {LEAPFROG_STEPS:,}", fit,
                  (masses, track), 0, builds))
    fit = make_pendulum_scan(lambda f, c, xs: fa.scan(f, c, xs))
    builds = {f"fastad [{b}]": (lambda b=b, fit=fit: fa.compile(fit, backend=b))
              for b in backends}
    if jax_mods is not None:
        jax, jnp = jax_mods
        jgrad = jax.jit(jax.grad(make_pendulum_scan(lambda f, c, xs: jax.lax.scan(
            f, tuple(jnp.float64(v) for v in c), xs), jnp)))
        builds["JAX lax.scan"] = lambda jgrad=jgrad: (lambda *a: np.asarray(jgrad(*a)))
    cases.append((f"damped pendulum (fastad.scan), T = {PENDULUM_STEPS:,}", fit,
                  (np.array([8.0, 0.1]), _pendulum_track(PENDULUM_STEPS)), 0, builds))
    fit = make_lotka_scan(lambda f, c, xs: fa.scan(f, c, xs))
    builds = {f"fastad [{b}]": (lambda b=b, fit=fit: fa.compile(fit, backend=b))
              for b in backends}
    if jax_mods is not None:
        jax, jnp = jax_mods
        jgrad = jax.jit(jax.grad(make_lotka_scan(lambda f, c, xs: jax.lax.scan(
            f, tuple(jnp.float64(v) for v in c), xs))))
        builds["JAX lax.scan"] = lambda jgrad=jgrad: (lambda *a: np.asarray(jgrad(*a)))
    cases.append((f"Lotka-Volterra, Heun (fastad.scan), T = {LOTKA_STEPS:,}", fit,
                  (np.array([1.0, 0.5, 0.45, 0.12]), _lotka_track(LOTKA_STEPS)), 0, builds))
    rows = []
    for name, f, args, argnums, builds in cases:
        print(f"  {name}", flush=True)
        want = fa.grad(f, argnums=argnums)(*args)
        want = np.concatenate([np.ravel(w) for w in (want if isinstance(want, tuple) else (want,))])
        fns, first, error = {}, {}, {}
        for label, build in builds.items():
            fn, result, first[label] = _first_call(build, args)
            got = np.concatenate([np.ravel(r) for r in (result if isinstance(result, tuple)
                                                          else (result,))])
            error[label] = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
            if error[label] <= TOLERANCE:
                fns[label] = fn
        load = os.getloadavg()[0]
        # the process's CPU time: the machine is shared, and wall-clock times
        # move with the other processes' load (JAX's threads are counted too)
        steady = timing.interleaved(fns, args, min_s, rounds, clock=time.process_time) \
            if fns else {}
        rows.append({"workload": name, "steady_s": steady, "first_s": first, "error": error,
                     "load": (load, os.getloadavg()[0])})
    return rows


def report_steady(rows: list[dict]) -> str:
    names = ["fastad [c]", "fastad [numba]", "Numba by hand", "JAX lax.scan"]
    pairs = [("fastad [c]", "Numba by hand"), ("fastad [c]", "JAX lax.scan"),
             ("fastad [numba]", "Numba by hand"), ("fastad [numba]", "JAX lax.scan")]
    lines = ["## Steady gradients of recurrences (CPU time per call, medians)", "",
             "| workload | " + " | ".join(names)
             + " | c / hand | c / JAX | numba / hand | numba / JAX | load |",
             "|---|" + "---|" * (len(names) + 5)]
    for row in rows:
        t = row["steady_s"]
        cells = [timing.format_seconds(t[n]) if n in t else
                 ("wrong result" if row["error"].get(n, 0) > TOLERANCE else "–") for n in names]
        ratio = [f"{t[a] / t[b]:.2f}" if a in t and b in t else "–" for a, b in pairs]
        lines.append(f"| {row['workload']} | " + " | ".join(cells) + " | " + " | ".join(ratio)
                     + f" | {row['load'][0]:.1f}-{row['load'][1]:.1f} |")
    return "\n".join(lines)


VMAP_BATCH = 1_000


def newton_sqrt(fa, xnp=np):
    """Square roots by Newton's method to a relative tolerance: 3 to 14 steps
    over the batch below, so a vmap's examples take different trip counts."""
    def f(a):
        def going(c):
            return xnp.abs(c * c - a) > 1e-13 * a

        def step(c):
            return 0.5 * (c + a / c)
        return fa.while_loop(going, step, a)
    return f


def _jax_vmap_while():
    mods = _jax_modules()
    if mods is None:
        return None
    jax, jnp = mods
    f = jax.jit(jax.vmap(newton_sqrt(jax.lax, jnp)))
    return lambda a: np.asarray(f(a))


def run_vmap_while(quick: bool = False) -> list[dict]:
    """vmap of a while-loop Newton solve over 1,000 examples whose trip counts
    differ: the loop over the examples (what vmap ran before, falling back
    per example) against one batched loop, eager and compiled, and JAX's
    vmap(while_loop); interleaved rounds, each result checked."""
    import fastad as fa
    from fastad.core import pytree
    from fastad.vectorizing import _per_example
    warnings.simplefilter("ignore", UserWarning)
    a = np.exp(np.random.default_rng(11).uniform(np.log(1e-3), np.log(1e6), VMAP_BATCH))
    f = newton_sqrt(fa)
    want = np.array([f(x) for x in a])
    fns = {"per example (the fallback before)":
           lambda a: _per_example(f, [pytree.flatten(a)[1]], [a], [True], len(a), 0),
           "vmap, eager": fa.vmap(f)}
    for b in ("c", "numba"):
        if b in fa.backends_available():
            fns[f"jit(vmap) [{b}]"] = fa.jit(fa.vmap(f), backend=b)
    grads = {"grad, per example": lambda a: np.array([fa.grad(f)(x) for x in a]),
             "grad of sum(vmap), eager": fa.grad(lambda a: fa.numpy.sum(fa.vmap(f)(a)))}
    for b in ("c", "numba"):
        if b in fa.backends_available():
            grads[f"compile(sum(vmap)) [{b}]"] = fa.compile(
                lambda a: fa.numpy.sum(fa.vmap(f)(a)), backend=b)
    grads["vmap(grad), eager"] = fa.vmap(fa.grad(f))
    if "c" in fa.backends_available():
        grads["jit(vmap(grad)) [c]"] = fa.jit(fa.vmap(fa.grad(f)), backend="c")
    jax_f = _jax_vmap_while()
    if jax_f is not None:
        fns["JAX jit(vmap(while_loop))"] = jax_f
    rounds, min_s = (3, 0.05) if quick else (5, 0.2)
    rows = []
    for kind, group, check in (("value", fns, want), ("gradient", grads,
                                                      0.5 / np.sqrt(a))):
        first, error = {}, {}
        for label, fn in group.items():
            t0 = time.perf_counter()
            got = fn(a)
            first[label] = time.perf_counter() - t0
            error[label] = float(np.max(np.abs(got - check) / np.abs(check)))
        load = os.getloadavg()[0]
        steady = timing.interleaved(group, (a,), min_s, rounds)
        rows.append({"workload": kind, "steady_s": steady, "first_s": first, "error": error,
                     "load": (load, os.getloadavg()[0])})
    return rows


def report_vmap_while(rows: list[dict]) -> str:
    lines = [f"## vmap of a while loop: {VMAP_BATCH:,} Newton square roots, 3 to 14 steps each",
             "", "| what | how | first call | steady | max rel. error | load |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for label, t in row["steady_s"].items():
            lines.append(f"| {row['workload']} | {label} | "
                         f"{timing.format_seconds(row['first_s'][label])} | "
                         f"{timing.format_seconds(t)} | {row['error'][label]:.1e} | "
                         f"{row['load'][0]:.1f}-{row['load'][1]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--vmap-while" in sys.argv:
        print(report_vmap_while(run_vmap_while(quick)))
        sys.exit()
    if "--steady" in sys.argv:
        print(report_steady(run_steady(quick)))
        sys.exit()
    if "--python-loops" not in sys.argv:
        print(report(run(quick)))
    print(report_python_loops(run_python_loops(quick)))
