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
STREAM_IMPORT = "from fastad.backends.numba_sums import walk_init, walk_next, leaf_push"
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
# it walks the same tree as they come.  `walk_next` yields the tree's leaves
# in order, each with the number of additions of finished subtrees that
# follow it; the loop writes a leaf's values into a buffer of BLOCK, and
# `leaf_push` sums the leaf as `block_sum` does and adds it on a stack of
# subtree sums as NumPy adds its halves (left + right).  A walk is an int64
# array of 1 + 2 * DEPTH: the stack's top, then (size, additions) per
# subtree still to visit (the leaves are contiguous: no starts needed).
WALK = 1 + 2 * DEPTH

def _walk_init(w, n):  # pragma: no cover  (run compiled)
    """Starts walk w over a run of n >= 1 elements."""
    w[0] = 0
    w[1], w[2] = n, 0


def _walk_next(w):  # pragma: no cover  (run compiled)
    """(length, additions after it) of the next leaf; length 0 when none."""
    top = w[0]
    if top < 0:
        return 0, 0
    size, done = w[1 + 2 * top], w[2 + 2 * top]
    top -= 1
    while size > BLOCK:
        half = size // 2
        half -= half % 8
        top += 1  # the right half, visited after the left
        w[1 + 2 * top], w[2 + 2 * top] = size - half, done + 1
        size, done = half, 0
    w[0] = top
    return size, done


def _leaf_push(vals, nv, buf, n, done):  # pragma: no cover  (run compiled)
    """Pushes the sum of leaf buf[:n] on the stack vals[:nv] of subtree sums,
    makes the additions that follow it; the stack's new height."""
    vals[nv] = block_sum(buf, 0, n)
    nv += 1
    for _ in range(done):
        vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
        nv -= 1
    return nv


try:
    from numba import njit
    # a kernel cached on disk holds this compiled code: a change here must
    # change `numba_source._FORMAT`
    block_sum = njit(cache=True, nogil=True)(_block_sum)
    pairwise_sum = njit(cache=True, nogil=True)(_pairwise_sum)
    walk_init = njit(cache=True, nogil=True)(_walk_init)
    walk_next = njit(cache=True, nogil=True)(_walk_next)
    leaf_push = njit(cache=True, nogil=True)(_leaf_push)
except ImportError:  # no Numba: no backend to call it
    block_sum = pairwise_sum = walk_init = walk_next = leaf_push = None
