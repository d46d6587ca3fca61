/*
 * validate.c -- fastad_vm_validate: every instruction of a program is checked
 * against its own pools and arena size before the program may run (vm.h).
 * The debug build's dispatch loop re-checks each instruction it runs through
 * fastad_vm_check_instr.
 */
#include "vm.h"

#include <limits.h>
#include <stdio.h>

#define SIZE_OF_DTYPE(name, size) size,
static const int dtype_size[FASTAD_NUM_DTYPES] = {FASTAD_DTYPES(SIZE_OF_DTYPE)};
/* ------------------------------------------------------------------------ */
/* Validation: one instruction at a time                                    */
/* ------------------------------------------------------------------------ */
/* Arena regions: every arena operand of the instruction being checked is
 * recorded with its role (fastad_region, vm.h) as its range is checked, and
 * regions_ok then checks them against each other: a region an instruction
 * writes overlaps no other region it uses, except that two regions both
 * marked FASTAD_REGION_SAME (operands of an elementwise step, read and written
 * element by element in order) may coincide exactly. */
#define MAX_REGIONS FASTAD_MAX_REGIONS

typedef struct {
  const fastad_program *p;
  char *err;
  size_t err_len;
  int64_t pc;
  int nreg;
  fastad_region reg[MAX_REGIONS];
  int depth; /* of LOOP bodies around the program being checked */
} checker;

static int validate_at(const fastad_program *p, int depth, char *err, size_t err_len);

static int fail(checker *c, const char *fmt, long long a, long long b) {
  char msg[160];
  snprintf(msg, sizeof msg, fmt, a, b);
  snprintf(c->err, c->err_len, "instruction at word %lld (%s): %s", (long long)c->pc,
           fastad_opcode_names[c->p->code[c->pc]], msg);
  return 0;
}

/* Sizes are bounded well below overflow: no dimension or count above 2^40. */
#define MAX_COUNT ((int64_t)1 << 40)

static int count_ok(checker *c, int64_t n) {
  return (n >= 0 && n <= MAX_COUNT) || fail(c, "count %lld outside 0..2^40%.0lld", n, 0);
}

static int dtype_ok(checker *c, int64_t t, int floats_only) {
  if (t < 0 || t >= FASTAD_NUM_DTYPES || (floats_only && t == DT_BOOL))
    return fail(c, "bad dtype code %lld%.0lld", t, 0);
  return 1;
}

static int fn_ok(checker *c, int64_t f, int64_t count) {
  return (f >= 0 && f < count) || fail(c, "function code %lld outside 0..%lld", f, count - 1);
}

/* fused_ok keeps a bit per register and slot of a FUSED instruction. */
_Static_assert(FASTAD_FUSED_MAX_REGS + FASTAD_FUSED_MAX_SLOTS <= 64,
               "a FUSED instruction's operands must fit a uint64_t bit set");
/* The words of a FUSED descriptor (opcodes.h): header, per slot, per step. */
enum { FUSED_HEAD = FASTAD_DESC_HEAD_FUSED, SLOT_WORDS = FASTAD_FUSED_SLOT_WORDS,
       STEP_WORDS = FASTAD_FUSED_STEP_WORDS };

/* Elements [off, off + n) of itemsize bytes lie inside the arena. */
static int range_ok(checker *c, int64_t off, int64_t n, int64_t itemsize) {
  if (off < 0 || n < 0 || n > MAX_COUNT || off > MAX_COUNT ||
      (off + n) * itemsize > c->p->arena_bytes)
    return fail(c, "operand [%lld, +%lld) leaves the arena", off, n);
  return 1;
}

/* Descriptor words [d, d + len) exist. */
static int meta_ok(checker *c, int64_t d, int64_t len) {
  if (d < 0 || len < 0 || d > c->p->meta_len || len > c->p->meta_len - d)
    return fail(c, "descriptor [%lld, +%lld) outside the metadata pool", d, len);
  return 1;
}

/* A shape of ndim dimensions (read from a validated descriptor); the product
 * of its nonzero dimensions is bounded, so no product of a subset overflows. */
static int shape_ok(checker *c, int64_t ndim, const int64_t *shape, int64_t *total) {
  int64_t nonzero = 1;
  *total = 1;
  for (int64_t k = 0; k < ndim; k++) {
    if (!count_ok(c, shape[k])) return 0;
    if (shape[k] == 0) {
      *total = 0;
      continue;
    }
    if (nonzero > MAX_COUNT / shape[k]) return fail(c, "shape too large%.0lld%.0lld", 0, 0);
    nonzero *= shape[k];
  }
  if (*total) *total = nonzero;
  return 1;
}

/* Descriptor at d: ndim, then head - 1 more words, then per_dim words per axis. */
static int desc_ok(checker *c, int64_t d, int64_t head, int64_t per_dim, int64_t *ndim) {
  if (!meta_ok(c, d, 1)) return 0;
  *ndim = c->p->meta[d];
  if (*ndim < 1 || *ndim > FASTAD_MAX_NDIM)
    return fail(c, "ndim %lld outside 1..%lld", *ndim, FASTAD_MAX_NDIM);
  return meta_ok(c, d, head + per_dim * *ndim);
}

/* The bound segment (vm.h) holding bytes [lo, hi), or -1. */
static int64_t bound_segment(const fastad_program *p, int64_t lo, int64_t hi) {
  for (int64_t k = 0; k < p->num_bound; k++) {
    const int64_t start = p->bound[3 * k], end = start + p->bound[3 * k + 1];
    if (lo >= start && hi <= end && lo < end) return k;
  }
  return -1;
}

/* Elements [off, off + n) of itemsize bytes lie inside the arena, or are
 * read from one bound input by an opcode that maps them onto its array
 * (fastad_maps_bound) through an operand word `anchor` (an element offset)
 * in the same segment; records them as a region of the given role
 * (FASTAD_REGION_*) of operand `operand`.  A bound input is the caller's
 * array: never written. */
static int region_ok(checker *c, int role, int operand, int64_t off, int64_t n,
                     int64_t itemsize, int64_t anchor) {
  const fastad_program *p = c->p;
  if (p->num_bound > 0 && off >= 0 && n > 0 && n <= MAX_COUNT && off <= MAX_COUNT &&
      (off + n) * itemsize > p->arena_bytes) {
    const int64_t k = bound_segment(p, off * itemsize, (off + n) * itemsize);
    if (k < 0) return fail(c, "operand [%lld, +%lld) leaves the arena and the inputs", off, n);
    if ((role & FASTAD_REGION_WRITE) && !p->bound[3 * k + 2])
      return fail(c, "operand %lld writes bound input %lld", operand, k);
    if (!fastad_maps_bound(p->code[c->pc]))
      return fail(c, "operand %lld reads bound input %lld: the opcode cannot", operand, k);
    if (anchor < 0 || anchor > MAX_COUNT || bound_segment(p, anchor * itemsize, anchor * itemsize + 1) != k)
      return fail(c, "operand %lld at element %lld is not in its bound input", operand, anchor);
  } else if (!range_ok(c, off, n, itemsize)) {
    return 0;
  } else if (p->num_bound > 0 && anchor * itemsize >= p->arena_bytes) {
    /* the VM would read it from a bound input's array */
    return fail(c, "operand %lld in the arena is based at element %lld, past it", operand, anchor);
  }
  if (c->nreg >= MAX_REGIONS) return fail(c, "more than %lld arena operands%.0lld", MAX_REGIONS, 0);
  fastad_region *r = &c->reg[c->nreg++];
  r->byte_lo = off * itemsize;
  r->bytes = n * itemsize;
  r->itemsize = itemsize;
  r->role = role;
  r->operand = operand;
  return 1;
}

/* Operand word k (0-based) of the instruction, an arena offset of n elements. */
static int use(checker *c, int role, int k, int64_t n, int64_t itemsize) {
  const int64_t off = c->p->code[c->pc + 1 + k];
  return region_ok(c, role, k + 1, off, n, itemsize, off);
}

/* Operand word k (0-based), the base of a strided operand (base + start +
 * sum idx_k * stride_k): stays in the arena; its region is the range between
 * its lowest and highest element. */
static int use_strided(checker *c, int role, int k, int64_t start, int64_t ndim,
                       const int64_t *shape, const int64_t *stride, int64_t total,
                       int64_t itemsize) {
  const int64_t base = c->p->code[c->pc + 1 + k];
  if (total == 0) return region_ok(c, role, k + 1, base, 0, itemsize, base);
  int64_t lo = start, hi = start;
  for (int64_t k = 0; k < ndim; k++) {
    const int64_t s = stride[k] < 0 ? -stride[k] : stride[k];
    if (stride[k] < -MAX_COUNT || stride[k] > MAX_COUNT || (s && shape[k] - 1 > MAX_COUNT / s))
      return fail(c, "stride %lld too large%.0lld", stride[k], 0);
    int64_t reach = (shape[k] - 1) * stride[k];
    if (reach > 0) hi += reach; else lo += reach;
    if (hi > MAX_COUNT || lo < -MAX_COUNT) return fail(c, "strides reach too far%.0lld%.0lld", 0, 0);
  }
  return region_ok(c, role, k + 1, base + lo, hi - lo + 1, itemsize, base);
}

/* No region written overlaps another region of the same instruction, unless
 * both are FASTAD_REGION_SAME and coincide exactly. */
static int regions_ok(checker *c) {
  for (int i = 0; i < c->nreg; i++) {
    const fastad_region *r = &c->reg[i];
    for (int j = i + 1; j < c->nreg; j++) {
      const fastad_region *q = &c->reg[j];
      if (!((r->role | q->role) & FASTAD_REGION_WRITE) || r->bytes == 0 || q->bytes == 0) continue;
      if (r->byte_lo >= q->byte_lo + q->bytes || q->byte_lo >= r->byte_lo + r->bytes) continue;
      if (r->role & q->role & FASTAD_REGION_SAME && r->byte_lo == q->byte_lo &&
          r->bytes == q->bytes)
        continue;
      const fastad_region *w = r->role & FASTAD_REGION_WRITE ? r : q, *o = w == r ? q : r;
      snprintf(c->err, c->err_len,
               "instruction at word %lld (%s): %s %d, written at bytes %lld..%lld, overlaps "
               "%s %d at bytes %lld..%lld",
               (long long)c->pc, fastad_opcode_names[c->p->code[c->pc]],
               w->operand > 0 ? "operand" : "fused slot", w->operand > 0 ? w->operand : -w->operand - 1,
               (long long)w->byte_lo, (long long)(w->byte_lo + w->bytes - 1),
               o->operand > 0 ? "operand" : "fused slot", o->operand > 0 ? o->operand : -o->operand - 1,
               (long long)o->byte_lo, (long long)(o->byte_lo + o->bytes - 1));
      return 0;
    }
  }
  return 1;
}

static int index_ok(checker *c, int64_t x, int64_t n, int64_t m) {
  const fastad_program *p = c->p;
  if (x < 0 || n < 0 || x > p->index_len || n > p->index_len - x)
    return fail(c, "indices [%lld, +%lld) outside the index pool", x, n);
  for (int64_t i = 0; i < n; i++)
    if (p->index[x + i] < 0 || p->index[x + i] >= m)
      return fail(c, "index %lld outside 0..%lld", p->index[x + i], m - 1);
  return 1;
}

/* A FUSED micro-program at d over n elements of itemsize t: every slot inside
 * the arena (a region: regions_ok checks that OUT and ACC slots overlap no
 * other slot, OUT and IN slots except at the same start), every
 * operand a known register or slot that holds a value when it is read. */
static int fused_ok(checker *c, int64_t d, int64_t n, int64_t t) {
  const int64_t *m = c->p->meta;
  if (!meta_ok(c, d, FUSED_HEAD)) return 0;
  const int64_t nregs = m[d], nslots = m[d + 1], nsteps = m[d + 2];
  if (nregs < 0 || nregs > FASTAD_FUSED_MAX_REGS || nslots < 0 || nslots > FASTAD_FUSED_MAX_SLOTS)
    return fail(c, "fused: %lld registers, %lld slots", nregs, nslots);
  if (nsteps < 1 || nsteps > FASTAD_FUSED_MAX_STEPS)
    return fail(c, "fused: %lld steps%.0lld", nsteps, 0);
  if (!meta_ok(c, d, FUSED_HEAD + SLOT_WORDS * nslots + STEP_WORDS * nsteps)) return 0;
  const int64_t *slot = m + d + FUSED_HEAD, *step = slot + SLOT_WORDS * nslots;
  for (int64_t s = 0; s < nslots; s++) {
    const int64_t kind = slot[SLOT_WORDS * s], off = slot[SLOT_WORDS * s + 1];
    const int vector = kind == FUSED_IN || kind == FUSED_OUT;
    if (kind < 0 || kind >= FASTAD_NUM_FUSED_SLOTS) return fail(c, "fused: slot kind %lld%.0lld", kind, 0);
    /* OUT and IN slots may start at the same element (an in-place step):
     * element i of every block then depends on element i only. */
    const int role = kind == FUSED_IN ? FASTAD_REGION_READ | FASTAD_REGION_SAME
                     : kind == FUSED_SCALAR ? FASTAD_REGION_READ
                     : kind == FUSED_OUT ? FASTAD_REGION_WRITE | FASTAD_REGION_SAME
                                         : FASTAD_REGION_WRITE;
    if (!region_ok(c, role, (int)(-1 - s), off, vector ? n : 1, t, off)) return 0;
  }
  uint64_t defined = 0; /* bit per operand (nregs + nslots <= 64): holds a value */
  for (int64_t s = 0; s < nslots; s++) {
    const int64_t kind = slot[SLOT_WORDS * s];
    if (kind == FUSED_IN || kind == FUSED_SCALAR) defined |= (uint64_t)1 << (nregs + s);
  }
  int64_t nsum = 0, nshift = 0;
  uint64_t summed = 0, sealed = 0; /* sealed: OUT slots a SHIFT finished */
  for (int64_t k = 0; k < nsteps; k++) {
    const int64_t *st = step + STEP_WORDS * k;
    const int64_t kind = st[0], f = st[1], dst = st[2], a = st[3], b = st[4];
    const int64_t nops = nregs + nslots;
    if (kind < 0 || kind >= FASTAD_NUM_FUSED_STEPS) return fail(c, "fused: step kind %lld%.0lld", kind, 0);
    if (dst < 0 || dst >= nops || a < 0 || a >= nops || b < 0 || b >= nops)
      return fail(c, "fused: step %lld operand outside 0..%lld", k, nops - 1);
    const int64_t dkind = dst < nregs ? -1 : slot[SLOT_WORDS * (dst - nregs)];
    const int64_t akind = a < nregs ? -1 : slot[SLOT_WORDS * (a - nregs)];
    const int64_t bkind = b < nregs ? -1 : slot[SLOT_WORDS * (b - nregs)];
    if (!(defined >> a & 1) || (sealed >> a & 1))
      return fail(c, "fused: step %lld cannot read operand %lld", k, a);
    if (sealed >> dst & 1) return fail(c, "fused: step %lld writes finished slot %lld", k, dst);
    if (kind == FUSED_SUM || kind == FUSED_COUNT || kind == FUSED_NCOUNT) {
      if (dkind != FUSED_ACC || (summed >> dst & 1))
        return fail(c, "fused: step %lld is not a sum into a fresh accumulator%.0lld", k, 0);
      if (kind == FUSED_SUM && (f != 0 || b != 0 || akind == FUSED_SCALAR))
        return fail(c, "fused: step %lld is not a sum of a vector%.0lld", k, 0);
      if (kind != FUSED_SUM) {
        if (!fn_ok(c, f, FASTAD_NUM_COMPARE_FNS)) return 0;
        if (!(defined >> b & 1) || (sealed >> b & 1))
          return fail(c, "fused: step %lld cannot read operand %lld", k, b);
        if (akind == FUSED_SCALAR && bkind == FUSED_SCALAR)
          return fail(c, "fused: step %lld has two scalar operands%.0lld", k, 0);
      }
      if (++nsum > FASTAD_FUSED_MAX_SUMS) return fail(c, "fused: more than %lld sums%.0lld", FASTAD_FUSED_MAX_SUMS, 0);
      summed |= (uint64_t)1 << dst;
      continue;
    }
    if (kind == FUSED_SHIFT) {
      if (b != 0 || f == 0 || f < -FASTAD_FUSED_MAX_SHIFT || f > FASTAD_FUSED_MAX_SHIFT ||
          dkind != FUSED_OUT || a == dst || akind == FUSED_SCALAR || !(defined >> dst & 1))
        return fail(c, "fused: step %lld is not a shift into a written slot (shift %lld)", k, f);
      if (++nshift > FASTAD_FUSED_MAX_SHIFTS)
        return fail(c, "fused: more than %lld shifts%.0lld", FASTAD_FUSED_MAX_SHIFTS, 0);
      /* the elements it reaches past the slot's region: in the arena, and no
       * other slot's */
      const int64_t off = slot[SLOT_WORDS * (dst - nregs) + 1];
      const int64_t lo = f < 0 ? off + f : off + n, hi = f < 0 ? off : off + n + f;
      if (off * t >= c->p->arena_bytes && c->p->num_bound > 0) {
        /* an output written in place: the reach stays in its segment */
        const int64_t seg = bound_segment(c->p, off * t, off * t + 1);
        if (seg < 0 || lo < 0 || bound_segment(c->p, lo * t, hi * t) != seg)
          return fail(c, "fused: shift of step %lld leaves its output (shift %lld)", k, f);
      } else if (!range_ok(c, lo, hi - lo, t)) {
        return 0;
      }
      for (int64_t r = 0; r < nslots; r++) {
        const int64_t kr = slot[SLOT_WORDS * r], or_ = slot[SLOT_WORDS * r + 1];
        const int64_t nr = kr == FUSED_IN || kr == FUSED_OUT ? n : 1;
        if (or_ < hi && lo < or_ + nr) return fail(c, "fused: shift of step %lld reaches slot %lld", k, r);
      }
      sealed |= (uint64_t)1 << dst;
      continue;
    }
    if (dst >= nregs && dkind != FUSED_OUT)
      return fail(c, "fused: step %lld writes a slot of kind %lld", k, dkind);
    if (kind == FUSED_UNARY) {
      if (!fn_ok(c, f, FASTAD_NUM_UNARY_FNS)) return 0;
      if (b != 0 || akind == FUSED_SCALAR) return fail(c, "fused: unary step %lld on a scalar%.0lld", k, 0);
    } else {
      if (!fn_ok(c, f, FASTAD_NUM_BINARY_FNS)) return 0;
      if (!(defined >> b & 1) || (sealed >> b & 1))
        return fail(c, "fused: step %lld cannot read operand %lld", k, b);
      if (akind == FUSED_SCALAR && bkind == FUSED_SCALAR)
        return fail(c, "fused: step %lld has two scalar operands%.0lld", k, 0);
    }
    defined |= (uint64_t)1 << dst;
  }
  return 1;
}

/* A LOOP descriptor at d with a body of n code words after the instruction:
 * the counts bounded, every carry, slot and row inside the arena (the first
 * and last rows of each stacked array, without overflow), the scratch region as large as the
 * carries, and the body a valid program of its own, no deeper than
 * FASTAD_LOOP_MAX_DEPTH.  The steps copy with memmove, so regions may
 * overlap (garbage, never a crash); none is recorded for regions_ok. */
static int loop_ok(checker *c, int64_t d, int64_t n) {
  enum { HEAD = FASTAD_DESC_HEAD_LOOP, ENTRY = FASTAD_LOOP_ENTRY_WORDS };
  const fastad_program *p = c->p;
  if (c->depth >= FASTAD_LOOP_MAX_DEPTH)
    return fail(c, "loops nest deeper than %lld%.0lld", FASTAD_LOOP_MAX_DEPTH, 0);
  if (!meta_ok(c, d, HEAD)) return 0;
  const int64_t *m = p->meta + d;
  const int64_t trips = m[0], nc = m[1], nx = m[2], ny = m[3], scratch = m[4];
  if (trips == -1) { /* a run-time count: a bool condition carried last, no rows */
    if (nc < 1 || nx != 0 || ny != 0)
      return fail(c, "loop of run-time count: %lld carries, %lld stacked values", nc, nx + ny);
    if (!range_ok(c, m[5], 8, 1)) return 0;
  } else if (!count_ok(c, trips)) {
    return 0;
  }
  if (nc < 0 || nx < 0 || ny < 0 || nc > p->meta_len || nx > p->meta_len || ny > p->meta_len)
    return fail(c, "loop: %lld carries, %lld stacked values", nc, nx + ny);
  if (!meta_ok(c, d, HEAD + ENTRY * (nc + nx + ny))) return 0;
  int64_t carry_bytes = 0;
  for (int64_t k = 0; k < nc + nx + ny; k++) {
    const int64_t *e = m + HEAD + ENTRY * k;
    const int64_t slot = e[0], other = e[1], bytes = e[2], stride = e[3];
    if (!range_ok(c, slot, bytes, 1)) return 0;
    if (k < nc) {
      if (stride != 0) return fail(c, "loop: carry %lld with a row stride %lld", k, stride);
      if (!range_ok(c, other, bytes, 1)) return 0;
      if (trips == -1 && k == nc - 1 && bytes < 1)
        return fail(c, "loop of run-time count: a condition of %lld bytes%.0lld", bytes, 0);
      carry_bytes += bytes; /* at most 2^40 each, 2^40 entries: no overflow */
      if (carry_bytes > MAX_COUNT) return fail(c, "loop: carries of %lld bytes%.0lld", carry_bytes, 0);
      continue;
    }
    if (trips == 0) continue; /* no row is ever copied */
    if (other < 0 || other > MAX_COUNT) return fail(c, "loop: stacked array at byte %lld%.0lld", other, 0);
    if (stride < -MAX_COUNT || stride > MAX_COUNT ||
        (stride && trips - 1 > MAX_COUNT / (stride < 0 ? -stride : stride)))
      return fail(c, "loop: %lld rows %lld bytes apart", trips, stride);
    /* rows 0 and trips - 1 bound the others */
    const int64_t reach = (trips - 1) * stride;
    const int64_t lo = other + (reach < 0 ? reach : 0), hi = other + (reach > 0 ? reach : 0) + bytes;
    if (!range_ok(c, lo, hi - lo, 1)) return 0;
  }
  if (!range_ok(c, scratch, carry_bytes, 1)) return 0;
  if (n < 1 || n > p->code_len - (c->pc + 1 + FASTAD_NARGS_LOOP))
    return fail(c, "loop: a body of %lld words runs past the end%.0lld", n, 0);
  fastad_program body = *p;
  body.code = p->code + c->pc + 1 + FASTAD_NARGS_LOOP;
  body.code_len = n;
  body.bound = NULL;
  body.num_bound = 0;
  body.bound_bytes = 0;
  /* the innermost message, named by the outermost LOOP holding it (word
   * offsets inside a body count from the body's first word) */
  if (c->depth > 0) return !validate_at(&body, c->depth + 1, c->err, c->err_len);
  char inner[400];
  if (validate_at(&body, c->depth + 1, inner, sizeof inner)) {
    snprintf(c->err, c->err_len, "in the body of the LOOP at word %lld: %s", (long long)c->pc,
             inner);
    return 0;
  }
  return 1;
}

/* The instruction's own checks, recording a region for each arena operand
 * (use, use_strided): the roles below are the whole of what regions_ok knows
 * about an opcode.  R: read; W: written (perhaps read too); S: elementwise,
 * may coincide exactly with another S operand. */
#define R FASTAD_REGION_READ
#define W FASTAD_REGION_WRITE
#define S FASTAD_REGION_SAME
static int operands_ok(checker *c, int32_t op) {
  const int32_t *w = c->p->code + c->pc + 1;
  const int64_t *m = c->p->meta;
  int64_t total = 0, nd = 0, d = 0, t = 0;
  switch (op) {
    case OP_HALT:
      return 1;
    case OP_ADD_S: case OP_SUB_S: case OP_MUL_S: case OP_DIV_S: case OP_NMUL_S:
    case OP_MULACC_S: case OP_NMULACC_S:  /* o a b */
      return use(c, W | S, 0, 1, 8) && use(c, R | S, 1, 1, 8) && use(c, R | S, 2, 1, 8);
    case OP_MULADD_S: case OP_MULSUB_S:  /* o a b c */
      return use(c, W | S, 0, 1, 8) && use(c, R | S, 1, 1, 8) && use(c, R | S, 2, 1, 8) &&
             use(c, R | S, 3, 1, 8);
    case OP_NEG_S: case OP_SQUARE_S: case OP_MOV_S: case OP_ACC_S: case OP_NACC_S:  /* o a */
      return use(c, W | S, 0, 1, 8) && use(c, R | S, 1, 1, 8);
    case OP_UNARY_S:  /* f o a */
      return fn_ok(c, w[0], FASTAD_NUM_UNARY_FNS) && use(c, W | S, 1, 1, 8) &&
             use(c, R | S, 2, 1, 8);
    case OP_BINARY_S:  /* f o a b */
      return fn_ok(c, w[0], FASTAD_NUM_BINARY_FNS) && use(c, W | S, 1, 1, 8) &&
             use(c, R | S, 2, 1, 8) && use(c, R | S, 3, 1, 8);
    case OP_UNARY_V:  /* f t o a n */
      return fn_ok(c, w[0], FASTAD_NUM_UNARY_FNS) && dtype_ok(c, w[1], 1) &&
             use(c, W | S, 2, w[4], dtype_size[w[1]]) && use(c, R | S, 3, w[4], dtype_size[w[1]]);
    case OP_BINARY_VV: case OP_BINARY_VS: case OP_BINARY_SV:  /* f t o a b n */
      if (!fn_ok(c, w[0], FASTAD_NUM_BINARY_FNS) || !dtype_ok(c, w[1], 1)) return 0;
      t = dtype_size[w[1]];
      /* a broadcast scalar is S only when n == 1: then it is as long as o */
      return use(c, W | S, 2, w[5], t) && use(c, R | S, 3, op == OP_BINARY_SV ? 1 : w[5], t) &&
             use(c, R | S, 4, op == OP_BINARY_VS ? 1 : w[5], t);
    case OP_BINARY_B: case OP_COMPARE_B: case OP_LOGIC_B: {  /* f t o a b d | f o a b d */
      const int logic = op == OP_LOGIC_B;
      const int64_t fcount = op == OP_BINARY_B ? FASTAD_NUM_BINARY_FNS
                             : op == OP_COMPARE_B ? FASTAD_NUM_COMPARE_FNS : FASTAD_NUM_LOGIC_FNS;
      const int k = logic ? 1 : 2;  /* o a b d from word k */
      if (!fn_ok(c, w[0], fcount) || (!logic && !dtype_ok(c, w[1], 1))) return 0;
      t = logic ? 1 : dtype_size[w[1]];
      d = w[k + 3];
      if (!desc_ok(c, d, FASTAD_DESC_HEAD_BROADCAST2, FASTAD_DESC_PER_DIM_BROADCAST2, &nd) ||
          !shape_ok(c, nd, m + d + 1, &total)) return 0;
      return use(c, W, k, total, op == OP_BINARY_B ? t : 1) &&
             use_strided(c, R, k + 1, 0, nd, m + d + 1, m + d + 1 + nd, total, t) &&
             use_strided(c, R, k + 2, 0, nd, m + d + 1, m + d + 1 + 2 * nd, total, t);
    }
    case OP_NOT_V:  /* o a n */
      return use(c, W | S, 0, w[2], 1) && use(c, R | S, 1, w[2], 1);
    case OP_WHERE_B:  /* t o c a b d */
      if (!dtype_ok(c, w[0], 0)) return 0;
      t = dtype_size[w[0]];
      d = w[5];
      if (!desc_ok(c, d, FASTAD_DESC_HEAD_BROADCAST3, FASTAD_DESC_PER_DIM_BROADCAST3, &nd) ||
          !shape_ok(c, nd, m + d + 1, &total)) return 0;
      return use(c, W, 1, total, t) &&
             use_strided(c, R, 2, 0, nd, m + d + 1, m + d + 1 + nd, total, 1) &&
             use_strided(c, R, 3, 0, nd, m + d + 1, m + d + 1 + 2 * nd, total, t) &&
             use_strided(c, R, 4, 0, nd, m + d + 1, m + d + 1 + 3 * nd, total, t);
    case OP_CAST_V:  /* t s o a n: in place only between dtypes of one size */
      return dtype_ok(c, w[0], 0) && dtype_ok(c, w[1], 0) &&
             use(c, W | S, 2, w[4], dtype_size[w[0]]) && use(c, R | S, 3, w[4], dtype_size[w[1]]);
    case OP_ZERO_V:  /* t o n */
      return dtype_ok(c, w[0], 0) && use(c, W, 1, w[2], dtype_size[w[0]]);
    case OP_COPY_V:  /* t o a n */
      return dtype_ok(c, w[0], 0) && use(c, W | S, 1, w[3], dtype_size[w[0]]) &&
             use(c, R | S, 2, w[3], dtype_size[w[0]]);
    case OP_STRIDED_B:  /* t o a d */
      if (!dtype_ok(c, w[0], 0)) return 0;
      d = w[3];
      if (!desc_ok(c, d, FASTAD_DESC_HEAD_STRIDED, FASTAD_DESC_PER_DIM_STRIDED, &nd) ||
          !shape_ok(c, nd, m + d + 2, &total)) return 0;
      return use(c, W, 1, total, dtype_size[w[0]]) &&
             use_strided(c, R, 2, m[d + 1], nd, m + d + 2, m + d + 2 + nd, total, dtype_size[w[0]]);
    case OP_GATHER_V:  /* t o a m x n */
      return dtype_ok(c, w[0], 0) && use(c, W, 1, w[5], dtype_size[w[0]]) &&
             use(c, R, 2, w[3], dtype_size[w[0]]) && index_ok(c, w[4], w[5], w[3]);
    case OP_SCATTER_SET_V: case OP_SCATTER_ADD_V:  /* t o m x v n */
      return dtype_ok(c, w[0], op == OP_SCATTER_ADD_V) && use(c, W, 1, w[2], dtype_size[w[0]]) &&
             use(c, R, 4, w[5], dtype_size[w[0]]) && index_ok(c, w[3], w[5], w[2]);
    case OP_GATHER_ROWS_V: case OP_SCATTER_ADD_ROWS_V: {  /* t o a m r i n | t o m r i v n */
      /* the index values are data, checked by the kernel; here their operand
       * (n float64 elements) and the rows' extents (m and n rows of r) */
      const int gather = op == OP_GATHER_ROWS_V;
      const int64_t rows = w[gather ? 3 : 2], r = w[gather ? 4 : 3], n = w[6];
      if (!dtype_ok(c, w[0], !gather) || !count_ok(c, rows) || !count_ok(c, r) ||
          !count_ok(c, n)) return 0;
      if (r && (rows > MAX_COUNT / r || n > MAX_COUNT / r))
        return fail(c, "%lld rows of %lld elements", gather ? n : rows, r);
      t = dtype_size[w[0]];
      if (gather)
        return use(c, W, 1, n * r, t) && use(c, R, 2, rows * r, t) && use(c, R, 5, n, 8);
      return use(c, W, 1, rows * r, t) && use(c, R, 4, n, 8) && use(c, R, 5, n * r, t);
    }
    case OP_STRIDED_SET_B: case OP_STRIDED_ADD_B:  /* t o v d */
      if (!dtype_ok(c, w[0], op == OP_STRIDED_ADD_B)) return 0;
      d = w[3];
      if (!desc_ok(c, d, FASTAD_DESC_HEAD_STRIDED, FASTAD_DESC_PER_DIM_STRIDED, &nd) ||
          !shape_ok(c, nd, m + d + 2, &total)) return 0;
      return use_strided(c, W, 1, m[d + 1], nd, m + d + 2, m + d + 2 + nd, total,
                         dtype_size[w[0]]) &&
             use(c, R, 2, total, dtype_size[w[0]]);
    case OP_REDUCE_B: {  /* f t o a d */
      if (!fn_ok(c, w[0], FASTAD_NUM_REDUCE_FNS) || !dtype_ok(c, w[1], 1)) return 0;
      t = dtype_size[w[1]];
      d = w[4];
      if (!desc_ok(c, d, FASTAD_DESC_HEAD_REDUCE, FASTAD_DESC_PER_DIM_REDUCE, &nd) ||
          !shape_ok(c, nd, m + d + 1, &total)) return 0;
      const int64_t nout = m[d + 1 + 2 * nd];
      if (!count_ok(c, nout) || !use(c, W, 2, nout, t) || !use(c, R, 3, total, t)) return 0;
      /* output strides must stay inside the output */
      int64_t hi = 0;
      for (int64_t k = 0; k < nd; k++) {
        const int64_t s = m[d + 1 + nd + k];
        if (s < 0 || s > MAX_COUNT || (s && m[d + 1 + k] - 1 > MAX_COUNT / s))
          return fail(c, "bad output stride %lld%.0lld", s, 0);
        hi += (m[d + 1 + k] - 1) * s;
      }
      if (total > 0 && hi >= nout) return fail(c, "output strides reach %lld of %lld", hi, nout);
      return 1;
    }
    case OP_SCAN_B: {  /* t o a d */
      if (!dtype_ok(c, w[0], 1)) return 0;
      d = w[3];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_SCAN) || !shape_ok(c, 3, m + d, &total)) return 0;
      if (m[d + 3] < 0 || m[d + 3] >= FASTAD_SCAN_KINDS) return fail(c, "bad scan kind %lld%.0lld", m[d + 3], 0);
      return use(c, W, 1, total, dtype_size[w[0]]) && use(c, R, 2, total, dtype_size[w[0]]);
    }
    case OP_MATMUL_B: {  /* t o a b d */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[4];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_MATMUL) || !shape_ok(c, 4, m + d, &total)) return 0;
      const int64_t batch = m[d], mm = m[d + 1], k = m[d + 2], n = m[d + 3];
      if (mm > INT_MAX || k > INT_MAX || n > INT_MAX) return fail(c, "matrix too large for BLAS%.0lld%.0lld", 0, 0);
      if ((m[d + 4] | m[d + 5]) & ~(int64_t)1) return fail(c, "bad transpose flags %lld %lld", m[d + 4], m[d + 5]);
      if (m[d + 6] & ~(int64_t)1) return fail(c, "bad add flag %lld%.0lld", m[d + 6], 0);
      return use(c, W, 1, batch * mm * n, t) && use(c, R, 2, batch * mm * k, t) &&
             use(c, R, 3, batch * k * n, t);
    }
    case OP_SOLVE_B: {  /* t o a b d w p */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[4];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_SOLVE) || !shape_ok(c, 3, m + d, &total)) return 0;
      const int64_t batch = m[d], n = m[d + 1], k = m[d + 2];
      if (n > 46340 || k > INT_MAX / (n ? n : 1)) return fail(c, "system too large for LAPACK%.0lld%.0lld", 0, 0);
      return use(c, W, 1, batch * n * k, t) && use(c, R, 2, batch * n * n, t) &&
             use(c, R, 3, batch * n * k, t) && use(c, W, 5, n * n + n * k, t) && use(c, W, 6, n, 4);
    }
    case OP_SLOGDET_B: {  /* f t o a d w p */
      if (!fn_ok(c, w[0], 2) || !dtype_ok(c, w[1], 1)) return 0;
      t = dtype_size[w[1]];
      d = w[4];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_SLOGDET) || !shape_ok(c, 2, m + d, &total)) return 0;
      const int64_t batch = m[d], n = m[d + 1];
      if (n > 46340) return fail(c, "matrix too large for LAPACK%.0lld%.0lld", 0, 0);
      return use(c, W, 2, batch, t) && use(c, R, 3, batch * n * n, t) && use(c, W, 5, n * n, t) &&
             use(c, W, 6, n, 4);
    }
    case OP_CHOLESKY_B: {  /* t o a d */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[3];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_CHOLESKY) || !shape_ok(c, 2, m + d, &total)) return 0;
      const int64_t batch = m[d], n = m[d + 1];
      if (n > 46340) return fail(c, "matrix too large for LAPACK%.0lld%.0lld", 0, 0);
      return use(c, W, 1, batch * n * n, t) && use(c, R, 2, batch * n * n, t);
    }
    case OP_TRSOLVE_B:  /* t o a b d */
    case OP_TRMM_B: {   /* t o a b d, the same descriptor */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[4];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_TRSOLVE) || !shape_ok(c, 3, m + d, &total)) return 0;
      const int64_t batch = m[d], n = m[d + 1], k = m[d + 2];
      if (n > 46340 || k > INT_MAX) return fail(c, "system too large for BLAS%.0lld%.0lld", 0, 0);
      if ((m[d + 3] | m[d + 4]) & ~(int64_t)1)
        return fail(c, "bad lower/trans flags %lld %lld", m[d + 3], m[d + 4]);
      return use(c, W, 1, batch * n * k, t) && use(c, R, 2, batch * n * n, t) &&
             use(c, R, 3, batch * n * k, t);
    }
    case OP_EIGH_B: {  /* t o a d w p */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[3];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_EIGH) || !shape_ok(c, 2, m + d, &total)) return 0;
      const int64_t batch = m[d], n = m[d + 1];
      if (n > 16384) return fail(c, "matrix too large for LAPACK%.0lld%.0lld", 0, 0);
      if (m[d + 2] & ~(int64_t)1) return fail(c, "bad lower flag %lld%.0lld", m[d + 2], 0);
      return use(c, W, 1, batch * (n + 1) * n, t) && use(c, R, 2, batch * n * n, t) &&
             use(c, W, 4, 3 * n * n + 7 * n + 1, 8) && use(c, W, 5, 3 + 5 * n, 4);
    }
    case OP_SVD_B:    /* t o a d w p */
    case OP_PINV_B: { /* t o a d w p */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[3];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_SVD) || !shape_ok(c, 3, m + d, &total)) return 0;
      const int64_t batch = m[d], rows = m[d + 1], cols = m[d + 2], lwork = m[d + 3];
      const int64_t k = rows < cols ? rows : cols, big = rows < cols ? cols : rows;
      /* LAPACK's int arguments: the copy, U, VT and gesdd's own 4k^2 work */
      if (big > INT_MAX / 8 || k > 16384 || rows * cols > INT_MAX)
        return fail(c, "matrix too large for LAPACK%.0lld%.0lld", 0, 0);
      /* gesdd's documented minimum for jobz 'S' (LAPACK 3.7 and earlier releases) */
      const int64_t need1 = 4 * k * k + 7 * k,
                    need2 = 3 * k + (big > 4 * k * k + 4 * k ? big : 4 * k * k + 4 * k);
      if (k > 0 && (lwork < need1 || lwork < need2 || lwork > INT_MAX))
        return fail(c, "gesdd work size %lld outside [%lld, INT_MAX]", lwork,
                    need1 > need2 ? need1 : need2);
      if (k == 0 && (lwork < 0 || lwork > INT_MAX))
        return fail(c, "gesdd work size %lld%.0lld", lwork, 0);
      const int64_t work = rows * cols + k + rows * k + k * cols + lwork;
      if (op == OP_PINV_B)  /* the pseudo-inverse (cols, rows), and its three t arrays */
        return use(c, W, 1, batch * cols * rows, t) && use(c, R, 2, batch * rows * cols, t) &&
               use(c, W, 4, work + k + k * rows + cols * k, 8) && use(c, W, 5, 8 * k, 4);
      return use(c, W, 1, batch * (1 + rows + cols) * k, t) &&
             use(c, R, 2, batch * rows * cols, t) && use(c, W, 4, work, 8) &&
             use(c, W, 5, 8 * k, 4);
    }
    case OP_QR_B: {  /* t o a d w */
      if (!dtype_ok(c, w[0], 1)) return 0;
      t = dtype_size[w[0]];
      d = w[3];
      if (!meta_ok(c, d, FASTAD_DESC_HEAD_QR) || !shape_ok(c, 3, m + d, &total)) return 0;
      const int64_t batch = m[d], rows = m[d + 1], cols = m[d + 2], lwork = m[d + 3];
      if (rows < cols) return fail(c, "qr of a wide matrix (%lld x %lld)", rows, cols);
      if (rows > INT_MAX / 2 || rows * cols > INT_MAX)
        return fail(c, "matrix too large for LAPACK%.0lld%.0lld", 0, 0);
      if (lwork < (cols > 1 ? cols : 1) || lwork > INT_MAX)
        return fail(c, "geqrf/orgqr work size %lld below %lld or too large", lwork, cols);
      return use(c, W, 1, batch * (rows + cols) * cols, t) && use(c, R, 2, batch * rows * cols, t) &&
             use(c, W, 4, rows * cols + cols + lwork, 8);
    }
    case OP_FUSED:  /* t d n */
      if (!dtype_ok(c, w[0], 1) || !count_ok(c, w[2])) return 0;
      return fused_ok(c, w[1], w[2], dtype_size[w[0]]);
    case OP_LOOP:  /* d n */
      return loop_ok(c, w[0], w[1]);
    case OP_GUARD:  /* a e */
      return use(c, R, 0, 1, 1) && ((w[1] == 0 || w[1] == 1) || fail(c, "bad flag %lld%.0lld", w[1], 0));
  }
  return fail(c, "opcode not handled%.0lld%.0lld", 0, 0);
}
#undef R
#undef W
#undef S

/* Checks the instruction at c->pc (operands, then the regions they use);
 * sets *next to the following one. */
static int check_instr(checker *c, int64_t *next) {
  const fastad_program *p = c->p;
  const int64_t pc = c->pc;
  const int32_t op = p->code[pc];
  if (op < 0 || op >= FASTAD_NUM_OPCODES) {
    snprintf(c->err, c->err_len, "word %lld: unknown opcode %d", (long long)pc, op);
    return 0;
  }
  const int nargs = fastad_opcode_nargs[op];
  if (pc + nargs >= p->code_len) return fail(c, "operands run past the end%.0lld%.0lld", 0, 0);
  *next = pc + 1 + nargs;
  c->nreg = 0;
  if (!(operands_ok(c, op) && regions_ok(c))) return 0;
  if (op == OP_LOOP) *next += p->code[pc + 2]; /* past the body loop_ok checked */
  return 1;
}

/* The bound segments: past the arena, aligned, sorted, disjoint,
 * nonempty, within bound_bytes. */
static int bound_ok(const fastad_program *p, char *err, size_t err_len) {
  if (p->num_bound < 0 || p->bound_bytes < 0 || p->bound_bytes > MAX_COUNT ||
      (p->num_bound > 0 && p->bound == NULL)) {
    snprintf(err, err_len, "bad bound inputs");
    return 0;
  }
  int64_t prev_end = p->arena_bytes;
  for (int64_t k = 0; k < p->num_bound; k++) {
    const int64_t start = p->bound[3 * k], bytes = p->bound[3 * k + 1];
    if (start < prev_end || start % FASTAD_ARENA_ALIGN || bytes < 1 || bytes > MAX_COUNT ||
        (p->bound[3 * k + 2] & ~(int64_t)1) ||
        start + bytes > p->arena_bytes + p->bound_bytes) {
      snprintf(err, err_len, "bound input %lld at bytes [%lld, +%lld) is not a segment past "
               "the arena", (long long)k, (long long)start, (long long)bytes);
      return 0;
    }
    prev_end = start + bytes;
  }
  return 1;
}

int fastad_vm_validate(const fastad_program *p, char *err, size_t err_len) {
  return validate_at(p, 0, err, err_len);
}

/* fastad_vm_validate of a program run inside `depth` LOOP bodies. */
static int validate_at(const fastad_program *p, int depth, char *err, size_t err_len) {
  checker c = {p, err, err_len, 0, 0, {{0}}, depth};
  if (p->code_len < 1 || p->arena_bytes < 0 || p->meta_len < 0 || p->index_len < 0) {
    snprintf(err, err_len, "empty program or negative sizes");
    return 1;
  }
  if (!bound_ok(p, err, err_len)) return 1;
  while (c.pc < p->code_len) {
    int64_t next = 0;
    if (!check_instr(&c, &next)) return 1;
    if (p->code[c.pc] == OP_HALT) {
      if (next != p->code_len) {
        snprintf(err, err_len, "HALT at word %lld is not the last instruction", (long long)c.pc);
        return 1;
      }
      return 0;
    }
    c.pc = next;
  }
  snprintf(err, err_len, "program does not end with HALT");
  return 1;
}

int fastad_vm_check_instr(const fastad_program *p, int64_t pc, int64_t *next, char *err,
                          size_t err_len) {
  checker c = {p, err, err_len, pc, 0, {{0}}};
  return check_instr(&c, next);
}

int fastad_vm_regions(const fastad_program *p, int64_t pc, fastad_region *out, int max,
                      char *err, size_t err_len) {
  checker c = {p, err, err_len, pc, 0, {{0}}};
  if (pc < 0 || pc >= p->code_len) {
    snprintf(err, err_len, "word %lld is not in the program", (long long)pc);
    return -1;
  }
  c.nreg = 0;
  const int32_t op = p->code[pc];
  if (op < 0 || op >= FASTAD_NUM_OPCODES || pc + fastad_opcode_nargs[op] >= p->code_len) {
    snprintf(err, err_len, "word %lld: no instruction", (long long)pc);
    return -1;
  }
  if (!operands_ok(&c, op)) return -1;
  for (int i = 0; i < c.nreg && i < max; i++) out[i] = c.reg[i];
  return c.nreg;
}
