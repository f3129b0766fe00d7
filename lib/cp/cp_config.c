/* cp_config.c - the CP configuration: the one table of comm shapes (names,
 * aliases, rules, refusal texts), the layout names, and the refusals of a
 * config before anything is allocated (fa4cp_cp_check_shape, fa4cp_cp_validate).
 */
#include "cp_config.h"

#include <string.h>
#include <strings.h>

#define A2A_P2P_REFUSAL                                                                            \
    "cp.comm 'a2a+p2p' is disabled: the hierarchical a2a+p2p path is not validated; use p2p "      \
    "across nodes or a2a within a node"

/* The one table of comm shapes: names, rules, refusals. */
static const fa4cp_cp_comm_info comm_table[] = {
    /* comm, name, aliases, enabled, window, heads_scattered, group_in_node, refusal */
    {FA4CP_CP_P2P, "p2p", {"ring", NULL}, 1, 0, 0, 0, NULL},
    {FA4CP_CP_ALL_GATHER, "all_gather", {"allgather", NULL}, 1, 1, 0, 0, NULL},
    {FA4CP_CP_A2A, "a2a", {"ulysses", NULL}, 1, 1, 1, 1, NULL},
    {FA4CP_CP_A2A_P2P, "a2a+p2p", {"a2a_p2p", NULL}, 0, 1, 1, 1, A2A_P2P_REFUSAL},
};
#define NCOMM (sizeof comm_table / sizeof comm_table[0])

const fa4cp_cp_comm_info *fa4cp_cp_comm_info_of(fa4cp_cp_comm_type comm)
{
    for (size_t i = 0; i < NCOMM; i++)
        if (comm_table[i].comm == comm)
            return &comm_table[i];
    return NULL;
}

const char *const *fa4cp_cp_comm_names(void)
{
    static const char *names[NCOMM + 1];
    if (!names[0]) { /* a fixed table: every thread writes the same values */
        size_t n = 0;
        for (size_t i = 0; i < NCOMM; i++)
            if (comm_table[i].enabled)
                names[n++] = comm_table[i].name;
    }
    return names;
}

const char *fa4cp_cp_comm_name(fa4cp_cp_comm_type comm)
{
    const fa4cp_cp_comm_info *c = fa4cp_cp_comm_info_of(comm);
    return c ? c->name : "?";
}

const char *fa4cp_cp_comm_alias_of(const char *name)
{
    for (size_t i = 0; name && i < NCOMM; i++)
        for (int a = 0; comm_table[i].alias[a]; a++)
            if (strcmp(name, comm_table[i].alias[a]) == 0)
                return comm_table[i].name;
    return NULL;
}

fa4cp_status fa4cp_cp_comm_lookup(const char *name, int exact, fa4cp_cp_comm_type *out)
{
    if (!name || !out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "cp.comm: the name is NULL");
    for (size_t i = 0; i < NCOMM; i++) {
        const fa4cp_cp_comm_info *c = &comm_table[i];
        int hit = exact ? strcmp(name, c->name) == 0 : strcasecmp(name, c->name) == 0;
        for (int a = 0; !hit && c->alias[a]; a++)
            hit = exact && c->enabled ? 0 : strcasecmp(name, c->alias[a]) == 0;
        if (!hit)
            continue;
        if (!c->enabled)
            return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "%s", c->refusal);
        *out = c->comm;
        return FA4CP_OK;
    }
    return fa4cp_set_error(FA4CP_ERR_INVALID,
                           "cp.comm '%s' is not known: expected p2p, all_gather or a2a", name);
}

fa4cp_status fa4cp_cp_comm_parse(const char *name, fa4cp_cp_comm_type *out)
{
    return fa4cp_cp_comm_lookup(name, 0, out);
}

int fa4cp_cp_comm_window_ok(fa4cp_cp_comm_type comm, int causal, int window_left, int window_right)
{
    const fa4cp_cp_comm_info *c = fa4cp_cp_comm_info_of(comm);
    return !c || c->window || (window_left < 0 && (causal || window_right < 0));
}

int fa4cp_cp_comm_heads_ok(fa4cp_cp_comm_type comm, int heads, int cp)
{
    const fa4cp_cp_comm_info *c = fa4cp_cp_comm_info_of(comm);
    return !c || !c->heads_scattered || (cp > 0 && heads % cp == 0);
}

const char *fa4cp_cp_format_name(fa4cp_cp_format f)
{
    return f == FA4CP_CP_THD ? "thd" : f == FA4CP_CP_BSHD ? "bshd" : "?";
}

fa4cp_status fa4cp_cp_format_parse(const char *name, fa4cp_cp_format *out)
{
    if (name && out && strcasecmp(name, "thd") == 0) {
        *out = FA4CP_CP_THD;
        return FA4CP_OK;
    }
    if (name && out && strcasecmp(name, "bshd") == 0) {
        *out = FA4CP_CP_BSHD;
        return FA4CP_OK;
    }
    return fa4cp_set_error(FA4CP_ERR_INVALID, "layout '%s' is not known: expected thd or bshd",
                           name ? name : "(null)");
}

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fa4cp_set_error(FA4CP_ERR_INVALID, __VA_ARGS__);                                \
    } while (0)

fa4cp_status fa4cp_cp_check_shape(const fa4cp_cp_config *cfg, int cp)
{
    NEED(cfg, "cp config is NULL");
    NEED(cfg->struct_size == sizeof(fa4cp_cp_config),
         "fa4cp_cp_config.struct_size is %zu, expected %zu: initialise it with FA4CP_CP_CONFIG_INIT "
         "and rebuild against this fa4cp.h",
         cfg->struct_size, sizeof(fa4cp_cp_config));
    NEED(cp >= 1, "cp size is %d: it must be >= 1", cp);
    const fa4cp_cp_comm_info *info = fa4cp_cp_comm_info_of(cfg->comm);
    NEED(info, "cp.comm %d is not a fa4cp_cp_comm_type", (int)cfg->comm);
    if (!info->enabled)
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED, "%s", info->refusal);
    NEED(cfg->format == FA4CP_CP_THD || cfg->format == FA4CP_CP_BSHD,
         "cp layout %d is neither thd nor bshd", (int)cfg->format);
    NEED(cfg->dtype >= FA4CP_BF16 && cfg->dtype <= FA4CP_FP64, "dtype %d is not a fa4cp_dtype",
         (int)cfg->dtype);
    NEED(cfg->heads > 0 && cfg->kv_heads > 0 && cfg->heads % cfg->kv_heads == 0,
         "heads %d over kv_heads %d: both must be >= 1 and heads %% kv_heads == 0", cfg->heads,
         cfg->kv_heads);
    NEED(cfg->head_dim > 0, "head_dim is %d: it must be >= 1", cfg->head_dim);
    NEED(cfg->head_dim_v >= 0, "head_dim_v is %d: it must be >= 1 (or 0 for head_dim)", cfg->head_dim_v);
    NEED(cfg->window_left >= -1 && cfg->window_right >= -1,
         "window (%d, %d): each side must be >= 0, or -1 for unbounded", cfg->window_left,
         cfg->window_right);
    if (!fa4cp_cp_comm_window_ok(cfg->comm, cfg->causal, cfg->window_left, cfg->window_right))
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cp.comm 'p2p' does not support a sliding window (window_left %d, "
                               "window_right %d): the shapes that do are 'all_gather' and 'a2a'",
                               cfg->window_left, cfg->window_right);
    if (!fa4cp_cp_comm_heads_ok(cfg->comm, cfg->heads, cp) ||
        !fa4cp_cp_comm_heads_ok(cfg->comm, cfg->kv_heads, cp))
        return fa4cp_set_error(FA4CP_ERR_UNSUPPORTED,
                               "cp.comm 'a2a' needs heads %% cp == 0 and kv_heads %% cp == 0, but "
                               "heads is %d, kv_heads %d and cp %d: use p2p or all_gather, or a cp "
                               "size that divides both",
                               cfg->heads, cfg->kv_heads, cp);
    return FA4CP_OK;
}

fa4cp_status fa4cp_cp_check_backend(const fa4cp_cp_config *cfg)
{
    /* the one table of the attention layer; the CP calls run the backward
     * with the same head dims, so ask for both */
    return fa4cp_attn_supports(cfg->backend, cfg->dtype, cfg->head_dim, cfg->head_dim_v, 1);
}

fa4cp_status fa4cp_cp_validate(const fa4cp_cp_config *cfg, int cp, int batch,
                               const int32_t *cu_seqlens, int seqlen)
{
    fa4cp_status st = fa4cp_cp_validate_shape(cfg, cp, batch, cu_seqlens, seqlen);
    return st != FA4CP_OK ? st : fa4cp_cp_check_backend(cfg);
}

fa4cp_status fa4cp_cp_validate_shape(const fa4cp_cp_config *cfg, int cp, int batch,
                                     const int32_t *cu_seqlens, int seqlen)
{
    fa4cp_status st = fa4cp_cp_check_shape(cfg, cp);
    if (st != FA4CP_OK)
        return st;
    NEED(batch >= 0, "batch is %d: it must be >= 0", batch);
    if (cfg->format == FA4CP_CP_BSHD) {
        NEED(seqlen >= 0, "seqlen is %d: it must be >= 0", seqlen);
        NEED(seqlen % (2 * cp) == 0,
             "seqlen %d is not divisible by 2*cp = %d (each rank holds 2 of %d chunks): use %d or "
             "%d",
             seqlen, 2 * cp, 2 * cp, seqlen - seqlen % (2 * cp), seqlen + 2 * cp - seqlen % (2 * cp));
        NEED((int64_t)batch * seqlen <= INT32_MAX, "batch %d x seqlen %d rows overflow int32", batch,
             seqlen);
        return FA4CP_OK;
    }
    st = fa4cp_thd_check(batch, cu_seqlens, NULL, cp);
    if (st != FA4CP_OK)
        return fa4cp_error_context(st, "cp %d", cp);
    return FA4CP_OK;
}

