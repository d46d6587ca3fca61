"""Threefry-2x32 counter-based random bits, in NumPy, as JAX computes them.

A key is two uint32 words.  Every draw is a pure function of its key:
``split`` and ``fold_in`` hash the key with counters, and bits of a shape
hash it with the 64-bit iota of that shape (JAX's "partitionable" scheme,
its default), so ``uniform(key, shape, float32)`` gives JAX's floats bit
for bit and the same key always gives the same numbers.

Everything here works on concrete arrays; `primitives.random` makes
these functions primitives whose host calls recompute them on every call
of a compiled function (the key being a data argument).
"""
from __future__ import annotations

import math

import numpy as np

_U32 = np.uint32
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: np.ndarray, d: int) -> np.ndarray:
    return (x << _U32(d)) | (x >> _U32(32 - d))


def threefry2x32(k1: np.ndarray, k2: np.ndarray, x1: np.ndarray,
                 x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 block hash (20 rounds) of counter words x1, x2
    under key words k1, k2; uint32 arithmetic wraps around, as in C."""
    ks = (_U32(k1), _U32(k2), _U32(k1) ^ _U32(k2) ^ _U32(_PARITY))
    x = [np.array(x1, dtype=_U32, ndmin=1) + ks[0], np.array(x2, dtype=_U32, ndmin=1) + ks[1]]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x[0] = x[0] + x[1]
            x[1] = x[0] ^ _rotl(x[1], r)
        x[0] = x[0] + ks[(block + 1) % 3]
        x[1] = x[1] + ks[(block + 2) % 3] + _U32(block + 1)
    return x[0], x[1]


def as_key(key: object) -> np.ndarray:
    """``key`` (two integers; a traced key's float64 copy of them) as uint32[2]."""
    words = np.asarray(key)
    if words.shape != (2,):
        raise ValueError(f"a random key is an array of two uint32 words (PRNGKey(seed)); "
                         f"got shape {words.shape}")
    if words.dtype.kind == "f":
        words = words.astype(np.int64)
    if words.dtype.kind not in "iu":
        raise TypeError(f"a random key holds uint32 words, not {words.dtype}")
    return words.astype(_U32)


def seed_key(seed: int) -> np.ndarray:
    """JAX's ``PRNGKey(seed)``: the seed's 64 bits as two words, high first."""
    bits = int(seed) & 0xFFFFFFFFFFFFFFFF
    return np.array([bits >> 32, bits & 0xFFFFFFFF], dtype=_U32)


def _counters(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit iota of ``shape`` as its high and low words."""
    n = np.arange(math.prod(shape), dtype=np.uint64)
    return (n >> np.uint64(32)).astype(_U32), (n & np.uint64(0xFFFFFFFF)).astype(_U32)


def _hash_counters(key: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    key = as_key(key)
    if math.prod(shape) == 0:
        empty = np.zeros(shape, dtype=_U32)
        return empty, empty
    hi, lo = _counters(shape)
    b1, b2 = threefry2x32(key[0], key[1], hi, lo)
    return b1.reshape(shape), b2.reshape(shape)


def split(key: object, shape: tuple[int, ...]) -> np.ndarray:
    """``shape`` new keys (uint32, shape + (2,)) derived from ``key``."""
    b1, b2 = _hash_counters(key, shape)
    return np.stack([b1, b2], axis=-1)


def fold_in(key: object, data: int) -> np.ndarray:
    """A new key from ``key`` and an integer (its low 32 bits, as JAX's)."""
    key = as_key(key)
    b1, b2 = threefry2x32(key[0], key[1], np.zeros(1, _U32),
                          np.array([int(data) & 0xFFFFFFFF], dtype=_U32))
    return np.concatenate([b1, b2])


def bits(key: object, shape: tuple[int, ...], width: int) -> np.ndarray:
    """Uniform random unsigned integers of ``width`` bits (8, 16, 32, 64)."""
    if width not in (8, 16, 32, 64):
        raise ValueError(f"random bits come in widths 8, 16, 32 and 64, not {width}")
    b1, b2 = _hash_counters(key, shape)
    if width == 64:
        return (b1.astype(np.uint64) << np.uint64(32)) | b2.astype(np.uint64)
    return (b1 ^ b2).astype(f"uint{width}")


def unit_floats(key: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Uniform floats of ``dtype`` in [0, 1): random mantissa bits under the
    exponent of 1.0, minus 1 (every value a multiple of the dtype's epsilon)."""
    info = np.finfo(dtype)
    width = max(info.bits, 8)
    raw = bits(key, shape, width).astype(f"uint{info.bits}")
    mantissa = raw >> np.array(width - info.nmant, raw.dtype)
    one = np.array(1.0, dtype).view(raw.dtype)
    return (mantissa | one).view(dtype) - np.array(1.0, dtype)


def randint(key: object, shape: tuple[int, ...], minval: np.ndarray, maxval: np.ndarray,
            dtype: np.dtype) -> np.ndarray:
    """Integers in [minval, maxval) (broadcast to ``shape``), JAX's recipe:
    two words of random bits reduced modulo the span, nearly unbiased."""
    info = np.iinfo(dtype)
    unsigned = np.dtype(f"uint{info.bits}")
    key = as_key(key)
    k1, k2 = split(key, (2,))
    high, low = bits(k1, shape, info.bits), bits(k2, shape, info.bits)
    too_high = np.asarray(maxval) > info.max
    lo = np.clip(minval, info.min, info.max).astype(dtype)
    hi = np.clip(maxval, info.min, info.max).astype(dtype)
    with np.errstate(over="ignore"):
        span = (hi.astype(np.int64).astype(unsigned) - lo.astype(np.int64).astype(unsigned))
        span = np.where(hi <= lo, unsigned.type(1), span)
        span = np.where(too_high & (hi > lo), span + unsigned.type(1), span).astype(unsigned)
        multiplier = (unsigned.type(2 ** (info.bits // 2)) % span) if info.bits < 64 \
            else (np.uint64(2 ** 32) % span)
        multiplier = (multiplier * multiplier) % span
        offset = ((high % span) * multiplier + (low % span)) % span
        return (lo + offset.astype(dtype)).astype(dtype)


def shuffle_order(key: object, n: int) -> np.ndarray:
    """A random permutation of range(n): sorting by fresh 32-bit keys, in as
    many rounds as make collisions unlikely (JAX's `_shuffle`)."""
    order = np.arange(n, dtype=np.int64)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    key = as_key(key)
    for _ in range(rounds):
        key, sub = split(key, (2,))
        order = order[np.argsort(bits(sub, (n,), 32), kind="stable")]
    return order


def numpy_generator(key: object) -> np.random.Generator:
    """A NumPy generator seeded by the key's two words: the samplers whose
    algorithms are rejection loops (gamma, Poisson, binomial) draw from it,
    so their values are a function of the key, though not JAX's values."""
    key = as_key(key)
    return np.random.default_rng([int(key[0]), int(key[1])])
