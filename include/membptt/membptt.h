/* membptt's C API: the one header bindings see (Python's ctypes, and any other language).
 *
 * Plain C, stable: opaque handles, create/free pairs, and every call returns a membptt_status.
 * Nothing throws across this boundary; on failure membptt_last_error() returns a one-line message
 * (this thread's, valid until its next call into the library) that names the value at fault and
 * what is allowed, as the command line prints it.
 *
 * Units are the planner's (docs/planner.md): memory in hidden-state units (an internal state is
 * alpha units; plain BPTT needs alpha * length), time in forward steps, the first pass included.
 *
 * Built as libmembptt.so (CMake target membptt_c). */
#ifndef MEMBPTT_H
#define MEMBPTT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMBPTT_API_VERSION 1

#if defined(MEMBPTT_BUILDING_C_API) && defined(__GNUC__)
#define MEMBPTT_API __attribute__((visibility("default")))
#else
#define MEMBPTT_API
#endif

typedef enum membptt_status {
  MEMBPTT_OK = 0,
  MEMBPTT_INVALID_ARGUMENT = 1, /* a value outside what is allowed (the message names it) */
  MEMBPTT_OUT_OF_MEMORY = 2,
  MEMBPTT_INTERNAL_ERROR = 3,   /* a bug: please report the message */
} membptt_status;

/* How a budget is given to membptt_plan_make. */
typedef enum membptt_unit {
  MEMBPTT_UNIT_UNITS = 0,   /* hidden-state units (the command line's --unit slots) */
  MEMBPTT_UNIT_PERCENT = 1, /* percent of plain BPTT's alpha * length units */
  MEMBPTT_UNIT_BYTES = 2,   /* bytes, with hidden_bytes the size of one hidden state */
} membptt_unit;

/* The operations of a schedule (include/membptt/schedule/op.hpp; steps are numbered 1..length). */
typedef enum membptt_op_kind {
  MEMBPTT_OP_ADVANCE = 0,        /* run steps t .. t+count-1 from the cursor, keeping nothing */
  MEMBPTT_OP_ADVANCE_HIDDEN = 1, /* run step t, push h_t at `slot` */
  MEMBPTT_OP_ADVANCE_RECORD = 2, /* run step t, push its internal state at `slot` */
  MEMBPTT_OP_BACKWARD = 3,       /* backward step t from the internal state at `slot`, then pop it */
  MEMBPTT_OP_RESTORE = 4,        /* cursor = the state at position t held at `slot` */
  MEMBPTT_OP_POP = 5,            /* pop the hidden state at `slot` */
} membptt_op_kind;

typedef struct membptt_op {
  int64_t kind;  /* a membptt_op_kind */
  int64_t t;     /* step (restore: position 0..length) */
  int64_t slot;  /* stack slot; -1 for advance */
  int64_t count; /* advance: number of steps; otherwise 1 */
} membptt_op;

typedef struct membptt_plan membptt_plan; /* opaque */

/* MEMBPTT_API_VERSION of the library loaded. */
MEMBPTT_API int32_t membptt_api_version(void);

/* This thread's message for the last call that failed ("" if none). */
MEMBPTT_API const char* membptt_last_error(void);

/* The best plan. policy: a policy name ("full", "msm", "hsm", "revolve", "ism", "chen-sqrt",
 * "chen-recursive", "quadratic") or "auto" (NULL too): plain BPTT when the budget holds it, else
 * MSM, else (an MSM table too large) revolve. hidden_bytes is read for MEMBPTT_UNIT_BYTES only.
 * On success *out owns a plan to release with membptt_plan_free. */
MEMBPTT_API membptt_status membptt_plan_make(const char* policy, int64_t length, double memory, int32_t unit, double alpha,
                                 double beta, double hidden_bytes, membptt_plan** out);
MEMBPTT_API void membptt_plan_free(membptt_plan* plan);

/* The plan's policy name (static storage; never "auto"). */
MEMBPTT_API const char* membptt_plan_policy(const membptt_plan* plan);
MEMBPTT_API int64_t membptt_plan_length(const membptt_plan* plan);
MEMBPTT_API int64_t membptt_plan_forward_steps(const membptt_plan* plan);
MEMBPTT_API double membptt_plan_peak_units(const membptt_plan* plan);   /* most memory the schedule holds */
MEMBPTT_API double membptt_plan_budget_units(const membptt_plan* plan); /* the budget it was made for */
MEMBPTT_API double membptt_plan_alpha(const membptt_plan* plan);
MEMBPTT_API double membptt_plan_beta(const membptt_plan* plan);
MEMBPTT_API double membptt_plan_time_ratio(const membptt_plan* plan);   /* predicted, against plain BPTT */
MEMBPTT_API int32_t membptt_plan_max_slots(const membptt_plan* plan);   /* deepest stack, h_0's slot included */

/* Writes the first min(capacity, total) operations into ops and the total into *total. ops may be
 * NULL when capacity is 0 (to count). Each call unrolls the schedule anew. */
MEMBPTT_API membptt_status membptt_plan_ops(const membptt_plan* plan, membptt_op* ops, int64_t capacity, int64_t* total);

/* The cost curve of one policy: forward_steps[i] = the plan's cost at budgets[i] units, or -1
 * where budgets[i] is below the policy's least. */
MEMBPTT_API membptt_status membptt_curve(const char* policy, int64_t length, double alpha, const double* budgets, int64_t n,
                             int64_t* forward_steps);

/* The least budget in units in which `policy` ("auto" is MSM's) runs `length` steps. */
MEMBPTT_API membptt_status membptt_least_budget(const char* policy, int64_t length, double alpha, double* units);

/* A budget as users write it: bytes ("64MiB", "500KB", "1e6") or a share of plain BPTT's memory
 * ("5%"). *value is bytes, or the percentage when *is_percent is 1. */
MEMBPTT_API membptt_status membptt_parse_budget(const char* text, double* value, int32_t* is_percent);

#ifdef __cplusplus
}
#endif

#endif /* MEMBPTT_H */
