/* membptt's C API: the one header bindings see (Python's ctypes, and any other language).
 *
 * Plain C, stable: opaque handles, create/free pairs, and every call returns a membptt_status.
 * Nothing throws across this boundary; on failure membptt_last_error() returns a one-line message
 * (this thread's, valid until its next call into the library) that names the value at fault and
 * what is allowed, as the command line prints it.
 *
 * Units are the planner's (docs/planner.md): memory in hidden-state units (an internal state is
 * alpha units; plain BPTT needs alpha * length), time in forward steps, the first pass included.
 * The recurrent network (membptt_rnn) counts memory in bytes.
 *
 * Built as libmembptt.so (CMake target membptt_c). */
#ifndef MEMBPTT_H
#define MEMBPTT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMBPTT_API_VERSION 3

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
  MEMBPTT_OP_KEEP = 6,           /* online: push the cursor's state h_t (t: its position) at `slot` */
  MEMBPTT_OP_DROP = 7,           /* online: remove the hidden state h_t at `slot` (below the top);
                                    the hidden states above move down one slot, in order */
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
 * MSM (exact, or past the exact table a blocked plan: membptt_plan_optimal). hidden_bytes is read for MEMBPTT_UNIT_BYTES only.
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
/* 1 when forward_steps is the least the policy allows; 0 for MSM past the exact table (a blocked
 * plan), whose distance to the optimum lower_bound bounds: every MSM plan within the budget runs at
 * least lower_bound forward steps (= forward_steps when optimal). */
MEMBPTT_API int32_t membptt_plan_optimal(const membptt_plan* plan);
MEMBPTT_API int64_t membptt_plan_lower_bound(const membptt_plan* plan);

/* Writes the first min(capacity, total) operations into ops and the total into *total. ops may be
 * NULL when capacity is 0 (to count). Each call unrolls the schedule anew. */
MEMBPTT_API membptt_status membptt_plan_ops(const membptt_plan* plan, membptt_op* ops, int64_t capacity, int64_t* total);

/* The cost curve of one policy: forward_steps[i] = the plan's cost at budgets[i] units, or -1
 * where budgets[i] is below the policy's least. */
MEMBPTT_API membptt_status membptt_curve(const char* policy, int64_t length, double alpha, const double* budgets, int64_t n,
                             int64_t* forward_steps);

/* The least budget in units in which `policy` ("auto" is MSM's) runs `length` steps. */
MEMBPTT_API membptt_status membptt_least_budget(const char* policy, int64_t length, double alpha, double* units);

/* ---- Online checkpointing: the length known only when the sequence ends (plan/online.hpp) ------
 *
 * The schedule is made as the steps arrive and never looks ahead. For each step t that is not the
 * last, membptt_online_push gives the ops that run it (at most 3: a DROP, a KEEP of h_{t-1}, then
 * ADVANCE t); for the last, membptt_online_finish, after which membptt_online_next gives the rest
 * (the last step's record and backward, then the backward phase). Memory in units, as
 * membptt_plan_make's MEMBPTT_UNIT_UNITS: at every op the stored states hold at most budget_units. */
typedef struct membptt_online membptt_online; /* opaque */

/* backward: the plans that reverse the segments between checkpoints once the length is known:
 * "msm" (NULL too; HSM when its table would be too large) or "hsm" (Revolve's closed form).
 * A budget below alpha (one internal state) or alpha outside 1..1e6: MEMBPTT_INVALID_ARGUMENT. */
MEMBPTT_API membptt_status membptt_online_create(double budget_units, double alpha, const char* backward,
                                                 membptt_online** out);
MEMBPTT_API void membptt_online_free(membptt_online* online);
/* Step steps+1 is not the last: writes its ops into ops[0..2] and their number into *n. */
MEMBPTT_API membptt_status membptt_online_push(membptt_online* online, membptt_op* ops, int64_t* n);
/* Step steps+1 is the last: *length receives T and *forward_steps the whole schedule's cost (each optional). */
MEMBPTT_API membptt_status membptt_online_finish(membptt_online* online, int64_t* length, int64_t* forward_steps);
/* After finish: writes the next min(capacity, what is left) ops and their number into *n (0: the end). */
MEMBPTT_API membptt_status membptt_online_next(membptt_online* online, membptt_op* ops, int64_t capacity, int64_t* n);
/* The hidden slots (h_0's included) the budget gives, and the length up to which the policy's
 * cost is the offline HSM optimum, (m+1)(m+2)/2. */
MEMBPTT_API int64_t membptt_online_slots(const membptt_online* online);
MEMBPTT_API int64_t membptt_online_optimal_up_to(const membptt_online* online);
/* The online policy's cost for a sequence that turns out to have `length` steps (backward as above). */
MEMBPTT_API membptt_status membptt_online_cost(int64_t length, double budget_units, double alpha, const char* backward,
                                               int64_t* forward_steps);

/* A budget as users write it: bytes ("64MiB", "500KB", "1e6") or a share of plain BPTT's memory
 * ("5%"). *value is bytes, or the percentage when *is_percent is 1. */
MEMBPTT_API membptt_status membptt_parse_budget(const char* text, double* value, int32_t* is_percent);

/* ---- A stack of recurrent layers trained by a plan (what membptt.torch's modules call) ----------
 *
 * membptt_rnn: LSTM, GRU or RNN layers with PyTorch's equations and parameters
 * (torch.nn.LSTM / GRU / RNN, batch_first=False; with membptt_rnn_options: bias=False, the relu
 * RNN, LSTM projections, dropout between layers, both directions; include/membptt/cells/
 * recurrent_net.hpp and, bidirectional, include/membptt/exec/bidirectional.hpp), a
 * memory budget and a policy. Its plan for each (length, batch) is made once
 * and kept. Buffers cross by pointer, host memory, contiguous, row-major, of the dtype given at
 * creation:
 *   weights      every weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k} back
 *                to back, in that order, layer by layer (PyTorch's state-dict order; no bias_* with
 *                bias 0, weight_hr only with proj_size > 0; bidirectional: each layer's five
 *                followed by their *_reverse); membptt_rnn_weight_count elements
 *   input        [length x batch x input_size]   (time-major)
 *   output       [length x batch x D*R]  (the top layer's h_t, as PyTorch's output; R = proj_size
 *                if > 0, else hidden_size; D = 2 when bidirectional, else 1)
 *   carry        h of every layer [D*num_layers x batch x R], then for the LSTM c [D*num_layers x
 *                batch x hidden_size] (PyTorch's h_0 then c_0); membptt_rnn_carry_count elements
 * A forward pass run for training returns a membptt_pass holding the plan's stored states until
 * membptt_pass_backward: that and its fixed workspace are the memory the budget bounds (bidirectional
 * with two layers or more, besides every chain's plan, the inner layers' output sequences: the
 * least budget then grows with the length). One handle
 * may serve several passes in flight; calls on one handle are serialised by it. */

typedef enum membptt_dtype {
  MEMBPTT_FLOAT32 = 0,
  MEMBPTT_FLOAT64 = 1,
} membptt_dtype;

typedef struct membptt_rnn membptt_rnn;   /* opaque */
typedef struct membptt_pass membptt_pass; /* opaque: a forward pass waiting for its backward */

typedef struct membptt_pass_stats {
  int64_t forward_steps;         /* cell steps run forward so far (forward and backward parts) */
  int64_t backward_steps;
  int64_t planned_forward_steps; /* the plan's cost: forward_steps once the backward is done */
  int64_t peak_arena_bytes;      /* most bytes the stored states took so far */
  int64_t arena_bytes;           /* bytes of the arena (the plan's peak) */
  int64_t workspace_bytes;       /* fixed bytes besides: cursor, carry gradient, zero h_0, scratch (bidirectional: and the held sequences) */
  double budget_bytes;           /* the budget the plan was made for (plain BPTT's memory: no budget) */
} membptt_pass_stats;

/* cell: "lstm", "gru" or "rnn" (tanh). memory: a budget as membptt_parse_budget reads it ("64MiB",
 * "5%"), or NULL for none (plain BPTT). policy: as membptt_plan_make ("auto" or NULL: the best that
 * fits). beta: the cost of a backward step in forward steps (the planner's; 2 if unsure).
 * The budget is checked against each (length, batch) when its plan is made. */
MEMBPTT_API membptt_status membptt_rnn_create(const char* cell, int64_t input_size, int64_t hidden_size,
                                              int64_t num_layers, int32_t dtype, const char* memory,
                                              const char* policy, double beta, membptt_rnn** out);

/* PyTorch's other recurrent options. Fields left as membptt_rnn_options_default sets them are
 * torch.nn's defaults; an option the cells do not have yet is refused (MEMBPTT_INVALID_ARGUMENT,
 * one line naming it). */
typedef struct membptt_rnn_options {
  int32_t bias;             /* 1 (default): b_ih, b_hh in every layer; 0: none (bias=False) */
  int32_t bidirectional;    /* 0 (default) or 1: every layer also runs backward in time; output
                             * [length x batch x 2R], carries of 2 num_layers entries in PyTorch's
                             * order (layer-major, forward then reverse) */
  int64_t proj_size;        /* 0 (default) or, for "lstm", 1 .. hidden_size - 1: h = W_hr (o * tanh(c)) */
  double dropout;           /* 0 (default) to 1: dropout between layers while training (set_dropout) */
  const char* nonlinearity; /* "tanh" (default; NULL too) or "relu": cell "rnn" only */
} membptt_rnn_options;

MEMBPTT_API void membptt_rnn_options_default(membptt_rnn_options* options);

/* membptt_rnn_create with options (NULL: the defaults). */
MEMBPTT_API membptt_status membptt_rnn_create_ex(const char* cell, int64_t input_size, int64_t hidden_size,
                                                 int64_t num_layers, const membptt_rnn_options* options,
                                                 int32_t dtype, const char* memory, const char* policy,
                                                 double beta, membptt_rnn** out);
MEMBPTT_API void membptt_rnn_free(membptt_rnn* rnn); /* passes still in flight stay valid */

/* Dropout between layers (options.dropout > 0, two layers or more) for the forward calls that
 * follow: training 1 with masks from `seed`, 0 off (the default: inference). A pass keeps the seed
 * it started with until its backward. Masks: include/membptt/cells/dropout.hpp (counter-based,
 * keyed by seed, layer, step and element; not PyTorch's draws). */
MEMBPTT_API membptt_status membptt_rnn_set_dropout(membptt_rnn* rnn, int32_t training, uint64_t seed);

/* keep[k] = 1 where element k of layer `layer`'s input mask at step `step` (0-based) is kept under
 * `seed` and probability p, else 0; k < count. The masks the cells draw (for tests and oracles). */
MEMBPTT_API membptt_status membptt_dropout_keep(uint64_t seed, int64_t layer, int64_t step, int64_t count, double p,
                                                uint8_t* keep);
MEMBPTT_API int64_t membptt_rnn_weight_count(const membptt_rnn* rnn);
MEMBPTT_API int64_t membptt_rnn_carry_count(const membptt_rnn* rnn, int64_t batch);

/* The plan used for (length, batch), as a new handle (free it with membptt_plan_free); *budget_bytes
 * and *plain_bytes (each optional): the budget in bytes and plain BPTT's memory in bytes (both
 * counting the workspace). A budget below the least that works: MEMBPTT_INVALID_ARGUMENT naming
 * that least in bytes. */
MEMBPTT_API membptt_status membptt_rnn_plan(membptt_rnn* rnn, int64_t length, int64_t batch, membptt_plan** out,
                                            double* budget_bytes, double* plain_bytes);

/* The forward pass over `length` steps of `batch` sequences: writes output and final_carry (NULL:
 * not written) from input and h0 (NULL: zeros). With pass NULL it only infers: nothing is kept and
 * no plan is made. Otherwise it runs the plan up to its first backward step and *pass holds what
 * the backward needs; input and h0 must then stay valid and unchanged until the backward. */
MEMBPTT_API membptt_status membptt_rnn_forward(membptt_rnn* rnn, int64_t length, int64_t batch, const void* weights,
                                               const void* input, const void* h0, void* output, void* final_carry,
                                               membptt_pass** pass);

/* The rest of the plan: from doutput = dL/d output and dfinal_carry = dL/d final carry (each NULL:
 * zeros), writes dinput = dL/d input, dh0 = dL/d h0 and dweights = dL/d weights (each NULL: not
 * wanted; dweights is overwritten, not added to). weights must equal the forward's. Once only. */
MEMBPTT_API membptt_status membptt_pass_backward(membptt_pass* pass, const void* weights, const void* doutput,
                                                 const void* dfinal_carry, void* dinput, void* dh0, void* dweights);
MEMBPTT_API membptt_status membptt_pass_stats_get(const membptt_pass* pass, membptt_pass_stats* out);
MEMBPTT_API void membptt_pass_free(membptt_pass* pass);

/* Threads the CPU cells' matrix products run on (process-wide; default: OpenBLAS's count when first
 * asked, so OPENBLAS_NUM_THREADS sets it). membptt runs them on threads of its own, with OpenBLAS
 * single-threaded inside them and its setting put back after: a host's own OpenBLAS products keep
 * theirs. A product's bits do not depend on the count. */
MEMBPTT_API int32_t membptt_num_threads(void);
MEMBPTT_API membptt_status membptt_set_num_threads(int32_t n);

#ifdef __cplusplus
}
#endif

#endif /* MEMBPTT_H */
