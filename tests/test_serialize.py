"""Compiled functions pickle as tapes, load in a fresh process, and reject
corrupt or hostile payloads with a clear error."""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastad as fa
from fastad.tape import Tape


def loss(p, x):
    return np.sum(np.tanh(p["w"] * x) ** 2) + p["b"] ** 2


def make():
    g = fa.compile(loss, backend="numpy")
    p = {"w": np.linspace(0.1, 1, 4), "b": 0.3}
    x = np.arange(4.0)
    return g, p, x


def test_round_trip_in_a_fresh_process(tmp_path, backend):
    g = fa.compile(loss, backend=backend)
    _, p, x = make()
    expected = g(p, x)
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(g))
    script = textwrap.dedent(f"""
        import pickle, numpy as np
        g = pickle.loads(open({str(path)!r}, "rb").read())
        out = g({{"w": np.linspace(0.1, 1, 4), "b": 0.3}}, np.arange(4.0))
        print(repr(out["w"].tolist()), repr(float(out["b"])))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    w, b = done.stdout.split("] ")
    np.testing.assert_allclose(eval(w + "]"), expected["w"], rtol=1e-15)
    np.testing.assert_allclose(float(b), expected["b"], rtol=1e-15)


def test_loaded_function_refuses_new_signatures():
    g, p, x = make()
    g(p, x)
    h = fa.loads(fa.dumps(g))
    np.testing.assert_allclose(h(p, x)["w"], g(p, x)["w"])
    with pytest.raises(fa.SignatureError, match="without its Python function"):
        h(p, np.arange(5.0))


def test_jit_round_trip():
    j = fa.jit(lambda x: np.sin(x) * 2, backend="numpy")
    j(np.ones(3))
    k = pickle.loads(pickle.dumps(j))
    np.testing.assert_allclose(k(np.arange(3.0)), np.sin(np.arange(3.0)) * 2)


def test_hostile_payloads_are_rejected():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    for payload in [b"", b"not a pickle", pickle.dumps(Evil()),
                    pickle.dumps({"format": "fastad-compiled-1", "state": {"class": "jit"}}),
                    pickle.dumps({"format": "other"})]:
        with pytest.raises(fa.TapeError):
            fa.loads(payload)
        with pytest.raises(fa.TapeError):
            Tape.from_bytes(payload)


def test_mutated_payloads_never_crash():
    g, p, x = make()
    g(p, x)
    data = bytearray(fa.dumps(g))
    rng = np.random.default_rng(0)
    tried = accepted = 0
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            mutated[rng.integers(len(mutated))] = rng.integers(256)
        tried += 1
        try:
            h = fa.loads(bytes(mutated))
        except fa.TapeError:
            continue
        accepted += 1
        try:  # a mutation that survives validation must still fail cleanly or run
            h(p, x)
        except (fa.FastadError, ValueError, TypeError, IndexError):
            pass
    print(f"mutated payloads tried: {tried}, accepted by validation: {accepted}")
