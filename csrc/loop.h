/*
 * loop.h -- private to the VM: the LOOP instruction (opcodes.h), a body
 * program run once per step over the same arena (csrc/loop.c).
 */
#ifndef FASTAD_LOOP_H
#define FASTAD_LOOP_H

#include "interrupt.h"

/* The body of the LOOP instruction at pc as a program of its own: the n code
 * words after the instruction, the same pools and arena, no bound segments
 * (the validator checks it so; vm.c runs it so). */
FASTAD_INTERNAL fastad_program loop_body(const fastad_program *p, const int32_t *pc);

/* Whether a step may move the new carry (nc entries of a LOOP descriptor)
 * straight into the carry's input slots, in order: no output overlaps an
 * earlier carry's input slot (else it moves through the scratch region). */
FASTAD_INTERNAL int carry_moves_directly(const int64_t *carry, int64_t nc);

/* Runs the validated LOOP instruction at pc of p over arena: its steps, each
 * the body program between copies (opcodes.h), polling between steps.
 * Returns a FASTAD_VM_* status: a guard that fails in the body, a singular
 * matrix or an interrupt stops the whole run. */
FASTAD_INTERNAL int loop_run(const fastad_program *p, const fastad_linalg *la, char *arena,
                             const int32_t *pc, poll_state *ps);

#endif
