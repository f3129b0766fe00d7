/* workload_sweep.c - the mappings of a document (sections, duplicate keys)
 * and the `sweep:` section: dimensions, `together` groups, case labels. */
#include "workload_internal.h"

/* ------------------------------------------------------------------ mappings */

static int section_keys(const char *section, const char **out, int max)
{
    int n = 0;
    size_t sl = strlen(section);
    for (int i = 0; i < NFIELDS && n < max; i++) {
        const char *p = wl_fields[i].path;
        if (!strncmp(p, section, sl) && p[sl] == '.' && !strchr(p + sl + 1, '.'))
            out[n++] = p + sl + 1;
    }
    return n;
}

/* Where does a bare leaf name live?  ("heads" -> "attention.heads") */
const char *wl_leaf_home(const char *leaf)
{
    const char *found = NULL;
    for (int i = 0; i < NFIELDS; i++) {
        const char *dot = strrchr(wl_fields[i].path, '.');
        if (dot && !strcmp(dot + 1, leaf)) {
            if (found)
                return NULL; /* ambiguous */
            found = wl_fields[i].path;
        }
    }
    return found;
}

fa4cp_status wl_check_dups(const ctx *x, yaml_node_t *map, const char *path)
{
    yaml_node_pair_t *p0 = map->data.mapping.pairs.start, *pe = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = p0; p < pe; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        const char *ks = wl_scalar(k);
        if (!ks)
            return wl_nerr(x, k, path, "expected a key name, got %s", wl_node_kind(k));
        for (yaml_node_pair_t *q = p0; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
            const char *qs = wl_scalar(qk);
            if (qs && !strcmp(qs, ks)) {
                char kp[PATHLEN];
                snprintf(kp, sizeof kp, "%s%s%s", path, *path ? "." : "", ks);
                return wl_nerr(x, k, kp, "duplicate key '%s' (first given at line %d)", ks,
                            (int)qk->start_mark.line + 1);
            }
        }
    }
    return FA4CP_OK;
}

/* map must be a YAML mapping ("expected <what>, got ...") without duplicate keys */
static fa4cp_status mapping(const ctx *x, yaml_node_t *map, const char *path, const char *what)
{
    if (map->type != YAML_MAPPING_NODE)
        return wl_nerr(x, map, path, "expected %s, got %s", what, wl_node_kind(map));
    return wl_check_dups(x, map, path);
}

fa4cp_status wl_load_section(const ctx *x, draft *d, const char *section, yaml_node_t *map)
{
    fa4cp_status st = mapping(x, map, section, "a mapping of keys (check the indentation)");
    if (st)
        return st;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = wl_scalar(k);
        char path[PATHLEN];
        snprintf(path, sizeof path, "%s.%s", section, ks);
        const field *f = wl_field_by_path(path);
        if (!f || strchr(ks, '.')) {
            const char *keys[32];
            int nk = section_keys(section, keys, 32);
            const char *near = wl_nearest(ks, keys, nk);
            const char *home = wl_leaf_home(ks);
            if (near)
                return wl_nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
            if (home && strncmp(home, section, strlen(section)))
                return wl_nerr(x, k, path, "unknown key '%s' in '%s:' (it belongs in '%s')", ks, section, home);
            char list[400];
            size_t at = 0;
            list[0] = 0;
            for (int i = 0; i < nk; i++)
                at += (size_t)snprintf(list + at, at < sizeof list ? sizeof list - at : 0, "%s%s",
                                       i ? ", " : "", keys[i]);
            return wl_nerr(x, k, path, "unknown key '%s'; '%s:' takes %s", ks, section, list);
        }
        st = wl_set_field(x, d, f, v, path);
        if (st)
            return st;
    }
    return FA4CP_OK;
}

/* ------------------------------------------------------------------ sweep */


static fa4cp_status sweep_key(const ctx *x, yaml_node_t *k, yaml_node_t *v, const char *prefix,
                              dim *dm)
{
    const char *ks = wl_scalar(k);
    char path[PATHLEN];
    snprintf(path, sizeof path, "%s.%s", prefix, ks);
    const field *f = wl_field_by_path(ks);
    if (!f) {
        const char *home = wl_leaf_home(ks);
        if (home && !strchr(ks, '.'))
            f = wl_field_by_path(home);
    }
    if (!f) {
        const char *paths[NFIELDS + 1];
        for (int i = 0; i < NFIELDS; i++)
            paths[i] = wl_fields[i].path;
        paths[NFIELDS] = "together";
        const char *near = wl_nearest(ks, paths, NFIELDS + 1);
        if (!near) {
            const char *dot = strrchr(ks, '.');
            const char *home = wl_leaf_home(dot ? dot + 1 : ks);
            near = home;
        }
        if (near)
            return wl_nerr(x, k, path, "unknown key '%s' (did you mean '%s'?)", ks, near);
        return wl_nerr(x, k, path,
                    "unknown key '%s': sweep keys are key paths such as cp.comm or attention.heads, or 'together'",
                    ks);
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return wl_nerr(x, v, path, "expected a list of values to sweep over, got %s", wl_node_kind(v));
    int nv = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (nv == 0)
        return wl_nerr(x, v, path, "the list of values is empty");
    if (dm->nkeys >= MAX_DIM_KEYS)
        return wl_nerr(x, k, path, "at most %d keys vary together", MAX_DIM_KEYS);
    for (int i = 0; i < dm->nkeys; i++)
        if (dm->f[i] == f)
            return wl_nerr(x, k, path, "'%s' is swept twice", f->path);
    if (dm->nkeys && nv != dm->nvalues)
        return wl_nerr(x, v, path,
                    "keys that vary together need lists of the same length: %d values here, %d for '%s'",
                    nv, dm->nvalues, dm->f[0]->path);
    dm->f[dm->nkeys] = f;
    snprintf(dm->path[dm->nkeys], PATHLEN, "%s", path);
    dm->list[dm->nkeys] = v;
    dm->nkeys++;
    dm->nvalues = nv;
    return FA4CP_OK;
}

static fa4cp_status load_together(const ctx *x, yaml_node_t *map, const char *path, dim *dims, int *ndims)
{
    fa4cp_status st = mapping(x, map, path, "a mapping of key: [values] that vary together");
    if (st)
        return st;
    if (*ndims >= MAX_DIMS)
        return wl_nerr(x, map, path, "at most %d sweep dimensions", MAX_DIMS);
    dim *dm = &dims[*ndims];
    memset(dm, 0, sizeof *dm);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        st = sweep_key(x, yaml_document_get_node(x->doc, p->key), yaml_document_get_node(x->doc, p->value),
                       path, dm);
        if (st)
            return st;
    }
    if (dm->nkeys == 0)
        return wl_nerr(x, map, path, "'together' needs at least one key");
    (*ndims)++;
    return FA4CP_OK;
}

fa4cp_status wl_load_sweep(const ctx *x, yaml_node_t *map, dim *dims, int *ndims)
{
    fa4cp_status st = mapping(x, map, "sweep", "a mapping of key: [values]");
    if (st)
        return st;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *ks = wl_scalar(k);
        if (!strcmp(ks, "together")) {
            if (v->type == YAML_SEQUENCE_NODE) {
                int idx = 0;
                for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
                     it++, idx++) {
                    char tp[PATHLEN];
                    snprintf(tp, sizeof tp, "sweep.together[%d]", idx);
                    st = load_together(x, yaml_document_get_node(x->doc, *it), tp, dims, ndims);
                    if (st)
                        return st;
                }
            } else {
                st = load_together(x, v, "sweep.together", dims, ndims);
                if (st)
                    return st;
            }
            continue;
        }
        if (*ndims >= MAX_DIMS)
            return wl_nerr(x, k, "sweep", "at most %d sweep dimensions", MAX_DIMS);
        dim *dm = &dims[*ndims];
        memset(dm, 0, sizeof *dm);
        st = sweep_key(x, k, v, "sweep", dm);
        if (st)
            return st;
        (*ndims)++;
    }
    /* one key swept in two places */
    for (int a = 0; a < *ndims; a++)
        for (int i = 0; i < dims[a].nkeys; i++)
            for (int b = 0; b <= a; b++)
                for (int j = 0; j < dims[b].nkeys; j++)
                    if ((b < a || j < i) && dims[a].f[i] == dims[b].f[j])
                        return wl_nerr(x, dims[a].list[i], dims[a].path[i], "'%s' is already swept at %s",
                                    dims[a].f[i]->path, dims[b].path[j]);
    return FA4CP_OK;
}

/* A short text of a value for case labels. */
void wl_node_text(yaml_document_t *doc, yaml_node_t *n, char *buf, size_t len)
{
    if (!n || len == 0) {
        if (len)
            buf[0] = 0;
        return;
    }
    if (n->type == YAML_SCALAR_NODE) {
        snprintf(buf, len, "%s", (const char *)n->data.scalar.value);
        return;
    }
    size_t at = 0;
    int first = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        at += (size_t)snprintf(buf + at, len - at, "[");
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top && at < len;
             it++) {
            char sub[64];
            wl_node_text(doc, yaml_document_get_node(doc, *it), sub, sizeof sub);
            at += (size_t)snprintf(buf + at, len - at, "%s%s", first ? "" : ",", sub);
            first = 0;
        }
        if (at < len)
            snprintf(buf + at, len - at, "]");
    } else if (n->type == YAML_MAPPING_NODE) {
        at += (size_t)snprintf(buf + at, len - at, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top && at < len; p++) {
            char k[64], v[64];
            wl_node_text(doc, yaml_document_get_node(doc, p->key), k, sizeof k);
            wl_node_text(doc, yaml_document_get_node(doc, p->value), v, sizeof v);
            at += (size_t)snprintf(buf + at, len - at, "%s%s:%s", first ? "" : ",", k, v);
            first = 0;
        }
        if (at < len)
            snprintf(buf + at, len - at, "}");
    }
}

