/*
 * tables.c -- opcodes.h's tables as the VM was compiled with them (names,
 * arities, dtype sizes, descriptor lengths), for the drift tests
 * (fastad.backends._vm.tables()).
 */
#include "vm.h"

/* ------------------------------------------------------------------------ */
/* Tables exported for the drift test                                        */
/* ------------------------------------------------------------------------ */
#define NAME_OF_OP(name, nargs) #name,
#define NARGS_OF_OP(name, nargs) nargs,
#define NAME_OF_FN(name) #name,
const char *const fastad_opcode_names[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(NAME_OF_OP)};
const int fastad_opcode_nargs[FASTAD_NUM_OPCODES] = {FASTAD_OPCODES(NARGS_OF_OP)};
const char *const fastad_unary_fn_names[FASTAD_NUM_UNARY_FNS] = {FASTAD_UNARY_FNS(NAME_OF_FN)};
const char *const fastad_binary_fn_names[FASTAD_NUM_BINARY_FNS] = {FASTAD_BINARY_FNS(NAME_OF_FN)};
const char *const fastad_compare_fn_names[FASTAD_NUM_COMPARE_FNS] = {
    FASTAD_COMPARE_FNS(NAME_OF_FN)};
const char *const fastad_logic_fn_names[FASTAD_NUM_LOGIC_FNS] = {FASTAD_LOGIC_FNS(NAME_OF_FN)};
const char *const fastad_reduce_fn_names[FASTAD_NUM_REDUCE_FNS] = {FASTAD_REDUCE_FNS(NAME_OF_FN)};
const char *const fastad_fused_slot_names[FASTAD_NUM_FUSED_SLOTS] = {FASTAD_FUSED_SLOTS(NAME_OF_FN)};
const char *const fastad_fused_step_names[FASTAD_NUM_FUSED_STEPS] = {FASTAD_FUSED_STEPS(NAME_OF_FN)};
#define NAME_OF_DTYPE(name, size) #name,
#define SIZE_OF_DTYPE(name, size) size,
const char *const fastad_dtype_names[FASTAD_NUM_DTYPES] = {FASTAD_DTYPES(NAME_OF_DTYPE)};
const int fastad_dtype_sizes[FASTAD_NUM_DTYPES] = {FASTAD_DTYPES(SIZE_OF_DTYPE)};
#define NAME_OF_DESC(name, head, per_dim) #name,
#define HEAD_OF_DESC(name, head, per_dim) head,
#define PER_DIM_OF_DESC(name, head, per_dim) per_dim,
const char *const fastad_descriptor_names[FASTAD_NUM_DESCRIPTORS] = {
    FASTAD_DESCRIPTORS(NAME_OF_DESC)};
const int fastad_descriptor_head[FASTAD_NUM_DESCRIPTORS] = {FASTAD_DESCRIPTORS(HEAD_OF_DESC)};
const int fastad_descriptor_per_dim[FASTAD_NUM_DESCRIPTORS] = {
    FASTAD_DESCRIPTORS(PER_DIM_OF_DESC)};
