/*
 * vm.c -- the fastad virtual machine.
 *
 * One dispatch loop (fastad_vm_run) over the instruction stream described in
 * opcodes.h, in the style of Lua's lvm.c: vmdispatch/vmcase/vmbreak expand to
 * computed goto under GCC and Clang and to a switch elsewhere.  The scalar
 * float64 opcodes are written inline in the loop; array opcodes call the
 * kernels of kernels.c, each written once for float and double through
 * FLOAT_TYPED, FUSED the block executor of fused.c, and LOOP the steps of
 * loop.c (which runs its body through this loop again).
 *
 * Fused scalar opcodes (MULADD_S, ...) round after each operation, as the
 * separate NumPy operations they replace do: build with -ffp-contract=off so
 * the compiler does not turn them into fused multiply-adds.
 *
 * Safety: fastad_vm_validate (csrc/validate.c) checks every instruction before
 * a program may run, so the loop trusts its operands.  With FASTAD_DEBUG_VM the
 * loop re-checks every instruction before running it, and gather/scatter
 * re-check each index, aborting with a message on the first violation.
 */
#include "vm.h"
#include "kernels.h"
#include "fused.h"
#include "loop.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* The dispatch loop                                                        */
/* ------------------------------------------------------------------------ */
/* The debug build uses the switch, so every instruction passes vmcheck. */
#if defined(__GNUC__) && !defined(FASTAD_VM_SWITCH) && !defined(FASTAD_DEBUG_VM)
#define USE_COMPUTED_GOTO
#endif

#ifdef USE_COMPUTED_GOTO
#define vmdispatch(op) goto *dispatch_table[op];
#define vmcase(name) L_##name:
#define vmbreak vmdispatch(*pc)
#else
#define vmdispatch(op) switch (op)
#define vmcase(name) case OP_##name:
#define vmbreak break
#endif

#ifdef FASTAD_DEBUG_VM
#define vmcheck()                                                                \
  do {                                                                           \
    char err_[256];                                                              \
    int64_t next_;                                                               \
    if (!fastad_vm_check_instr(p, pc - p->code, &next_, err_, sizeof err_))      \
      vm_trap(err_, pc - p->code, 0);                                            \
  } while (0)
#else
#define vmcheck() ((void)0)
#endif

/* Steps past the current instruction, of opcode name: its opcode word and
 * the operand words FASTAD_OPCODES gives it. */
#define NEXT(name) (pc += 1 + FASTAD_NARGS_##name)

/* After an array instruction: every POLL_INSTRUCTIONS of them, a poll. */
#define POLL()                                                                   \
  do {                                                                           \
    if (--countdown < 0) {                                                       \
      countdown = POLL_INSTRUCTIONS;                                             \
      if (ps->poll != NULL && poll_due(ps)) return FASTAD_VM_INTERRUPTED;         \
    }                                                                            \
  } while (0)

/* Bound segments (vm.h): an operand at element o of size bytes that lies in
 * a bound segment is read or written in the caller's array instead.  The kernels take
 * element offsets from the arena base, so it becomes the offset of the same
 * element of that array from the arena base (any int64, the pointers being
 * aligned to 8 bytes).  The validator has checked that the operand's first
 * element lies in the segment its whole region does. */
typedef struct {
  int64_t arena_bytes;   /* operands below are in the arena */
  int64_t n;             /* segments mapped (0: none, or all in the arena) */
  const int64_t *seg;    /* p->bound */
  const void *const *to; /* p->num_bound pointers */
  const char *arena;
} bound_map;

static int64_t rebase(const bound_map *m, int64_t o, int64_t size) {
  const int64_t byte = o * size;
  for (int64_t k = 0; k < m->n; k++) {
    const int64_t lo = m->seg[3 * k], hi = lo + m->seg[3 * k + 1];
    if (byte >= lo && byte < hi) {
      if (m->to[k] == NULL) return o;
      return o + ((const char *)m->to[k] - (m->arena + lo)) / size;
    }
  }
  return o;
}

/* The arena operand at element o of size bytes, read where it lives. */
#define RD(o, size) \
  (bound.n && (int64_t)(o) * (int64_t)(size) >= bound.arena_bytes ? rebase(&bound, (o), (size)) : (int64_t)(o))
#define SZ(t) ((int64_t)dtype_size[t])
/* operand word i of an instruction whose first word is its dtype, rebased */
#define RD_T(i) RD(pc[i], SZ(pc[1]))
/* A linear-algebra instruction: its kernel's call, whose status (singular,
 * no convergence) stops the run. */
#define LINALG_CASE(name, call)                 \
  vmcase(name) {                                \
    const int status = (call);                  \
    if (status != FASTAD_VM_OK) return status;  \
    POLL();                                     \
    NEXT(name);                                 \
    vmbreak;                                    \
  }

/* A FUSED descriptor whose slots are rebased onto bound inputs: a copy in
 * buf when some slot lies in a bound segment, else the program's own. */
static const int64_t *fused_desc(const bound_map *m, const int64_t *desc, int64_t size,
                                 int64_t *buf) {
  const int64_t nslots = desc[1], nsteps = desc[2];
  const int64_t *slot = desc + FASTAD_DESC_HEAD_FUSED;
  int any = 0;
  for (int64_t s = 0; s < nslots; s++)
    any |= slot[FASTAD_FUSED_SLOT_WORDS * s + 1] * size >= m->arena_bytes;
  if (!any) return desc;
  const int64_t len = FASTAD_DESC_HEAD_FUSED + FASTAD_FUSED_SLOT_WORDS * nslots +
                      FASTAD_FUSED_STEP_WORDS * nsteps;
  memcpy(buf, desc, (size_t)len * sizeof *buf);
  for (int64_t s = 0; s < nslots; s++) {
    int64_t *off = buf + FASTAD_DESC_HEAD_FUSED + FASTAD_FUSED_SLOT_WORDS * s + 1;
    if (*off * size >= m->arena_bytes) *off = rebase(m, *off, size);
  }
  return buf;
}

int fastad_maps_bound(int op) {
  switch (op) {
    case OP_UNARY_V: case OP_BINARY_VV: case OP_BINARY_VS: case OP_BINARY_SV:
    case OP_BINARY_B: case OP_COMPARE_B: case OP_LOGIC_B: case OP_NOT_V: case OP_WHERE_B:
    case OP_CAST_V: case OP_ZERO_V: case OP_COPY_V: case OP_STRIDED_B: case OP_GATHER_V:
    case OP_SCATTER_SET_V: case OP_SCATTER_ADD_V: case OP_STRIDED_SET_B: case OP_STRIDED_ADD_B:
    case OP_GATHER_ROWS_V: case OP_SCATTER_ADD_ROWS_V: case OP_REDUCE_B: case OP_SCAN_B: case OP_MATMUL_B: case OP_SOLVE_B: case OP_SLOGDET_B:
    case OP_CHOLESKY_B: case OP_TRSOLVE_B: case OP_TRMM_B: case OP_EIGH_B: case OP_SVD_B: case OP_PINV_B: case OP_QR_B:
    case OP_FUSED:
      return 1;
    default:
      return 0;
  }
}

static int vm_run_bound_state(const fastad_program *p, const fastad_linalg *la,
                              void *arena_ptr, const void *const *inputs, poll_state *ps);

int fastad_vm_run(const fastad_program *p, const fastad_linalg *la, void *arena) {
  poll_state ps = {NULL, -1, 0, NULL};
  return vm_run_bound_state(p, la, arena, NULL, &ps);
}

int fastad_vm_run_polled(const fastad_program *p, const fastad_linalg *la, void *arena,
                         const fastad_poll *poll) {
  poll_state ps = {poll, -1, 0, NULL};
  return vm_run_bound_state(p, la, arena, NULL, &ps);
}

int fastad_vm_run_bound(const fastad_program *p, const fastad_linalg *la, void *arena,
                        const void *const *inputs, const fastad_poll *poll) {
  poll_state ps = {poll, -1, 0, NULL};
  return vm_run_bound_state(p, la, arena, inputs, &ps);
}

int vm_run_state(const fastad_program *p, const fastad_linalg *la, void *arena_ptr,
                 poll_state *ps) {
  return vm_run_bound_state(p, la, arena_ptr, NULL, ps);
}

static int vm_run_bound_state(const fastad_program *p, const fastad_linalg *la,
                              void *arena_ptr, const void *const *inputs, poll_state *ps) {
  int countdown = POLL_INSTRUCTIONS;
  char *const arena = (char *)arena_ptr;
  double *const D = (double *)arena;
  const uint8_t *const B = (const uint8_t *)arena;
  const int64_t *const meta = p->meta;
  const int32_t *pc = p->code;
  const bound_map bound = {p->arena_bytes, inputs != NULL ? p->num_bound : 0, p->bound, inputs,
                           arena};
#ifdef USE_COMPUTED_GOTO
#define LABEL_OF_OP(name, nargs) &&L_##name,
  static const void *const dispatch_table[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(LABEL_OF_OP)};
#undef LABEL_OF_OP
#endif
  for (;;) {
    vmcheck();
    vmdispatch(*pc) {
      vmcase(HALT) { return FASTAD_VM_OK; }
      vmcase(ADD_S) { D[pc[1]] = D[pc[2]] + D[pc[3]]; NEXT(ADD_S); vmbreak; }
      vmcase(SUB_S) { D[pc[1]] = D[pc[2]] - D[pc[3]]; NEXT(SUB_S); vmbreak; }
      vmcase(MUL_S) { D[pc[1]] = D[pc[2]] * D[pc[3]]; NEXT(MUL_S); vmbreak; }
      vmcase(DIV_S) { D[pc[1]] = D[pc[2]] / D[pc[3]]; NEXT(DIV_S); vmbreak; }
      vmcase(NEG_S) { D[pc[1]] = -D[pc[2]]; NEXT(NEG_S); vmbreak; }
      vmcase(NMUL_S) { D[pc[1]] = -(D[pc[2]] * D[pc[3]]); NEXT(NMUL_S); vmbreak; }
      vmcase(MULADD_S) { D[pc[1]] = D[pc[2]] + D[pc[3]] * D[pc[4]]; NEXT(MULADD_S); vmbreak; }
      vmcase(MULSUB_S) { D[pc[1]] = D[pc[2]] - D[pc[3]] * D[pc[4]]; NEXT(MULSUB_S); vmbreak; }
      vmcase(SQUARE_S) { const double x = D[pc[2]]; D[pc[1]] = x * x; NEXT(SQUARE_S); vmbreak; }
      vmcase(MOV_S) { D[pc[1]] = D[pc[2]]; NEXT(MOV_S); vmbreak; }
      vmcase(ACC_S) { D[pc[1]] += D[pc[2]]; NEXT(ACC_S); vmbreak; }
      vmcase(NACC_S) { D[pc[1]] -= D[pc[2]]; NEXT(NACC_S); vmbreak; }
      vmcase(MULACC_S) { D[pc[1]] += D[pc[2]] * D[pc[3]]; NEXT(MULACC_S); vmbreak; }
      vmcase(NMULACC_S) { D[pc[1]] -= D[pc[2]] * D[pc[3]]; NEXT(NMULACC_S); vmbreak; }
      vmcase(UNARY_S) {
        unary_v(pc[1], DT_F64, arena, pc[2], pc[3], 1);
        NEXT(UNARY_S);
        vmbreak;
      }
      vmcase(BINARY_S) {
        binary_v(pc[1], DT_F64, 0, arena, pc[2], pc[3], pc[4], 1);
        NEXT(BINARY_S);
        vmbreak;
      }
      vmcase(UNARY_V) {
        unary_v(pc[1], pc[2], arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), pc[5]);
        POLL();
        NEXT(UNARY_V);
        vmbreak;
      }
      vmcase(BINARY_VV) {
        binary_v(pc[1], pc[2], 0, arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), RD(pc[5], SZ(pc[2])), pc[6]);
        POLL();
        NEXT(BINARY_VV);
        vmbreak;
      }
      vmcase(BINARY_VS) {
        binary_v(pc[1], pc[2], 1, arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), RD(pc[5], SZ(pc[2])), pc[6]);
        POLL();
        NEXT(BINARY_VS);
        vmbreak;
      }
      vmcase(BINARY_SV) {
        binary_v(pc[1], pc[2], 2, arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), RD(pc[5], SZ(pc[2])), pc[6]);
        POLL();
        NEXT(BINARY_SV);
        vmbreak;
      }
      vmcase(BINARY_B) {
        binary_b(pc[1], pc[2], arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), RD(pc[5], SZ(pc[2])), meta + pc[6]);
        POLL();
        NEXT(BINARY_B);
        vmbreak;
      }
      vmcase(COMPARE_B) {
        compare_b(pc[1], pc[2], arena, RD(pc[3], 1), RD(pc[4], SZ(pc[2])), RD(pc[5], SZ(pc[2])), meta + pc[6]);
        POLL();
        NEXT(COMPARE_B);
        vmbreak;
      }
      vmcase(LOGIC_B) {
        logic_b(pc[1], arena, RD(pc[2], 1), RD(pc[3], 1), RD(pc[4], 1), meta + pc[5]);
        POLL();
        NEXT(LOGIC_B);
        vmbreak;
      }
      vmcase(NOT_V) {
        uint8_t *po = (uint8_t *)arena + RD(pc[1], 1);
        const uint8_t *pa = B + RD(pc[2], 1);
        for (int64_t i = 0; i < pc[3]; i++) po[i] = !pa[i];
        POLL();
        NEXT(NOT_V);
        vmbreak;
      }
      vmcase(WHERE_B) {
        where_b(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], 1), RD(pc[4], SZ(pc[1])), RD(pc[5], SZ(pc[1])),
                meta + pc[6]);
        POLL();
        NEXT(WHERE_B);
        vmbreak;
      }
      vmcase(CAST_V) {
        cast_v(pc[1], pc[2], arena, RD(pc[3], SZ(pc[1])), RD(pc[4], SZ(pc[2])), pc[5]);
        POLL();
        NEXT(CAST_V);
        vmbreak;
      }
      vmcase(ZERO_V) {
        memset(arena + RD(pc[2], SZ(pc[1])) * dtype_size[pc[1]], 0, (size_t)pc[3] * dtype_size[pc[1]]);
        POLL();
        NEXT(ZERO_V);
        vmbreak;
      }
      vmcase(COPY_V) {
        const int64_t size = dtype_size[pc[1]];
        memmove(arena + RD(pc[2], size) * size, arena + RD(pc[3], size) * size, (size_t)(pc[4] * size));
        POLL();
        NEXT(COPY_V);
        vmbreak;
      }
      vmcase(STRIDED_B) {
        strided_b(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), meta + pc[4]);
        POLL();
        NEXT(STRIDED_B);
        vmbreak;
      }
      vmcase(GATHER_V) {
        gather_v(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), pc[4], p->index + pc[5], pc[6]);
        POLL();
        NEXT(GATHER_V);
        vmbreak;
      }
      vmcase(SCATTER_SET_V) {
        scatter_set_v(pc[1], arena, RD(pc[2], SZ(pc[1])), pc[3], p->index + pc[4], RD(pc[5], SZ(pc[1])), pc[6]);
        POLL();
        NEXT(SCATTER_SET_V);
        vmbreak;
      }
      vmcase(SCATTER_ADD_V) {
        scatter_add_v(pc[1], arena, RD(pc[2], SZ(pc[1])), pc[3], p->index + pc[4], RD(pc[5], SZ(pc[1])), pc[6]);
        POLL();
        NEXT(SCATTER_ADD_V);
        vmbreak;
      }
      vmcase(GATHER_ROWS_V) {
        const int status = gather_rows_v(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])),
                                         pc[4], pc[5], D + RD(pc[6], 8), pc[7]);
        if (status != FASTAD_VM_OK) return status;
        POLL();
        NEXT(GATHER_ROWS_V);
        vmbreak;
      }
      vmcase(SCATTER_ADD_ROWS_V) {
        const int status = scatter_add_rows_v(pc[1], arena, RD(pc[2], SZ(pc[1])), pc[3], pc[4],
                                              D + RD(pc[5], 8), RD(pc[6], SZ(pc[1])), pc[7]);
        if (status != FASTAD_VM_OK) return status;
        POLL();
        NEXT(SCATTER_ADD_ROWS_V);
        vmbreak;
      }
      vmcase(STRIDED_SET_B) {
        strided_set_b(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), meta + pc[4]);
        POLL();
        NEXT(STRIDED_SET_B);
        vmbreak;
      }
      vmcase(STRIDED_ADD_B) {
        strided_add_b(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), meta + pc[4]);
        POLL();
        NEXT(STRIDED_ADD_B);
        vmbreak;
      }
      vmcase(REDUCE_B) {
        const int64_t *d = meta + pc[5];
        if (pc[1] == FN_SUM && pc[2] == DT_F64 && d[0] == 1 && d[2] == 0 && d[3] == 1) {
          D[RD(pc[3], 8)] = sum_contiguous_d(D + RD(pc[4], 8), d[1]);  /* a full sum to one value */
        } else {
          reduce_b(pc[1], pc[2], arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), d);
        }
        POLL();
        NEXT(REDUCE_B);
        vmbreak;
      }
      vmcase(SCAN_B) {
        scan_b(pc[1], arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), meta + pc[4]);
        POLL();
        NEXT(SCAN_B);
        vmbreak;
      }
      vmcase(MATMUL_B) {
        matmul_b(pc[1], la, arena, RD(pc[2], SZ(pc[1])), RD(pc[3], SZ(pc[1])), RD(pc[4], SZ(pc[1])), meta + pc[5]);
        POLL();
        NEXT(MATMUL_B);
        vmbreak;
      }
      /* linear algebra: o, a (and b) of dtype t, and the workspace (w of t or
       * doubles, p of ints), each rebased where it lies in a bound segment (the
       * lowering keeps workspace in the arena; a program may not) */
      LINALG_CASE(SOLVE_B, solve_b(pc[1], la, arena, RD_T(2), RD_T(3), RD_T(4), meta + pc[5],
                                   RD_T(6), RD(pc[7], 4)));
      vmcase(SLOGDET_B) {  /* f t o a d w p: its dtype is the second word */
        slogdet_b(pc[1], pc[2], la, arena, RD(pc[3], SZ(pc[2])), RD(pc[4], SZ(pc[2])), meta + pc[5],
                  RD(pc[6], SZ(pc[2])), RD(pc[7], 4));
        POLL();
        NEXT(SLOGDET_B);
        vmbreak;
      }
      LINALG_CASE(CHOLESKY_B, cholesky_b(pc[1], la, arena, RD_T(2), RD_T(3), meta + pc[4]));
      LINALG_CASE(TRSOLVE_B, trsolve_b(pc[1], la, arena, RD_T(2), RD_T(3), RD_T(4), meta + pc[5]));
      LINALG_CASE(EIGH_B, eigh_b(pc[1], la, arena, RD_T(2), RD_T(3), meta + pc[4], RD(pc[5], 8),
                                 RD(pc[6], 4)));
      LINALG_CASE(TRMM_B, trmm_b(pc[1], la, arena, RD_T(2), RD_T(3), RD_T(4), meta + pc[5]));
      LINALG_CASE(SVD_B, svd_b(pc[1], la, arena, RD_T(2), RD_T(3), meta + pc[4], RD(pc[5], 8),
                               RD(pc[6], 4)));
      LINALG_CASE(PINV_B, pinv_b(pc[1], la, arena, RD_T(2), RD_T(3), meta + pc[4], RD(pc[5], 8),
                                 RD(pc[6], 4)));
      LINALG_CASE(QR_B, qr_b(pc[1], la, arena, RD_T(2), RD_T(3), meta + pc[4], RD(pc[5], 8)));
      vmcase(FUSED) {
        /* a FUSED instruction polls only if it has enough blocks to reach a poll */
        int64_t desc_buf[FASTAD_DESC_HEAD_FUSED + FASTAD_FUSED_SLOT_WORDS * FASTAD_FUSED_MAX_SLOTS +
                         FASTAD_FUSED_STEP_WORDS * FASTAD_FUSED_MAX_STEPS];
        const int64_t *desc =
            bound.n ? fused_desc(&bound, meta + pc[2], SZ(pc[1]), desc_buf) : meta + pc[2];
        fused(pc[1], arena, desc, pc[3],
              ps->poll != NULL && pc[3] >= POLL_BLOCKS * FUSED_BLOCK ? ps : NULL);
        if (ps->stop) return FASTAD_VM_INTERRUPTED;
        POLL();
        NEXT(FUSED);
        vmbreak;
      }
      vmcase(LOOP) {
        /* the body's n words follow the instruction (loop.c runs them) */
        const int status = loop_run(p, la, arena, pc, ps);
        if (status != FASTAD_VM_OK) return status;
        const int64_t body_words = pc[2];
        NEXT(LOOP);
        pc += body_words;
        vmbreak;
      }
      vmcase(GUARD) {
        if ((B[pc[1]] != 0) != pc[2]) return FASTAD_VM_GUARD_FAILED;
        NEXT(GUARD);
        vmbreak;
      }
    }
  }
}
