/* cp_config.h - the CP configuration: comm names and rules, in one table.
 *
 * Every rule about a comm shape (which names it goes by, whether it is
 * enabled, whether it supports a sliding window, whether it scatters heads
 * over the CP ranks) and the refusal text of a disabled shape live in
 * cp_config.c.  The workload loader, fa4cp-layout and the executor ask
 * these functions instead of comparing names.
 */
#ifndef FA4CP_CP_CONFIG_H
#define FA4CP_CP_CONFIG_H

#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fa4cp_cp_comm_info {
    fa4cp_cp_comm_type comm;
    const char *name;        /* canonical: what YAML, --comm and results write */
    const char *alias[3];    /* accepted by fa4cp_cp_comm_parse (NULL-terminated) */
    int enabled;             /* 0: known, always refused with `refusal` */
    int window;              /* supports a sliding window */
    int heads_scattered;     /* heads and kv_heads must be divisible by cp */
    int group_in_node;       /* the layout keeps a group inside a node where it can */
    const char *refusal;     /* why a disabled shape is refused */
} fa4cp_cp_comm_info;

/* The row of a comm shape (NULL for a value outside the enum). */
const fa4cp_cp_comm_info *fa4cp_cp_comm_info_of(fa4cp_cp_comm_type comm);
/* The canonical names of the enabled shapes, NULL-terminated ("p2p", ...). */
const char *const *fa4cp_cp_comm_names(void);
/* name -> comm: canonical names only when exact (the loader, fa4cp-layout),
 * aliases and any case too otherwise.  A disabled shape: FA4CP_ERR_UNSUPPORTED
 * with its refusal; an unknown name: FA4CP_ERR_INVALID. */
fa4cp_status fa4cp_cp_comm_lookup(const char *name, int exact, fa4cp_cp_comm_type *out);
/* The canonical name an alias stands for ("ring" -> "p2p"); NULL if none. */
const char *fa4cp_cp_comm_alias_of(const char *name);

/* The rules of a shape that involve the attention shape (cp > 1 or not is
 * the caller's choice):  */
int fa4cp_cp_comm_window_ok(fa4cp_cp_comm_type comm, int causal, int window_left,
                            int window_right);
int fa4cp_cp_comm_heads_ok(fa4cp_cp_comm_type comm, int heads, int cp);

/* The refusal of the shape alone (comm, heads, window), without lengths. */
fa4cp_status fa4cp_cp_check_shape(const fa4cp_cp_config *cfg, int cp_size);
/* fa4cp_cp_validate without the backend's table: the rules of the shape and
 * the lengths, which hold whatever runs it (the workload loader: a case is
 * well formed or not; whether its backend runs it is the runner's and
 * --dry-run's question, fa4cp_cp_check_backend). */
fa4cp_status fa4cp_cp_validate_shape(const fa4cp_cp_config *cfg, int cp_size, int batch,
                                     const int32_t *cu_seqlens, int seqlen);
/* Does cfg->backend run cfg's dtype and head dims (fa4cp_attn_supports)? */
fa4cp_status fa4cp_cp_check_backend(const fa4cp_cp_config *cfg);

#ifdef __cplusplus
}
#endif

#endif
