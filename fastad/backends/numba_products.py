"""Small matrix products in generated Numba code as loops, not ``np.dot``.

A loop body (an RNN step, a small filter's update) holds several products of
a few hundred multiply-adds each, run once per step.  ``np.dot`` costs a call
into BLAS, whose set-up outweighs such a product, and the generated code
wrapped it in a copy for contiguity.  The generator writes each small 2-D
float product as a call of `small_matmul`, jitted here once (per layout and
dtype, in Numba's disk cache) and linked into the kernels that call it; a
transposed operand is read through a ``.T`` view, not copied.

The helper computes as the C VM's small path does (csrc/small_matmul.c):
each element of the result sums its products in the order q = 0..k-1 from
zero, a plain dot product's, but a strip of 8 elements of a row (or
column) of the result is summed side by side in local scalars, which LLVM
keeps in registers and may vectorize without reordering any one sum. Both
backends' small products are therefore the same bits, and within rounding
of BLAS's.  Larger products keep ``np.dot`` (BLAS).
"""
from __future__ import annotations

from ..core.tape import Instr

# Past these many multiply-adds BLAS wins (as csrc/kernels.h: SMALL_MATMUL for a
# product of matrices, SMALL_MATVEC when the result is one row or column).
SMALL_MATMUL = 1024
SMALL_MATVEC = 16384
STRIP = 8
# what a generated module imports to call the helper (`numba_source`)
IMPORT = "from fastad.backends.numba_products import small_matmul"


def is_small(m: int, k: int, n: int) -> bool:
    return 0 < m * k * n <= (SMALL_MATVEC if m == 1 or n == 1 else SMALL_MATMUL)


def _small_matmul(a, b, out, zero, rows):  # pragma: no cover  (run compiled)
    """out = a @ b for 2-D arrays of any layout; ``zero`` is 0 of out's dtype,
    ``rows`` whether strips run along out's rows (else its columns).  The two
    directions are written out: the columns as rows of out.T = b.T @ a.T, a
    call with three transposed views, cost about 30 ns more per product."""
    m, k = a.shape
    n = b.shape[1]
    if k == 1:  # an outer product; zero + x keeps the signed zeros of a sum
        for i in range(m):
            for j in range(n):
                out[i, j] = zero + a[i, 0] * b[0, j]
    elif rows:  # out[i, j:j + 8] side by side, then one element at a time
        for i in range(m):
            j = 0
            while j + STRIP <= n:
                s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
                for q in range(k):
                    x = a[i, q]
                    s0 += x * b[q, j]
                    s1 += x * b[q, j + 1]
                    s2 += x * b[q, j + 2]
                    s3 += x * b[q, j + 3]
                    s4 += x * b[q, j + 4]
                    s5 += x * b[q, j + 5]
                    s6 += x * b[q, j + 6]
                    s7 += x * b[q, j + 7]
                out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s0, s1, s2, s3
                out[i, j + 4], out[i, j + 5], out[i, j + 6], out[i, j + 7] = s4, s5, s6, s7
                j += STRIP
            for j in range(j, n):
                s0 = zero
                for q in range(k):
                    s0 += a[i, q] * b[q, j]
                out[i, j] = s0
    else:  # out[i:i + 8, j] side by side, then one element at a time
        for j in range(n):
            i = 0
            while i + STRIP <= m:
                s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
                for q in range(k):
                    x = b[q, j]
                    s0 += a[i, q] * x
                    s1 += a[i + 1, q] * x
                    s2 += a[i + 2, q] * x
                    s3 += a[i + 3, q] * x
                    s4 += a[i + 4, q] * x
                    s5 += a[i + 5, q] * x
                    s6 += a[i + 6, q] * x
                    s7 += a[i + 7, q] * x
                out[i, j], out[i + 1, j], out[i + 2, j], out[i + 3, j] = s0, s1, s2, s3
                out[i + 4, j], out[i + 5, j], out[i + 6, j], out[i + 7, j] = s4, s5, s6, s7
                i += STRIP
            for i in range(i, m):
                s0 = zero
                for q in range(k):
                    s0 += a[i, q] * b[q, j]
                out[i, j] = s0


try:
    from numba import njit
    # compiled once per layout and dtype, kept in Numba's disk cache and shared by
    # every kernel; a kernel cached on disk holds its compiled code, so a change
    # here must change `numba_source._FORMAT`
    small_matmul = njit(cache=True, nogil=True)(_small_matmul)
except ImportError:  # no Numba: no backend to call it
    small_matmul = None


class _SmallProducts:
    """The generator's part (mixed into `numba_codegen._Generator`) that
    writes a small 2-D float product as a call of the module's helper."""

    def small_product(self, ins: Instr) -> bool:
        """Write ``ins`` (a matmul) as `small_matmul` if `_small` says so;
        whether it did."""
        if not self._small(ins):
            return False
        self.module_lines[IMPORT] = None
        out = self.avals[ins.out]
        m, n = out.shape
        ta, tb = (self._transposed(s) for s in ins.ins)
        # strips along rows read b's rows (contiguous unless b is a .T view);
        # along columns, a's columns (contiguous when a is a .T view)
        rows = n != 1 and (m == 1 or (n >= m if min(m, n) < STRIP else
                                      not tb or not ta))
        x, y = (self.ref(s) for s in ins.ins)
        zero = self.literal(0, out.dtype)
        name = self.define_array(ins, f"np.empty(({m}, {n}), np.{out.dtype.name})")
        self.step.lines.append(f"small_matmul({x}, {y}, {name}, {zero}, {rows})")
        return True

    def _small(self, ins: Instr) -> bool:
        """A product of two matrices of one float dtype, small enough."""
        if ins.prim != "matmul":
            return False
        a, b = (self.avals[s] for s in ins.ins)
        out = self.avals[ins.out]
        return (a.ndim == b.ndim == 2 and out.dtype.kind == "f"
                and a.dtype == b.dtype == out.dtype
                and is_small(a.shape[0], a.shape[1], b.shape[1]))

    def _transposed(self, s: int) -> bool:
        """Is ``s`` a transpose made in this tape (a ``.T`` view, if small)?"""
        if not hasattr(self, "_transposes"):
            self._transposes = {ins.out for ins in self.tape.instrs if ins.prim == "transpose"}
        return s in self._transposes

    def only_small_products(self, s: int) -> bool:
        """Whether every reader of ``s`` is a product `small_product` writes,
        which reads any layout (so a transpose of ``s`` may be a view)."""
        instrs = self.tape.instrs
        return all(k < len(instrs) and self._small(instrs[k]) for k in self.readers[s])
