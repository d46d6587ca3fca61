"""Float sums in generated Numba code as NumPy computes them: pairwise.

A running sum rounds once per element, so its error grows with n: 10**6
float32 values of 0.1 summed one after another are 1% off.  NumPy sums a
contiguous run pairwise (its ``pairwise_sum`` loop: runs of at most 128 with
eight partial sums, halved recursively above that), whose error grows with
log n.  `pairwise_sum` is that loop, in the array's own type, jitted once per
dtype (in Numba's disk cache) and linked into the kernels that call it, so
a generated full or row sum has NumPy's bits, as the C VM's has
(csrc/kernels.c, ``pairwise_sum_d``).  The eight partial sums are
independent, so LLVM may vectorize them without reordering any one.
"""
from __future__ import annotations

import numpy as np

# what a generated module imports to call the helpers (`numba_source`)
IMPORT = "from fastad.backends.numba_sums import pairwise_sum"
STREAM_IMPORT = "from fastad.backends.numba_sums import leaf_at, leaf_push"
BLOCK = 128
DEPTH = 64  # each level of the tree at least halves n < 2**63


def _block_sum(a, start, n):  # pragma: no cover  (run compiled)
    """NumPy's sum of a run of 1 <= n <= BLOCK elements: one running sum
    below 8, else eight partial sums; -0.0 plus the first element is that
    element, so a run starts from it."""
    if n < 8:
        res = a[start]
        for i in range(start + 1, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    end = n - n % 8
    while i < end:
        j = start + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(start + i, start + n):
        res += a[j]
    return res


def _pairwise_sum(a, start, n):  # pragma: no cover  (run compiled)
    """The sum of a[start:start + n], n >= 1, a a 1-D float array.  NumPy
    recurses (left half, right half, their sum); a recursive function in
    Numba's disk cache does not link, so the same tree is walked with an
    explicit stack (depth <= 64: each level halves n)."""
    if n <= BLOCK:
        return block_sum(a, start, n)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    phase = np.zeros(64, np.int8)
    vals = np.empty(64, a.dtype)
    top, nv = 0, 0
    starts[0], sizes[0] = start, n
    while top >= 0:
        s, m = starts[top], sizes[top]
        if m <= BLOCK:
            vals[nv] = block_sum(a, s, m)
            nv += 1
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        if phase[top] == 0:  # the left half first
            phase[top] = 1
            top += 1
            starts[top], sizes[top], phase[top] = s, half, 0
        elif phase[top] == 1:  # then the right half
            phase[top] = 2
            top += 1
            starts[top], sizes[top], phase[top] = s + half, m - half, 0
        else:  # both done: their sum
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


# A fused loop sums values it computes one by one and stores none of them:
# it walks the same tree as they come.  `leaf_at` gives the leaf of the tree
# that starts at a position, with the number of additions of finished
# subtrees that follow it; the loop writes a leaf's values into a scratch
# array of SCRATCH (the leaf's BLOCK values, then a stack of DEPTH subtree
# sums), and `leaf_push` sums the leaf as `block_sum` does and adds it on the
# stack as NumPy adds its halves (left + right).  The sum is then
# scratch[BLOCK].
SCRATCH = BLOCK + DEPTH


def _leaf_at(n, p):  # pragma: no cover  (run compiled)
    """(length, additions after it) of the leaf starting at p of the tree of
    n elements: the path down to it, a right half adding one addition (it
    completes its parent), a left half none.  log n steps per leaf of 64 to
    128 elements, and no state between leaves."""
    start, size, done = 0, n, 0
    while size > BLOCK:
        half = size // 2
        half -= half % 8
        if p < start + half:
            size, done = half, 0
        else:
            start, size, done = start + half, size - half, done + 1
    return size, done


def _leaf_push(scratch, nv, n, done):  # pragma: no cover  (run compiled)
    """Pushes the sum of the leaf scratch[:n] on the stack of subtree sums
    (nv of them, from scratch[BLOCK]), makes the additions that follow it;
    the stack's new height."""
    scratch[BLOCK + nv] = block_sum(scratch, 0, n)
    nv += 1
    for _ in range(done):
        scratch[BLOCK + nv - 2] = scratch[BLOCK + nv - 2] + scratch[BLOCK + nv - 1]
        nv -= 1
    return nv


try:
    from numba import njit
    # a kernel cached on disk holds this compiled code: a change here must
    # change `numba_source._FORMAT`
    block_sum = njit(cache=True, nogil=True)(_block_sum)
    pairwise_sum = njit(cache=True, nogil=True)(_pairwise_sum)
    leaf_at = njit(cache=True, nogil=True)(_leaf_at)
    leaf_push = njit(cache=True, nogil=True)(_leaf_push)
except ImportError:  # no Numba: no backend to call it
    block_sum = pairwise_sum = leaf_at = leaf_push = None
