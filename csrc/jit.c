/*
 * jit.c -- native code for the steps of scalar loops (fastad_jit_build).
 *
 * A recurrence over a few scalars (an RK4 or leapfrog step, its VJP) is a
 * LOOP whose body is a hundred scalar instructions of a few nanoseconds
 * each: the interpreter's dispatch (an indirect jump per instruction, which
 * also serialises the processor's view of the step) costs more than the
 * arithmetic.  Such a step is compiled here, once per program, into x86-64
 * code that does exactly what loop.c and the dispatch loop do, in the same
 * order: copy row t of each stacked input into its slot, run
 * the body's instructions one after another (each loads its operands from
 * the arena, computes with the same SSE2 operation the C code compiles to,
 * and stores its result: every intermediate value lands where the
 * interpreter puts it), copy each output slot into its row, move the
 * carries (straight or through the scratch region, as loop.c decides).  The
 * results are the interpreter's bit for bit (tests/test_loops_jit.py); the
 * loop's control, the while loop's condition and the polls stay in loop.c.
 *
 * A body qualifies when its instructions are float64 scalar opcodes
 * (ADD_S ... NMULACC_S; UNARY_S and BINARY_S call the kernels' own function
 * through a helper) and COPY_V or ZERO_V of a few float64 words (a small
 * carried array updated point by point), compiled; and at most two array
 * instructions per compiled one that cannot fail (a while loop's comparison
 * and cast, a select, a small array's arithmetic), each run by the dispatch
 * loop through a call (a program of that one instruction).  Every row and
 * carry is at most 256 bytes (moved word by word) and every offset fits a
 * 32-bit displacement.  Any other LOOP (a vector body, a LOOP or GUARD
 * inside, linear algebra, products) stays interpreted.  The program has
 * been validated before, so the code trusts its offsets as the dispatch loop
 * does.  Code lives in one mapping per program, written, then made read and
 * execute only.  Only x86-64 Linux (the System V calling convention); any
 * other platform or a failed mapping gets no native code.
 */
#include "jit.h"
#include "loop.h"

#include <stdlib.h>
#include <string.h>

/* 0: no native code; 1: native code, in AVX's three-operand encoding where
 * the processor and the system support it; 2: native code in SSE2's
 * two-operand encoding only (to compare the two). */
static int jit_on = 1;

int fastad_vm_use_jit(int on) {
  const int was = jit_on;
  jit_on = on == 2 ? 2 : on != 0;
  return was;
}

/* The debug (and sanitized) build compiles too, so the sanitizers check this
 * file and the tests compare native steps with checked interpreted ones. */
#if defined(__x86_64__) && defined(__linux__)
#define HAVE_JIT 1
#include <sys/mman.h>
#endif

/* An instruction of a body that the native step hands to the dispatch loop:
 * a program of that one instruction and a HALT. */
typedef struct one_instr {
  struct one_instr *next;
  fastad_program prog;
  int32_t words[];
} one_instr;

struct fastad_jit {
  void *mem;
  size_t bytes;
  one_instr *ones; /* a list, freed with the table */
  int64_t n;
  jit_loop loop[]; /* by increasing pc */
};

const jit_loop *jit_find(const fastad_program *p, const int32_t *pc) {
  const struct fastad_jit *j = p->jit;
  int64_t lo = 0, hi = j->n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (j->loop[mid].pc == pc) return &j->loop[mid];
    if (j->loop[mid].pc < pc) lo = mid + 1; else hi = mid;
  }
  return NULL;
}

#ifndef HAVE_JIT

struct fastad_jit *fastad_jit_build(const fastad_program *p) {
  (void)p;
  return NULL;
}

void fastad_jit_free(struct fastad_jit *jit) { (void)jit; }

#else

/* ------------------------------------------------------------------------ */
/* Emitting x86-64                                                          */
/* ------------------------------------------------------------------------ */
/* Registers: rbx holds the arena, r12 the step t, r13 the linear algebra
 * (callee-saved, so the helpers' calls keep them); rax holds a row's offset,
 * rdx moves words and bytes; xmm0-xmm14 hold values,
 * xmm15 the sign bit for negations.
 *
 * Every result is kept in a register, and a later instruction reading its
 * slot takes the register instead of loading the word (a load waiting on a
 * store costs several cycles, and the body is a chain of them).  The
 * registers are a write-back cache of the arena: a result is stored to its
 * slot when its register is taken for another value, before anything that
 * reads or writes the arena other than through the cache (a helper's call,
 * COPY_V, ZERO_V), and at the end of the body, before the rows and carries
 * are moved; a result whose slot is written again first is never stored.
 * So at those points, and after every step, the arena holds what the
 * interpreter leaves there, while the stores a step's hundred intermediate
 * values would cost (one per result, the processor's store port the
 * bottleneck of a long scalar body) are mostly saved. */
enum { NREGS = 15, SIGN = 15 };

typedef struct {
  uint8_t *buf;
  size_t len, cap;
  int failed;          /* out of memory */
  int vex;             /* three-operand AVX encodings (vex_op) */
  int64_t slot[NREGS]; /* the byte offset whose value the register holds, or -1 */
  int64_t used[NREGS]; /* when it was last used, for choosing one to reuse */
  int64_t clock;
  int sign_ready;      /* xmm15 holds the sign bit */
  unsigned pinned;     /* registers holding carries across steps: never reused */
  unsigned dirty;      /* registers whose value is not yet stored to their slot */
  int add_to_product[2]; /* MULADD_S, MULACC_S: a added to b * c (product_then) */
  const int32_t *at;   /* the body's instruction being emitted, or NULL */
} emitter;

static void put(emitter *e, const uint8_t *bytes, size_t n) {
  if (e->failed) return;
  if (e->len + n > e->cap) {
    const size_t cap = 2 * e->cap + n + 256;
    uint8_t *buf = realloc(e->buf, cap);
    if (buf == NULL) {
      e->failed = 1;
      return;
    }
    e->buf = buf;
    e->cap = cap;
  }
  memcpy(e->buf + e->len, bytes, n);
  e->len += n;
}

#define PUT(e, ...)                                   \
  do {                                                \
    const uint8_t bytes_[] = {__VA_ARGS__};           \
    put((e), bytes_, sizeof bytes_);                  \
  } while (0)

static void put32(emitter *e, int32_t v) {
  const uint32_t u = (uint32_t)v;
  PUT(e, (uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24));
}

static void put64(emitter *e, uint64_t v) {
  for (int i = 0; i < 8; i++) PUT(e, (uint8_t)(v >> (8 * i)));
}

enum { LOAD = 0x10, STORE = 0x11, ADD = 0x58, MUL = 0x59, SUB = 0x5C, DIV = 0x5E };
enum { MOVAPD = 0x28, XORPD = 0x57 };

/* prefix [REX] 0F op modrm: op xmm_reg, [rbx + disp] (mem) or xmm_rm; prefix
 * 0xF2 for the scalar double operations, 0x66 for movapd and xorpd. */
static void sse(emitter *e, uint8_t prefix, uint8_t op, int reg, int rm, int32_t disp, int mem) {
  const uint8_t rex = (uint8_t)(0x40 | (reg >> 3) << 2 | (mem ? 0 : rm >> 3));
  PUT(e, prefix);
  if (rex != 0x40) PUT(e, rex);
  PUT(e, 0x0F, op);
  if (mem) {
    PUT(e, (uint8_t)(0x80 | (reg & 7) << 3 | 3));
    put32(e, disp);
  } else {
    PUT(e, (uint8_t)(0xC0 | (reg & 7) << 3 | (rm & 7)));
  }
}

/* The same operations in AVX's VEX encoding, of three operands: reg =
 * src op (xmm_rm or [rbx + disp]), src left as it is.  The low word is
 * computed as SSE2's reg = reg op rm computes it when reg holds src (the
 * same rounding, and of two NaNs src's, as SSE2's destination's), so a copy
 * of src into a register of its own (movapd) before each two-operand
 * operation, which the body's values kept in registers otherwise need, is
 * saved.  prefix as for sse(): 0xF2 or 0x66. */
static void vex_op(emitter *e, uint8_t prefix, uint8_t op, int reg, int src, int rm,
                   int32_t disp, int mem) {
  const uint8_t pp = prefix == 0xF2 ? 3 : 1;
  const uint8_t r = (uint8_t)(reg >> 3 ^ 1), b = (uint8_t)(mem ? 1 : rm >> 3 ^ 1);
  const uint8_t vvvv = (uint8_t)(~src & 15);
  if (b) {
    PUT(e, 0xC5, (uint8_t)(r << 7 | vvvv << 3 | pp));
  } else {
    PUT(e, 0xC4, (uint8_t)(r << 7 | 1 << 6 | b << 5 | 1), (uint8_t)(vvvv << 3 | pp));
  }
  PUT(e, op);
  if (mem) {
    PUT(e, (uint8_t)(0x80 | (reg & 7) << 3 | 3));
    put32(e, disp);
  } else {
    PUT(e, (uint8_t)(0xC0 | (reg & 7) << 3 | (rm & 7)));
  }
}

/* Whether the processor has AVX and the system saves its registers (the
 * OSXSAVE bit and XCR0's SSE and AVX state). */
static int avx_usable(void) {
  unsigned a, b, c, d;
  __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
  if (!(c >> 27 & 1) || !(c >> 28 & 1)) return 0;
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  return (lo & 6) == 6;
}

/* A word (8 bytes) or a byte through rdx: loaded from or stored to
 * [rbx + disp], or [rbx + rax + disp] when indexed (a row). */
static void move_unit(emitter *e, int load, int word, int indexed, int32_t disp) {
  if (word) PUT(e, 0x48, load ? 0x8B : 0x89);
  else if (load) PUT(e, 0x0F, 0xB6); /* movzx edx, byte */
  else PUT(e, 0x88);                 /* mov byte, dl */
  if (indexed) PUT(e, 0x94, 0x03);
  else PUT(e, 0x93);
  put32(e, disp);
}

/* rax = r12 * stride: the byte offset of row t */
static void row_offset(emitter *e, int32_t stride) {
  PUT(e, 0x49, 0x69, 0xC4);
  put32(e, stride);
}

/* Copies bytes from one region to another as memmove does (loop.c's copies
 * and COPY_V): words, then the last bytes one by one, from the end down when
 * the destination lies above the source.  from_row / to_row: that side is a
 * row, at rax past its offset. */
static void move_bytes(emitter *e, int64_t to, int to_row, int64_t from, int from_row,
                       int64_t bytes) {
  const int64_t words = bytes / 8, units = words + bytes % 8;
  const int down = !to_row && !from_row && to > from;
  for (int64_t k = 0; k < units; k++) {
    const int64_t u = down ? units - 1 - k : k;
    const int word = u < words;
    const int64_t at = word ? 8 * u : 8 * words + (u - words);
    move_unit(e, 1, word, from_row, (int32_t)(from + at));
    move_unit(e, 0, word, to_row, (int32_t)(to + at));
  }
}

/* The register holding slot o's value, or -1. */
static int cached(const emitter *e, int64_t o) {
  for (int r = 0; r < NREGS; r++)
    if (e->slot[r] == o) return r;
  return -1;
}

/* Stores register r's value to its slot if it is not there yet. */
static void write_back(emitter *e, int r) {
  if (!(e->dirty >> r & 1)) return;
  sse(e, 0xF2, STORE, r, 0, (int32_t)e->slot[r], 1);
  e->dirty &= ~(1u << r);
}

static void write_back_all(emitter *e) {
  for (int r = 0; r < NREGS; r++) write_back(e, r);
}

/* The registers of slots sharing a byte with [o, o + bytes) no longer hold
 * their values (the arena's bytes there were just written: every register
 * was written back before, so none is dirty). */
static void forget_range(emitter *e, int64_t o, int64_t bytes) {
  for (int r = 0; r < NREGS; r++)
    if (e->slot[r] >= 0 && e->slot[r] + 8 > o && e->slot[r] < o + bytes) {
      e->slot[r] = -1;
      e->dirty &= ~(1u << r);
    }
}

static void forget_all(emitter *e) {
  for (int r = 0; r < NREGS; r++) e->slot[r] = -1;
  e->dirty = 0;
  e->sign_ready = 0;
}

/* How the native step runs an instruction (how()). */
enum { NOT_TAKEN, NATIVE, DISPATCHED };
static int how(const int32_t *pc);
static int64_t scalar_byte(int32_t w);
/* next_read's answers past any count of instructions: not read again within
 * LOOKAHEAD instructions (the look stops there: long bodies compile in time
 * proportional to their length), not read again, written first. */
enum { LOOKAHEAD = 512 };
enum { NEVER = INT64_MAX - 1, OVERWRITTEN = INT64_MAX };

/* How many instructions of the body from e->at on run before one of them
 * reads slot o's value from a register, which decides the value to give up
 * its register: the one read again last, as Belady's rule has it, rather
 * than the one read longest ago (a closed-over value read by every step
 * then stays).  NEVER when none does, because the body ends or an
 * instruction not compiled to SSE arithmetic (a helper's call, the dispatch
 * loop's, COPY_V, ZERO_V) comes first, at which the arena must hold the
 * interpreter's values; OVERWRITTEN when an instruction compiled here
 * writes the slot first, so that its value need never be stored. */
static int64_t next_read(const emitter *e, int64_t o) {
  if (e->at == NULL) return NEVER;
  int64_t n = 0;
  for (const int32_t *pc = e->at; *pc != OP_HALT; pc += 1 + fastad_opcode_nargs[*pc], n++) {
    if (n == LOOKAHEAD) return LOOKAHEAD;
    int first = 2;
    const int last = fastad_opcode_nargs[*pc];
    switch (*pc) {
      case OP_ACC_S: case OP_NACC_S: case OP_MULACC_S: case OP_NMULACC_S:
        first = 1;
        break;
      case OP_UNARY_S: case OP_BINARY_S: case OP_COPY_V: case OP_ZERO_V:
        return NEVER;
      default:
        if (how(pc) != NATIVE) return NEVER;
    }
    for (int i = first; i <= last; i++)
      if (scalar_byte(pc[i]) == o) return n;
    if (scalar_byte(pc[1]) == o) return OVERWRITTEN;
  }
  return NEVER;
}

/* A register to compute into, none of those in keep (a bit mask): an empty
 * one, else the one whose value is read again last (a value not read again,
 * clean before dirty: no store), of those the one unused longest. */
static int scratch_reg(emitter *e, unsigned keep) {
  int best = -1;
  int64_t best_next = 0;
  for (int r = 0; r < NREGS; r++) {
    if ((keep | e->pinned) >> r & 1) continue;
    if (e->slot[r] < 0) return r;
    const int64_t next = next_read(e, e->slot[r]);
    const int better = best < 0 || next > best_next ||
                       (next == best_next && ((e->dirty >> best & 1) > (e->dirty >> r & 1) ||
                                              ((e->dirty >> best & 1) == (e->dirty >> r & 1) &&
                                               e->used[r] < e->used[best])));
    if (better) {
      best = r;
      best_next = next;
    }
  }
  if (best_next == OVERWRITTEN) e->dirty &= ~(1u << best);
  write_back(e, best);
  e->slot[best] = -1;
  return best;
}

/* A fresh register (none of keep) holding slot a's value. */
static int value_in_new(emitter *e, int32_t a, unsigned keep) {
  const int from = cached(e, a);
  const int r = scratch_reg(e, keep | (from >= 0 ? 1u << from : 0));
  if (from >= 0) {
    sse(e, 0x66, MOVAPD, r, from, 0, 0);
    e->used[from] = ++e->clock;
  } else {
    sse(e, 0xF2, LOAD, r, 0, a, 1);
  }
  return r;
}

/* r op= slot b's value: from its register if cached, else from the arena. */
static void apply(emitter *e, uint8_t op, int r, int32_t b) {
  const int from = cached(e, b);
  if (from >= 0) {
    sse(e, 0xF2, op, r, from, 0, 0);
    e->used[from] = ++e->clock;
  } else {
    sse(e, 0xF2, op, r, 0, b, 1);
  }
}

/* A fresh register (none of keep) holding slot a's value op slot b's:
 * value_in_new and apply, or with VEX one operation from a's register. */
static int computed(emitter *e, uint8_t op, int32_t a, int32_t b, unsigned keep) {
  const int from = e->vex ? cached(e, a) : -1;
  if (from < 0) {
    const int r = value_in_new(e, a, keep);
    apply(e, op, r, b);
    return r;
  }
  e->used[from] = ++e->clock;
  const int other = cached(e, b);
  const int r = scratch_reg(e, keep | 1u << from | (other >= 0 ? 1u << other : 0));
  if (other >= 0) {
    vex_op(e, 0xF2, op, r, from, other, 0, 0);
    e->used[other] = ++e->clock;
  } else {
    vex_op(e, 0xF2, op, r, from, 0, b, 1);
  }
  return r;
}

/* Register r holds slot o's new value (stored later: write_back).  A
 * register holding o's old value no longer does, and that value, now
 * overwritten, is never stored. */
static void store(emitter *e, int r, int32_t o) {
  const int old = cached(e, o);
  if (old >= 0 && old != r) {
    e->slot[old] = -1;
    e->dirty &= ~(1u << old);
  }
  e->slot[r] = o;
  e->dirty |= 1u << r;
  e->used[r] = ++e->clock;
}

/* Negations flip the sign bit (xorpd with xmm15), as the C compiler's -x
 * does, NaNs included. */
static void negate(emitter *e, int r) {
  if (!e->sign_ready) {
    PUT(e, 0x48, 0xB8);                 /* mov rax, the sign bit */
    put64(e, UINT64_C(1) << 63);
    PUT(e, 0x66, 0x4C, 0x0F, 0x6E, 0xF8); /* movq xmm15, rax */
    e->sign_ready = 1;
  }
  sse(e, 0x66, XORPD, r, SIGN, 0, 0);
}

/* o = a op b */
static void binary_op(emitter *e, uint8_t op, int32_t o, int32_t a, int32_t b) {
  store(e, computed(e, op, a, b, 0), o);
}

/* o = a op (b * c): MULADD_S and the like, rounded after the product as the
 * C code (built with -ffp-contract=off) is.  Of two NaN operands addsd passes
 * on its destination's, and the compiler may add a to the product or the
 * product to a (GCC -O3 does the first, its sanitized build the second):
 * add_to_product says which the interpreter does (probed); a - b * c always
 * subtracts the product from a. */
static void product_then(emitter *e, uint8_t op, int add_to_product, int32_t o, int32_t a,
                         int32_t b, int32_t c) {
  const int p = computed(e, MUL, b, c, 0);
  if (add_to_product) {
    apply(e, ADD, p, a);
    store(e, p, o);
    return;
  }
  const int from = e->vex ? cached(e, a) : -1;
  if (from >= 0) { /* p = a op p: p is this instruction's own */
    vex_op(e, 0xF2, op, p, from, p, 0, 0);
    e->used[from] = ++e->clock;
    store(e, p, o);
    return;
  }
  const int r = value_in_new(e, a, 1u << p);
  sse(e, 0xF2, op, r, p, 0, 0);
  store(e, r, o);
}

/* The kernels' own functions for UNARY_S and BINARY_S (NumPy's loops where
 * installed), so a call gives the interpreter's bits. */
static void call_unary(char *arena, const void *pc_, const fastad_linalg *la) {
  const int32_t *pc = pc_;
  (void)la;
  unary_v(pc[1], DT_F64, arena, pc[2], pc[3], 1);
}

static void call_binary(char *arena, const void *pc_, const fastad_linalg *la) {
  const int32_t *pc = pc_;
  (void)la;
  binary_v(pc[1], DT_F64, 0, arena, pc[2], pc[3], pc[4], 1);
}

/* Any other instruction the step holds, by the dispatch loop itself (never
 * polled: loop.c polls between steps, counting these; none of them fails). */
static void call_one(char *arena, const void *one, const fastad_linalg *la) {
  poll_state ps = {NULL, -1, 0, NULL};
  (void)vm_run_state(&((const one_instr *)one)->prog, la, arena, &ps);
}

/* fn(arena, what, la).  A call clobbers every xmm register: the cache
 * starts again empty. */
static void call_helper(emitter *e, void (*fn)(char *, const void *, const fastad_linalg *),
                        const void *what) {
  write_back_all(e); /* the helper reads its operands from the arena */
  PUT(e, 0x48, 0x89, 0xDF); /* mov rdi, rbx */
  PUT(e, 0x48, 0xBE);       /* mov rsi, what */
  put64(e, (uint64_t)(uintptr_t)what);
  PUT(e, 0x4C, 0x89, 0xEA); /* mov rdx, r13 (la) */
  PUT(e, 0x48, 0xB8);       /* mov rax, fn */
  put64(e, (uint64_t)(uintptr_t)fn);
  PUT(e, 0xFF, 0xD0);       /* call rax */
  forget_all(e);
}

/* ------------------------------------------------------------------------ */
/* Which loops qualify                                                      */
/* ------------------------------------------------------------------------ */
/* A byte offset or stride the code can hold as a 32-bit displacement (the
 * lowest row of a negative stride included: the validator checked it). */
static int fits(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX - 8; }

/* Element offset w of a float64 operand, in bytes, or -1 if it does not fit. */
static int64_t scalar_byte(int32_t w) {
  return w >= 0 && fits((int64_t)w * 8) ? (int64_t)w * 8 : -1;
}

/* Rows, carries and COPY_V / ZERO_V few enough to move word by word. */
enum { MAX_ENTRY_BYTES = 256 };

static int how(const int32_t *pc) {
  int first = 2;
  switch (*pc) {
    case OP_ADD_S: case OP_SUB_S: case OP_MUL_S: case OP_DIV_S: case OP_NEG_S:
    case OP_NMUL_S: case OP_MULADD_S: case OP_MULSUB_S: case OP_SQUARE_S: case OP_MOV_S:
    case OP_ACC_S: case OP_NACC_S: case OP_MULACC_S: case OP_NMULACC_S:
      first = 1;
      /* fall through */
    case OP_UNARY_S: case OP_BINARY_S:
      for (int i = first; i <= fastad_opcode_nargs[*pc]; i++)
        if (scalar_byte(pc[i]) < 0) return DISPATCHED;
      return NATIVE;
    case OP_COPY_V: case OP_ZERO_V: {  /* a few float64 words: moved or zeroed */
      const int32_t n = pc[*pc == OP_COPY_V ? 4 : 3];
      int ok = pc[1] == DT_F64 && n >= 0 && n <= MAX_ENTRY_BYTES / 8 && scalar_byte(pc[2]) >= 0 &&
               fits(scalar_byte(pc[2]) + 8 * (int64_t)n);
      if (*pc == OP_COPY_V)
        ok = ok && scalar_byte(pc[3]) >= 0 && fits(scalar_byte(pc[3]) + 8 * (int64_t)n);
      return ok ? NATIVE : DISPATCHED;
    }
    /* array instructions that cannot fail: run by the dispatch loop (a while
     * loop's comparison and its cast, a small array's arithmetic) */
    case OP_UNARY_V: case OP_BINARY_VV: case OP_BINARY_VS: case OP_BINARY_SV:
    case OP_BINARY_B: case OP_COMPARE_B: case OP_LOGIC_B: case OP_NOT_V: case OP_WHERE_B:
    case OP_CAST_V: case OP_STRIDED_B: case OP_GATHER_V: case OP_SCATTER_SET_V:
    case OP_SCATTER_ADD_V: case OP_STRIDED_SET_B: case OP_STRIDED_ADD_B: case OP_REDUCE_B:
    case OP_SCAN_B:
      return DISPATCHED;
    default:  /* a LOOP, a GUARD, linear algebra, FUSED, products */
      return NOT_TAKEN;
  }
}

/* Whether the body at code is scalar code, possibly with a few array
 * instructions (at most two per native one: vector bodies, whose time is
 * their array instructions, stay interpreted as they were); their number. */
static int scalar_body(const int32_t *code, int64_t *arrays) {
  int64_t native = 0, dispatched = 0;
  for (const int32_t *pc = code; *pc != OP_HALT; pc += 1 + fastad_opcode_nargs[*pc]) {
    switch (how(pc)) {
      case NATIVE: native++; break;
      case DISPATCHED: dispatched++; break;
      default: return 0;
    }
  }
  *arrays = dispatched;
  return dispatched <= 2 * native;
}

/* The bytes [*lo, *lo + *n) that rows of stacked entry e of LOOP descriptor d
 * reach (d[0] >= 0: a while loop has no rows). */
static void rows_span(const int64_t *d, const int64_t *e, int64_t *lo, int64_t *n) {
  const int64_t reach = d[0] > 0 ? (d[0] - 1) * e[3] : 0;
  *lo = e[1] + (reach < 0 ? reach : 0);
  *n = (reach < 0 ? -reach : reach) + e[2];
}

static int simple_entries(const int64_t *d) {
  const int64_t n = d[1] + d[2] + d[3];
  int64_t carried = 0;
  for (int64_t k = 0; k < n; k++) {
    const int64_t *e = d + FASTAD_DESC_HEAD_LOOP + FASTAD_LOOP_ENTRY_WORDS * k;
    if (e[2] <= 0 || e[2] > MAX_ENTRY_BYTES) return 0;
    if (!fits(e[0] + e[2]) || !fits(e[1] + e[2]) || !fits(e[3]) || e[0] < 0 || e[1] < 0)
      return 0;
    if (k < d[1]) {
      carried += e[2];
    } else if (e[2] != 8 && d[0] > 0) {
      /* a row over its own slot (a hostile program's) is copied as memmove
       * does, in the direction the two addresses give: interpreted (a word
       * moves in one load and one store, either way) */
      int64_t lo, bytes;
      rows_span(d, e, &lo, &bytes);
      if (lo < e[0] + e[2] && e[0] < lo + bytes) return 0;
    }
  }
  return fits(d[4] + carried);
}

/* ------------------------------------------------------------------------ */
/* One step                                                                 */
/* ------------------------------------------------------------------------ */
typedef struct {
  one_instr *ones;
  int failed;
} owned;

/* The instruction at pc of p as a program of its own, kept in o. */
static const one_instr *one_program(owned *o, const fastad_program *p, const int32_t *pc) {
  const int64_t n = 1 + fastad_opcode_nargs[*pc];
  one_instr *one = malloc(sizeof *one + (size_t)(n + 1) * sizeof(int32_t));
  if (one == NULL) {
    o->failed = 1;
    return NULL;
  }
  memcpy(one->words, pc, (size_t)n * sizeof(int32_t));
  one->words[n] = OP_HALT;
  one->prog = *p;
  one->prog.code = one->words;
  one->prog.code_len = n + 1;
  one->prog.bound = NULL;
  one->prog.num_bound = 0;
  one->prog.bound_bytes = 0;
  one->prog.jit = NULL;
  one->next = o->ones;
  o->ones = one;
  return one;
}

static void emit_body(emitter *e, owned *o, const fastad_program *p, const int32_t *code) {
#define S(i) ((int32_t)scalar_byte(pc[i]))
  for (const int32_t *pc = code; *pc != OP_HALT; pc += 1 + fastad_opcode_nargs[*pc]) {
    int r;
    e->at = pc;
    if (how(pc) == DISPATCHED) {
      const one_instr *one = one_program(o, p, pc);
      if (one == NULL) return;
      call_helper(e, call_one, one);
      continue;
    }
    switch (*pc) {
      case OP_ADD_S: binary_op(e, ADD, S(1), S(2), S(3)); break;
      case OP_SUB_S: binary_op(e, SUB, S(1), S(2), S(3)); break;
      case OP_MUL_S: binary_op(e, MUL, S(1), S(2), S(3)); break;
      case OP_DIV_S: binary_op(e, DIV, S(1), S(2), S(3)); break;
      case OP_NEG_S:
        r = value_in_new(e, S(2), 0);
        negate(e, r);
        store(e, r, S(1));
        break;
      case OP_NMUL_S:
        r = computed(e, MUL, S(2), S(3), 0);
        negate(e, r);
        store(e, r, S(1));
        break;
      case OP_MULADD_S: product_then(e, ADD, e->add_to_product[0], S(1), S(2), S(3), S(4)); break;
      case OP_MULSUB_S: product_then(e, SUB, 0, S(1), S(2), S(3), S(4)); break;
      case OP_SQUARE_S: binary_op(e, MUL, S(1), S(2), S(2)); break;
      case OP_MOV_S:
        r = value_in_new(e, S(2), 0);
        store(e, r, S(1));
        break;
      case OP_ACC_S: binary_op(e, ADD, S(1), S(1), S(2)); break;
      case OP_NACC_S: binary_op(e, SUB, S(1), S(1), S(2)); break;
      case OP_MULACC_S: product_then(e, ADD, e->add_to_product[1], S(1), S(1), S(2), S(3)); break;
      case OP_NMULACC_S: product_then(e, SUB, 0, S(1), S(1), S(2), S(3)); break;
      case OP_UNARY_S: call_helper(e, call_unary, pc); break;
      case OP_BINARY_S: call_helper(e, call_binary, pc); break;
      case OP_COPY_V:
        write_back_all(e);
        move_bytes(e, S(2), 0, S(3), 0, 8 * (int64_t)pc[4]);
        forget_range(e, S(2), 8 * (int64_t)pc[4]);
        break;
      case OP_ZERO_V:
        write_back_all(e);
        PUT(e, 0x31, 0xD2); /* xor edx, edx */
        for (int32_t i = 0; i < pc[3]; i++) move_unit(e, 0, 1, 0, S(2) + 8 * i);
        forget_range(e, S(2), 8 * (int64_t)pc[3]);
        break;
      default: e->failed = 1; return; /* how() admitted it: not reached */
    }
  }
  e->at = NULL;
#undef S
}

/* A jump whose 32-bit displacement is patched once its target is known:
 * the displacement's place in the code. */
static size_t jump(emitter *e, uint8_t op2) {
  if (op2) PUT(e, 0x0F, op2); /* jcc rel32 */
  else PUT(e, 0xE9);          /* jmp rel32 */
  put32(e, 0);
  return e->len - 4;
}

static void land(emitter *e, size_t at, size_t target) {
  if (e->failed) return;
  const int64_t rel = (int64_t)target - (int64_t)(at + 4);
  if (rel < INT32_MIN || rel > INT32_MAX) { /* a step of over 2 GiB of code: interpreted */
    e->failed = 1;
    return;
  }
  const uint32_t u = (uint32_t)rel;
  for (int i = 0; i < 4; i++) e->buf[at + i] = (uint8_t)(u >> (8 * i));
}

/* Carries held in registers from one step to the next (their 8-byte input
 * slots; the values are stored as well), at most this many, chosen among
 * the first PIN_SCAN carries. */
enum { MAX_PINNED = 6, PIN_SCAN = 16 };

/* Whether carry c (its descriptor entry) of LOOP descriptor d is its own
 * output and nothing in a step writes its slot: the body's instructions
 * (array instructions, whose outputs are not looked at, count as writing),
 * rows copied in or out and the other carries' moves.  Its value is then the
 * same at every step: a register pinned to it would hold a value the body
 * reads from L1 as cheaply, and is better given to a carry that changes. */
static int constant_carry(const int64_t *d, const int64_t *c, const int32_t *body) {
  const int64_t at = c[0];
  if (c[0] != c[1] || c[2] != 8 || at % 8) return 0;
  for (const int32_t *pc = body; *pc != OP_HALT; pc += 1 + fastad_opcode_nargs[*pc]) {
    if (how(pc) != NATIVE) return 0;
    int64_t lo, n = 8;
    switch (*pc) {
      case OP_UNARY_S: case OP_BINARY_S: lo = scalar_byte(pc[2]); break;
      case OP_COPY_V: lo = scalar_byte(pc[2]); n = 8 * (int64_t)pc[4]; break;
      case OP_ZERO_V: lo = scalar_byte(pc[2]); n = 8 * (int64_t)pc[3]; break;
      default: lo = scalar_byte(pc[1]);
    }
    if (lo < at + 8 && at < lo + n) return 0;
  }
  const int64_t *e = d + FASTAD_DESC_HEAD_LOOP;
  int64_t scratch = 0; /* the carries' moves through the scratch region */
  for (int64_t k = 0; k < d[1]; k++) scratch += e[FASTAD_LOOP_ENTRY_WORDS * k + 2];
  if (d[4] < at + 8 && at < d[4] + scratch) return 0;
  for (int64_t k = 0; k < d[1] + d[2] + d[3]; k++, e += FASTAD_LOOP_ENTRY_WORDS) {
    int64_t lo = e[0], n = e[2];
    if (k >= d[1] + d[2]) rows_span(d, e, &lo, &n); /* rows out */
    if (e != c && lo < at + 8 && at < lo + n) return 0;
  }
  return 1;
}

/* Whether the nc carries of LOOP descriptor d, which do not move directly,
 * can move through registers: each one aligned word, no two input slots
 * the same, none of the slots in the scratch region, and few enough for the
 * registers left beside the pinned ones.  The scratch region, which every
 * interpreted step writes, is then written when the steps end (it holds the
 * carries' input slots after the last one). */
static int words_apart(const int64_t *d, int64_t nc, const int32_t *body) {
  const int64_t *carry = d + FASTAD_DESC_HEAD_LOOP;
  if (nc > NREGS - MAX_PINNED || d[4] % 8) return 0;
  /* and no step reads the region before writing it: only SSE arithmetic,
   * whose operands there (the body's values may take its place) are written
   * before they are read, and rows from outside it */
  unsigned written = 0;
  for (const int32_t *pc = body; *pc != OP_HALT; pc += 1 + fastad_opcode_nargs[*pc]) {
    if (how(pc) != NATIVE || *pc == OP_UNARY_S || *pc == OP_BINARY_S || *pc == OP_COPY_V ||
        *pc == OP_ZERO_V)
      return 0;
    const int reads_out = *pc == OP_ACC_S || *pc == OP_NACC_S || *pc == OP_MULACC_S ||
                          *pc == OP_NMULACC_S;
    for (int i = reads_out ? 1 : 2; i <= fastad_opcode_nargs[*pc]; i++) {
      const int64_t w = (scalar_byte(pc[i]) - d[4]) / 8;
      if (scalar_byte(pc[i]) >= d[4] && w < nc && !(written >> w & 1)) return 0;
    }
    const int64_t w = (scalar_byte(pc[1]) - d[4]) / 8;
    if (scalar_byte(pc[1]) >= d[4] && w < nc) written |= 1u << w;
  }
  for (int64_t k = nc; k < nc + d[2]; k++) {
    int64_t lo, bytes;
    rows_span(d, carry + FASTAD_LOOP_ENTRY_WORDS * k, &lo, &bytes);
    if (lo < d[4] + 8 * nc && d[4] < lo + bytes) return 0;
  }
  for (int64_t k = 0; k < nc; k++) {
    const int64_t *c = carry + FASTAD_LOOP_ENTRY_WORDS * k;
    if (c[2] != 8 || c[0] % 8 || c[1] % 8) return 0;
    for (int64_t j = 0; j < k; j++)
      if (c[0] == carry[FASTAD_LOOP_ENTRY_WORDS * j]) return 0;
    for (int64_t w = 0; w < nc; w++)
      if (c[0] == d[4] + 8 * w || c[1] == d[4] + 8 * w) return 0;
  }
  return 1;
}

/* The steps t0 <= t < t1 of the LOOP (loop.c's steps, in their order: rows
 * in, the body, rows out, carries moved; a while loop stops before a step
 * whose condition byte is 0), as a function returning the t it stopped at:
 * int64_t steps(char *arena, int64_t t0, int64_t t1, const fastad_linalg *la). */
static void emit_steps(emitter *e, owned *o, const fastad_program *p, const int64_t *d,
                       const int32_t *body) {
  const int64_t nc = d[1], nx = d[2], ny = d[3];
  const int64_t *carry = d + FASTAD_DESC_HEAD_LOOP, *xs = carry + FASTAD_LOOP_ENTRY_WORDS * nc,
                *ys = xs + FASTAD_LOOP_ENTRY_WORDS * nx;
  const int direct = carry_moves_directly(carry, nc);
  PUT(e, 0x53, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56); /* push rbx, r12, r13, r14 */
  PUT(e, 0x48, 0x83, 0xEC, 0x08);                   /* sub rsp, 8: 16-aligned for calls */
  PUT(e, 0x48, 0x89, 0x34, 0x24);                   /* mov [rsp], rsi (t0) */
  PUT(e, 0x48, 0x89, 0xFB);                         /* mov rbx, rdi (the arena) */
  PUT(e, 0x49, 0x89, 0xF4);                         /* mov r12, rsi (t) */
  PUT(e, 0x49, 0x89, 0xD6);                         /* mov r14, rdx (t1) */
  PUT(e, 0x49, 0x89, 0xCD);                         /* mov r13, rcx (la) */
  /* carry k of 8 bytes in register pin[k] (the last ones of xmm0-14) */
  int pin[PIN_SCAN];
  int npin = 0;
  const int by_registers = !direct && words_apart(d, nc, body);
  e->pinned = 0;
  for (int64_t k = 0; k < PIN_SCAN; k++) {
    pin[k] = -1;
    /* an aligned word: no scalar slot overlaps it in part */
    if (k < nc && npin < MAX_PINNED && carry[FASTAD_LOOP_ENTRY_WORDS * k + 2] == 8 &&
        carry[FASTAD_LOOP_ENTRY_WORDS * k] % 8 == 0 &&
        !constant_carry(d, carry + FASTAD_LOOP_ENTRY_WORDS * k, body)) {
      pin[k] = NREGS - 1 - npin++;
      e->pinned |= 1u << pin[k];
      sse(e, 0xF2, LOAD, pin[k], 0, (int32_t)carry[FASTAD_LOOP_ENTRY_WORDS * k], 1);
    }
  }
  const size_t top = e->len;
  PUT(e, 0x4D, 0x39, 0xF4); /* cmp r12, r14 */
  const size_t past_end = jump(e, 0x8D); /* jge */
  size_t stop = 0;
  if (d[0] < 0) {  /* a while loop: its condition, the last carry's first byte */
    PUT(e, 0x80, 0xBB);  /* cmp byte [rbx + cond], 0 */
    put32(e, (int32_t)carry[FASTAD_LOOP_ENTRY_WORDS * (nc - 1)]);
    PUT(e, 0x00);
    stop = jump(e, 0x84); /* je */
  }
  forget_all(e);
  for (int64_t k = 0; k < nc && k < PIN_SCAN; k++)
    if (pin[k] >= 0) e->slot[pin[k]] = carry[FASTAD_LOOP_ENTRY_WORDS * k];
  for (int64_t k = 0; k < nx; k++) {
    const int64_t *x = xs + FASTAD_LOOP_ENTRY_WORDS * k;
    row_offset(e, (int32_t)x[3]);
    move_bytes(e, x[0], 0, x[1], 1, x[2]);
    forget_range(e, x[0], x[2]);
  }
  emit_body(e, o, p, body);
  write_back_all(e); /* the arena as the interpreter leaves it after the body */
  for (int64_t k = 0; k < ny; k++) {
    const int64_t *y = ys + FASTAD_LOOP_ENTRY_WORDS * k;
    row_offset(e, (int32_t)y[3]);
    move_bytes(e, y[1], 1, y[0], 0, y[2]);
    /* a row may lie over a slot (a hostile program's): every row's bytes
     * forgotten */
    int64_t lo, bytes;
    rows_span(d, y, &lo, &bytes);
    forget_range(e, lo, bytes);
  }
  /* the new carry's values in registers, where a register of this step holds
   * them (taken before the moves: loop.c moves straight only when no output
   * is overwritten before it is read) and no later carry's move writes over
   * the slot, else from their slots after */
  int from[PIN_SCAN];
  for (int64_t k = 0; k < nc && k < PIN_SCAN; k++) {
    const int64_t at = carry[FASTAD_LOOP_ENTRY_WORDS * k];
    const int r = cached(e, carry[FASTAD_LOOP_ENTRY_WORDS * k + 1]);
    int kept = direct && r >= 0 && !(e->pinned >> r & 1 && r != pin[k]);
    for (int64_t j = k + 1; j < nc && kept; j++) {
      const int64_t *c = carry + FASTAD_LOOP_ENTRY_WORDS * j;
      kept = !(c[0] < at + 8 && at < c[0] + c[2]);
    }
    from[k] = kept ? r : -1;
  }
  if (direct) {
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *c = carry + FASTAD_LOOP_ENTRY_WORDS * k;
      if (c[0] != c[1]) move_bytes(e, c[0], 0, c[1], 0, c[2]);
    }
  } else if (by_registers) {
    /* every new value into a register of its own (not a carry's: those are
     * written below), then each to its slot: a step's carries read before
     * any is written, as through the scratch region, without its two
     * copies; the region itself is written once, when the steps end */
    int v[NREGS];
    unsigned taken = e->pinned;
    for (int64_t k = 0; k < nc; k++) {
      const int r = cached(e, carry[FASTAD_LOOP_ENTRY_WORDS * k + 1]);
      v[k] = r >= 0 && !(e->pinned >> r & 1) ? r : -1;
      if (v[k] >= 0) taken |= 1u << v[k];
    }
    for (int64_t k = 0; k < nc; k++) {
      if (v[k] >= 0) continue;
      const int64_t out = carry[FASTAD_LOOP_ENTRY_WORDS * k + 1];
      const int r = cached(e, out);
      int f = 0;
      while (taken >> f & 1) f++; /* words_apart: nc <= NREGS - MAX_PINNED */
      if (r >= 0) sse(e, 0x66, MOVAPD, f, r, 0, 0);
      else sse(e, 0xF2, LOAD, f, 0, (int32_t)out, 1);
      v[k] = f;
      taken |= 1u << f;
    }
    for (int64_t k = 0; k < nc; k++)
      sse(e, 0xF2, STORE, v[k], 0, (int32_t)carry[FASTAD_LOOP_ENTRY_WORDS * k], 1);
    for (int64_t k = 0; k < nc && k < PIN_SCAN; k++) {
      if (pin[k] >= 0) sse(e, 0x66, MOVAPD, pin[k], v[k], 0, 0);
      from[k] = pin[k];
    }
  } else {
    int64_t at = d[4];
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *c = carry + FASTAD_LOOP_ENTRY_WORDS * k;
      move_bytes(e, at, 0, c[1], 0, c[2]);
      at += c[2];
    }
    at = d[4];
    for (int64_t k = 0; k < nc; k++) {
      const int64_t *c = carry + FASTAD_LOOP_ENTRY_WORDS * k;
      move_bytes(e, c[0], 0, at, 0, c[2]);
      at += c[2];
    }
  }
  for (int64_t k = 0; k < nc && k < PIN_SCAN; k++) {
    if (pin[k] < 0 || from[k] == pin[k]) continue;
    if (from[k] >= 0) sse(e, 0x66, MOVAPD, pin[k], from[k], 0, 0);
    else sse(e, 0xF2, LOAD, pin[k], 0, (int32_t)carry[FASTAD_LOOP_ENTRY_WORDS * k], 1);
  }
  PUT(e, 0x49, 0xFF, 0xC4); /* inc r12 */
  land(e, jump(e, 0), top);
  land(e, past_end, e->len);
  if (stop) land(e, stop, e->len);
  if (by_registers) { /* after a step, the scratch region holds its carries */
    PUT(e, 0x4C, 0x3B, 0x24, 0x24); /* cmp r12, [rsp] */
    const size_t none = jump(e, 0x84); /* je */
    for (int64_t k = 0; k < nc; k++)
      move_bytes(e, d[4] + 8 * k, 0, carry[FASTAD_LOOP_ENTRY_WORDS * k], 0, 8);
    land(e, none, e->len);
  }
  PUT(e, 0x4C, 0x89, 0xE0);             /* mov rax, r12 */
  PUT(e, 0x48, 0x83, 0xC4, 0x08);       /* add rsp, 8 */
  PUT(e, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5B, 0xC3); /* pop r14, r13, r12, rbx; ret */
  e->pinned = 0;
}

/* ------------------------------------------------------------------------ */
/* The program's table                                                      */
/* ------------------------------------------------------------------------ */
typedef struct {
  const int32_t *pc;
  size_t at; /* the step's first byte in the emitter */
  int64_t arrays;
} found;

typedef struct {
  found *item;
  int64_t n, cap;
  int failed;
} found_list;

/* Emits a step for every qualifying LOOP of the program at code (nested
 * bodies included), in order of their instructions. */
static void walk(emitter *e, found_list *f, owned *o, const fastad_program *p,
                 const int32_t *code) {
  const int32_t *next;
  for (const int32_t *pc = code; *pc != OP_HALT; pc = next) {
    next = pc + 1 + fastad_opcode_nargs[*pc];
    if (*pc != OP_LOOP) continue;
    const int32_t *body = next;
    next += pc[2]; /* past the body */
    const int64_t *d = p->meta + pc[1];
    int64_t arrays;
    if (scalar_body(body, &arrays) && simple_entries(d)) {
      if (f->n == f->cap) {
        const int64_t cap = 2 * f->cap + 8;
        found *item = realloc(f->item, (size_t)cap * sizeof *item);
        if (item == NULL) {
          f->failed = 1;
          return;
        }
        f->item = item;
        f->cap = cap;
      }
      f->item[f->n++] = (found){pc, e->len, arrays};
      emit_steps(e, o, p, d, body);
    } else {
      walk(e, f, o, p, body);
    }
  }
}

static void free_ones(one_instr *one) {
  while (one != NULL) {
    one_instr *next = one->next;
    free(one);
    one = next;
  }
}

/* Whether the interpreter's op (MULADD_S o a b c, or MULACC_S o b c with o
 * as a) adds a to the product: of a NaN a and a NaN product, the product's
 * passes on.  Run once per build on a four-word arena (no static state). */
static int adds_to_product(int32_t op) {
  const uint64_t bits[4] = {UINT64_C(0x7FF8000000000001), UINT64_C(0x7FF8000000000002),
                            UINT64_C(0x3FF0000000000000), 0}; /* a, b, 1.0, o */
  double arena[4];
  memcpy(arena, bits, sizeof arena);
  int32_t code[6] = {op, 3, 0, 1, 2, OP_HALT};
  if (op == OP_MULACC_S) { /* o a b: o is a */
    code[1] = 0, code[2] = 1, code[3] = 2, code[4] = OP_HALT;
  }
  fastad_program one = {0};
  one.code = code;
  one.code_len = op == OP_MULACC_S ? 5 : 6;
  one.arena_bytes = sizeof arena;
  poll_state ps = {NULL, -1, 0, NULL};
  (void)vm_run_state(&one, NULL, (char *)arena, &ps);
  uint64_t got;
  memcpy(&got, &arena[op == OP_MULACC_S ? 0 : 3], sizeof got);
  return got == bits[1];
}

struct fastad_jit *fastad_jit_build(const fastad_program *p) {
  if (!jit_on) return NULL;
  emitter e = {0};
  e.vex = jit_on == 1 && avx_usable();
  e.add_to_product[0] = adds_to_product(OP_MULADD_S);
  e.add_to_product[1] = adds_to_product(OP_MULACC_S);
  found_list f = {NULL, 0, 0, 0};
  owned o = {NULL, 0};
  struct fastad_jit *j = NULL;
  walk(&e, &f, &o, p, p->code);
  void *mem = MAP_FAILED;
  if (f.n > 0 && !e.failed && !f.failed && !o.failed) {
    j = malloc(sizeof *j + (size_t)f.n * sizeof(jit_loop));
    mem = mmap(NULL, e.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem != MAP_FAILED) {
      memcpy(mem, e.buf, e.len);
      if (mprotect(mem, e.len, PROT_READ | PROT_EXEC) != 0) {
        munmap(mem, e.len);
        mem = MAP_FAILED;
      }
    }
  }
  if (j != NULL && mem != MAP_FAILED) {
    j->mem = mem;
    j->bytes = e.len;
    j->ones = o.ones;
    j->n = f.n;
    for (int64_t k = 0; k < f.n; k++) {
      j->loop[k].pc = f.item[k].pc;
      j->loop[k].fn = (jit_step_fn)(uintptr_t)((uint8_t *)mem + f.item[k].at);
      j->loop[k].arrays = f.item[k].arrays;
    }
  } else {
    if (mem != MAP_FAILED) munmap(mem, e.len);
    free(j);
    j = NULL;
    free_ones(o.ones);
  }
  free(e.buf);
  free(f.item);
  return j;
}

void fastad_jit_free(struct fastad_jit *jit) {
  if (jit == NULL) return;
  munmap(jit->mem, jit->bytes);
  free_ones(jit->ones);
  free(jit);
}

#endif
