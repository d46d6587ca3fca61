/*
 * opcodes.h -- the instruction set of the fastad virtual machine.
 *
 * This header is the single source of truth for opcodes and function codes,
 * and for the constants the VM and the lowering share (limits, descriptor
 * lengths, alignment, dtype sizes, status codes): the C VM expands the
 * X-macro lists below, and fastad/backends/lower.py parses them (the lines of
 * the form  X(NAME, nargs)  and  F(NAME) , and every  #define FASTAD_NAME
 * integer).  Tests check that the compiled extension and the Python side
 * agree (tests/test_lower.py, tests/test_vm_constants.py).
 *
 * Program format
 * ==============
 * A program is a flat array of int32 words.  An instruction is its opcode
 * followed by exactly OPNARGS(opcode) operand words; the last instruction is
 * HALT.  There are no jumps: a program runs front to back once.  A LOOP
 * instruction is followed by its body, n more words (a program ending with
 * its own HALT), which it runs once per step; execution then goes on past
 * them.
 *
 *     | op | w1 | w2 | ... | wN |  | op | ...  | HALT |
 *
 * Operand kinds, named by letter in the comments below:
 *   o a b c v   arena operands: element offsets from the arena base, counted in
 *               elements of the instruction's dtype (a float64 operand at 3
 *               lives at byte 24; a float32 operand at 3 at byte 12).
 *   t s         dtype codes (FASTAD_DTYPES)
 *   i           an arena operand of float64 elements whatever t is (indices
 *               held in float64: exact integers below 2^53)
 *   f           function code from the table the opcode names
 *   n m r       element counts
 *   d           descriptor: an offset into the program's int64 metadata pool
 *   x           an offset into the program's int64 index pool
 *   w p         workspace: w in elements of t, p in int32 elements (LAPACK pivots)
 *   e           an immediate 0 or 1
 *
 * D[], F[], B[] below are the arena seen as double, float and bool (uint8).
 * Opcode suffixes name the operand kinds, CppAD style: _S scalar float64
 * (one flop, no loop set-up), _V contiguous vector, _VS/_SV vector with one
 * operand a broadcast scalar, _B NumPy broadcasting or any strided access
 * described by a descriptor.
 *
 * Dtypes: every instruction is homogeneous.  Its operands all have the
 * dtype t (bool results and conditions excepted, as stated per opcode).  The
 * lowering inserts CAST_V where a tape mixes float32 and float64, and stores
 * weak Python scalar constants in the dtype of the instruction they feed, as
 * NumPy 2 (NEP 50) does.  The scalar fast path (_S) is float64 only;
 * float32 scalars use the vector forms with n = 1.
 */
#ifndef FASTAD_OPCODES_H
#define FASTAD_OPCODES_H

/* X(NAME, nargs)                           semantics */
#define FASTAD_OPCODES(X) \
  X(HALT, 0)          /* -              end of program                               */ \
  X(ADD_S, 3)         /* o a b          D[o] = D[a] + D[b]                           */ \
  X(SUB_S, 3)         /* o a b          D[o] = D[a] - D[b]                           */ \
  X(MUL_S, 3)         /* o a b          D[o] = D[a] * D[b]                           */ \
  X(DIV_S, 3)         /* o a b          D[o] = D[a] / D[b]                           */ \
  X(NEG_S, 2)         /* o a            D[o] = -D[a]                                 */ \
  X(NMUL_S, 3)        /* o a b          D[o] = -(D[a] * D[b])                        */ \
  X(MULADD_S, 4)      /* o a b c        D[o] = D[a] + D[b] * D[c]   (two roundings)  */ \
  X(MULSUB_S, 4)      /* o a b c        D[o] = D[a] - D[b] * D[c]   (two roundings)  */ \
  X(SQUARE_S, 2)      /* o a            D[o] = D[a] * D[a]                           */ \
  X(MOV_S, 2)         /* o a            D[o] = D[a]                                  */ \
  X(ACC_S, 2)         /* o a            D[o] += D[a]   (in-place scatter_add)        */ \
  X(NACC_S, 2)        /* o a            D[o] -= D[a]   (scatter_add of a negation)   */ \
  X(MULACC_S, 3)      /* o a b          D[o] += D[a] * D[b]                          */ \
  X(NMULACC_S, 3)     /* o a b          D[o] -= D[a] * D[b]                          */ \
  X(UNARY_S, 3)       /* f o a          D[o] = f(D[a]),  f in FASTAD_UNARY_FNS       */ \
  X(BINARY_S, 4)      /* f o a b        D[o] = f(D[a], D[b]),  f in BINARY_FNS       */ \
  X(UNARY_V, 5)       /* f t o a n      o[i] = f(a[i])                               */ \
  X(BINARY_VV, 6)     /* f t o a b n    o[i] = f(a[i], b[i])                         */ \
  X(BINARY_VS, 6)     /* f t o a b n    o[i] = f(a[i], b[0])                         */ \
  X(BINARY_SV, 6)     /* f t o a b n    o[i] = f(a[0], b[i])                         */ \
  X(BINARY_B, 6)      /* f t o a b d    o = f(a, b) broadcast; d: BROADCAST2         */ \
  X(COMPARE_B, 6)     /* f t o a b d    bool o = f(a, b); f in COMPARE_FNS; BROADCAST2 */ \
  X(LOGIC_B, 5)       /* f o a b d      bool o = f(a, b) on bools; f in LOGIC_FNS    */ \
  X(NOT_V, 3)         /* o a n          bool o[i] = !a[i]                            */ \
  X(WHERE_B, 6)       /* t o c a b d    o = c ? a : b, c bool; d: BROADCAST3         */ \
  X(CAST_V, 5)        /* t s o a n      o[i] = (t) a[i], a of dtype s                */ \
  X(ZERO_V, 3)        /* t o n          o[i] = 0                                     */ \
  X(COPY_V, 4)        /* t o a n        o[i] = a[i]                                  */ \
  X(STRIDED_B, 4)     /* t o a d        o[j] = a[start + j . stride]; d: STRIDED     */ \
  X(GATHER_V, 6)      /* t o a m x n    o[i] = a[I[x+i]], a has m elements           */ \
  X(SCATTER_SET_V, 6) /* t o m x v n    o[I[x+i]] = v[i], o has m elements           */ \
  X(SCATTER_ADD_V, 6) /* t o m x v n    o[I[x+i]] += v[i] in order (np.add.at)       */ \
  X(GATHER_ROWS_V, 7) /* t o a m r i n  row j of o = row k of a (m rows of r), j < n,  */ \
                      /*                k = D[i+j] (an index held in float64) wrapped */ \
                      /*                as NumPy does; FASTAD_VM_INDEX_ERROR unless   */ \
                      /*                it is an integer in -m..m-1                   */ \
  X(SCATTER_ADD_ROWS_V, 7) /* t o m r i v n  row k of o += row j of v in order, k as */ \
                      /*                in GATHER_ROWS_V (np.add.at); o has m rows    */ \
  X(STRIDED_SET_B, 4) /* t o v d       o[start + j . stride] = v[j] in order; STRIDED */ \
  X(STRIDED_ADD_B, 4) /* t o v d       o[start + j . stride] += v[j] in order; STRIDED */ \
  X(REDUCE_B, 5)      /* f t o a d      o = f-reduction of a; f in REDUCE_FNS; REDUCE */ \
  X(SCAN_B, 4)        /* t o a d        a scan along one axis, its kind in d: SCAN    */ \
  X(MATMUL_B, 5)      /* t o a b d      o = a @ b, batched, BLAS gemm; d: MATMUL     */ \
  X(SOLVE_B, 7)       /* t o a b d w p  o = solve(a, b), LAPACK gesv; d: SOLVE       */ \
  X(SLOGDET_B, 7)     /* f t o a d w p  f=0 log|det a|, f=1 sign det a; LAPACK getrf */ \
  X(CHOLESKY_B, 4)    /* t o a d        o = cholesky(a) (lower), LAPACK potrf; d: CHOLESKY */ \
  X(TRSOLVE_B, 5)     /* t o a b d      o = op(T)^-1 b, T a triangle of a, BLAS trsm; d: TRSOLVE */ \
  X(EIGH_B, 6)        /* t o a d w p    o = [w; V] of symmetric a, LAPACK syevd; d: EIGH      */ \
  X(TRMM_B, 5)        /* t o a b d      o = op(T) b, T a triangle of a, BLAS trmm; d: TRSOLVE */ \
  X(SVD_B, 6)         /* t o a d w p    o = [s; U; V] of a, reduced, LAPACK gesdd; d: SVD   */ \
  X(PINV_B, 6)        /* t o a d w p    o = pinv(a) through gesdd, as NumPy's; d: SVD           */ \
  X(QR_B, 5)          /* t o a d w      o = [Q; R] of a, reduced, LAPACK geqrf, orgqr; d: QR */ \
  X(GUARD, 2)         /* a e            stop with FASTAD_VM_GUARD_FAILED unless (B[a] != 0) == e */ \
  X(FUSED, 3)         /* t d n          an elementwise chain over n elements, block by block; d: FUSED */ \
  X(LOOP, 2)          /* d n            run the body (the n code words after this one) per d: LOOP */

/* Elementwise functions of one argument: the primitive of the same name in
 * lower case.  NumPy semantics (sign(nan) = nan, round = rint); from ERF on,
 * scipy.special's (SciPy's edge values; POLYGAMMA is psi, polygamma of
 * order 0 only: the lowering leaves other orders to the host). */
#define FASTAD_UNARY_FNS(F) \
  F(NEG) F(ABS) F(SIGN) F(EXP) F(EXP2) F(LOG) F(LOG2) F(LOG10) F(LOG1P) F(EXPM1) \
  F(SQRT) F(CBRT) F(SQUARE) F(RECIPROCAL) F(SIN) F(COS) F(TAN) F(ARCSIN) F(ARCCOS) \
  F(ARCTAN) F(SINH) F(COSH) F(TANH) F(ARCSINH) F(ARCCOSH) F(ARCTANH) F(FLOOR) \
  F(CEIL) F(ROUND) F(DEG2RAD) F(ERF) F(ERFC) F(EXPIT) F(LOG_EXPIT) F(LOGIT) \
  F(GAMMALN) F(POLYGAMMA) F(NDTR)

/* Elementwise functions of two arguments (maximum/minimum propagate NaN;
 * fmod is C's, exact, the remainder and floor division are built on it;
 * xlogy and xlog1py are scipy.special's, 0 where x is 0 and y is not NaN). */
#define FASTAD_BINARY_FNS(F) \
  F(ADD) F(SUB) F(MUL) F(DIV) F(POW) F(MAXIMUM) F(MINIMUM) F(ARCTAN2) F(HYPOT) \
  F(LOGADDEXP) F(COPYSIGN) F(FMOD) F(XLOGY) F(XLOG1PY)

#define FASTAD_COMPARE_FNS(F) F(LT) F(LE) F(GT) F(GE) F(EQ) F(NE)

#define FASTAD_LOGIC_FNS(F) F(LOGICAL_AND) F(LOGICAL_OR)

/* Reductions; max/min propagate NaN. */
#define FASTAD_REDUCE_FNS(F) F(SUM) F(PROD) F(MAX) F(MIN)

/* The micro-program of a FUSED instruction (descriptor below).  Its operands
 * are numbered: registers 0 .. nregs-1 (block-sized scratch arrays that never
 * leave the cache), then slots nregs .. nregs+nslots-1 (arena operands).
 * Slot kinds:
 *   IN      a[off + i], read
 *   SCALAR  a[off], the same value for every i (a broadcast scalar)
 *   OUT     a[off + i], written by a step; later steps may read it back
 *   ACC     a[off] = sum over i of a SUM step's operand (one value)
 * Step kinds (five words: kind f dst a b):
 *   UNARY   dst[i] = f(a[i]), f in UNARY_FNS; dst a register or an OUT slot
 *   BINARY  dst[i] = f(a[i], b[i]), f in BINARY_FNS; a or b may be SCALAR
 *   SUM     ACC dst += a[i] (f and b are 0)
 *   SHIFT   OUT dst[i + f] += a[i], 0 < |f| <= FASTAD_FUSED_MAX_SHIFT (b is 0):
 *           the adjoint of a shifted slice, x[1:] next to x[:-1].  It may
 *           reach |f| elements past either end of dst's region; dst must
 *           have been written by an earlier step, and no later step touches it.
 *   COUNT   ACC dst += 1 for each i where f(a[i], b[i]), f in COMPARE_FNS:
 *           sum(astype(a < b, float)), the predicate of a rerolled guard
 *   NCOUNT  the same, counting where f(a[i], b[i]) is false (NaN included)
 * Each SUM and COUNT accumulates per block and per thread chunk in a fixed order, so
 * results depend on n and the VM's thread count, never on timing.  A SHIFT
 * adds each element exactly once, after every earlier step wrote it. */
#define FASTAD_FUSED_SLOTS(F) F(IN) F(SCALAR) F(OUT) F(ACC)
#define FASTAD_FUSED_STEPS(F) F(UNARY) F(BINARY) F(SUM) F(SHIFT) F(COUNT) F(NCOUNT)
#define FASTAD_FUSED_MAX_REGS 16
#define FASTAD_FUSED_MAX_SLOTS 48 /* registers + slots <= 64 */
#define FASTAD_FUSED_MAX_STEPS 256
#define FASTAD_FUSED_MAX_SUMS 16 /* SUM and COUNT steps */
#define FASTAD_FUSED_MAX_SHIFT 16
#define FASTAD_FUSED_MAX_SHIFTS 4
/* Words per slot (kind, off) and per step (kind, f, dst, a, b) of a FUSED
 * descriptor, after its three header words (nregs, nslots, nsteps). */
#define FASTAD_FUSED_SLOT_WORDS 2
#define FASTAD_FUSED_STEP_WORDS 5
/* The VM runs a FUSED instruction in blocks of FASTAD_FUSED_BLOCK elements
 * (measured against 128, 256 and 1024: docs/design.md); its registers are
 * FASTAD_FUSED_BLOCK + FASTAD_FUSED_REG_PAD elements apart, so that no two
 * are a multiple of 4 KiB apart (store-forwarding stalls). */
#define FASTAD_FUSED_BLOCK 512
#define FASTAD_FUSED_REG_PAD 8

/* Dtype codes: X(NAME, itemsize). */
#define FASTAD_DTYPES(X) X(F64, 8) X(F32, 4) X(BOOL, 1)

/*
 * Descriptors (int64 words in the metadata pool at offset d).  Shapes and
 * strides are in elements; a stride of 0 broadcasts.  The output of every
 * _B instruction is C-contiguous with the descriptor's shape.
 *   BROADCAST2  ndim, shape[ndim], stride_a[ndim], stride_b[ndim]
 *   BROADCAST3  ndim, shape[ndim], stride_c[ndim], stride_a[ndim], stride_b[ndim]
 *   STRIDED     ndim, start, shape[ndim], stride_a[ndim]
 *   REDUCE      ndim, shape[ndim] of the (contiguous) input, then the output
 *               strides[ndim] (0 along reduced axes), then the output size
 *   SCAN        outer, length, inner, kind: a is contiguous (outer, length, inner);
 *               kind (FASTAD_SCAN_*): running sum, forward or reversed; running
 *               product, forward or reversed; or each element's product of the
 *               others (prod's partials: a quotient where no factor is zero)
 *   MATMUL      batch, m, k, n, trans_a, trans_b, add: a is (m, k) or, if trans_a,
 *               stored as (k, m); likewise b; o is (m, n); each batched; with
 *               add 1, o += a @ b (o holds the addend: a weight gradient's
 *               rank-1 update in one pass)
 *   SOLVE       batch, n, k: a (n, n), b and o (n, k); w holds n*n + n*k, p n
 *   SLOGDET     batch, n: a (n, n), o one value per matrix; w holds n*n, p n
 *   CHOLESKY    batch, n: a and o (n, n); o is factored in place (no workspace)
 *   TRSOLVE     batch, n, k, lower, trans: a (n, n), b and o (n, k); op(T) is T
 *               (trans 0) or T^T (trans 1); o is solved in place (no workspace)
 *   EIGH        batch, n, lower: a (n, n), o (n + 1, n): the eigenvalues as row 0,
 *               the eigenvectors as columns below; w holds n*n + n + 1 + 6n + 2n*n,
 *               p 3 + 5n (syevd's work and iwork)
 *   SVD         batch, m, n, lwork: a (m, n), o (1 + m + n, k), k = min(m, n): the
 *               singular values as row 0, U (m, k), V (n, k); float64 workspace
 *               (either dtype) w of m*n + k + m*k + k*n + lwork doubles, p 8k ints;
 *               lwork at least gesdd's minimum for jobz 'S' (planned: its optimum).
 *               PINV_B reads the same descriptor: o (n, m), and w holds k + k*m + n*k
 *               doubles more (room for 1/s, diag(1/s) U^T and V in t)
 *   QR          batch, m, n, lwork: m >= n, a (m, n), o (m + n, n): Q (m, n) then
 *               R (n, n); float64 workspace w of m*n + n + lwork doubles,
 *               lwork >= n (planned: the larger of geqrf's and orgqr's optima)
 *   FUSED       nregs, nslots, nsteps, then (kind, off) per slot, then
 *               (kind, f, dst, a, b) per step; offsets in elements of t.
 *               OUT regions never partly overlap another IN or OUT region
 *               (same start or disjoint), so blocks and threads are independent.
 *   LOOP        trips, ncarry, nxs, nys, scratch, count, then FASTAD_LOOP_ENTRY_WORDS per
 *               carry (in, out, bytes, 0), per stacked input (slot, stacked, row
 *               bytes, row stride) and per stacked output (slot, stacked, row
 *               bytes, row stride), every offset in BYTES from the arena base:
 *               row t is at stacked + t * stride (a negative stride reads a
 *               reversed array in place).  The body is a program of
 *               its own (its n words end with its HALT) over the same arena,
 *               with no bound segments.  Each of the trips steps copies row t of
 *               every stacked input into its slot, runs the body, copies every
 *               output slot into row t of its stacked array, then the carries'
 *               out regions into their in regions: in order when no out overlaps
 *               an earlier carry's in, else through scratch (their total bytes),
 *               as an out may be another carry's in.  Bodies nest up to
 *               FASTAD_LOOP_MAX_DEPTH deep.  trips = -1: a while loop whose
 *               count is read at run time (no stacked values): it steps
 *               while the first byte of the last carry's in region (a bool)
 *               is nonzero, then writes the number of steps as a float64 at
 *               byte count (count is -1 for a loop of fixed trips).
 */
#define FASTAD_MAX_NDIM 32

/* The length of each descriptor above: D(NAME, head, per_dim), head words
 * plus per_dim words per axis (ndim, its first word), or a fixed length of
 * head words when per_dim is 0.  FUSED: 3 header words, then
 * FASTAD_FUSED_SLOT_WORDS per slot and FASTAD_FUSED_STEP_WORDS per step;
 * LOOP: 6 header words, then FASTAD_LOOP_ENTRY_WORDS per entry. */
#define FASTAD_DESCRIPTORS(D) \
  D(BROADCAST2, 1, 3) D(BROADCAST3, 1, 4) D(STRIDED, 2, 2) D(REDUCE, 2, 2) \
  D(SCAN, 4, 0) D(MATMUL, 7, 0) D(SOLVE, 3, 0) D(SLOGDET, 2, 0) D(CHOLESKY, 2, 0) \
  D(TRSOLVE, 5, 0) D(EIGH, 3, 0) D(SVD, 4, 0) D(QR, 4, 0) \
  D(FUSED, 3, 0) D(LOOP, 6, 0)

/* Words per carry, stacked input and stacked output of a LOOP descriptor,
 * after its six header words; how deep LOOP bodies may nest. */
#define FASTAD_LOOP_ENTRY_WORDS 4
#define FASTAD_LOOP_MAX_DEPTH 16

/* The arena's base, and every buffer of FASTAD_ARENA_ALIGN bytes or more in
 * it (the lowering's planner), are aligned to FASTAD_ARENA_ALIGN bytes; the
 * arena's size is a multiple of it. */
#define FASTAD_ARENA_ALIGN 64

/* Status codes returned by the VM. */
#define FASTAD_VM_OK 0
#define FASTAD_VM_GUARD_FAILED 1
#define FASTAD_VM_SINGULAR 2 /* gesv/getrf: a singular matrix; trsm: a zero on the
                                triangle's diagonal; syevd, gesdd: no convergence */
#define FASTAD_VM_INTERRUPTED 3 /* the caller's poll (fastad_vm_run_polled) asked to stop */
#define FASTAD_VM_INDEX_ERROR 4 /* GATHER_ROWS_V, SCATTER_ADD_ROWS_V: an index out of range
                                   or not an integer (NumPy raises IndexError) */
#define FASTAD_VM_NOT_POSITIVE_DEFINITE 5 /* potrf: NumPy's cholesky raises LinAlgError
                                             "Matrix is not positive definite" */

/* SCAN's kinds (its descriptor's last field) */
#define FASTAD_SCAN_SUM 0
#define FASTAD_SCAN_SUM_REVERSED 1
#define FASTAD_SCAN_PROD 2
#define FASTAD_SCAN_PROD_REVERSED 3
#define FASTAD_SCAN_PROD_OTHERS 4
#define FASTAD_SCAN_KINDS 5

#endif
