/* workload.c - YAML workload files -> validated cases.
 *
 * The loader is table-driven: every key of the schema (docs/workloads.md) is
 * a row of `fields` with its path ("attention.heads"), its kind and its
 * limits.  The same setter serves the document, the `sweep:` lists and the
 * command-line overrides, so a wrong value is reported the same way
 * wherever it comes from: "FILE:LINE:COL: key.path: expected ..., got ...".
 * A field remembers where it was last set; the case checks that relate
 * several fields (a window with p2p, heads for a2a, lengths for 2*cp) point
 * at the line that made the case impossible.  Nothing here allocates more
 * than the cases themselves; the limits (MAX_*) keep a hostile file from
 * asking for more.
 */
#include "workload_internal.h"

#include <sys/stat.h>

/* Why a scalar cannot be a name or a description (it goes into records, tables
 * and file names), or NULL: a NUL ("\0" would cut it short) or a control
 * character (C0, DEL or C1).  The YAML reader already refused bad UTF-8. */
static const char *text_problem(const yaml_node_t *n)
{
    static _Thread_local char why[128];
    const unsigned char *s = (const unsigned char *)wl_scalar(n);
    size_t len = n->data.scalar.length, chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = s[i];
        if (c == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            c = s[i + 1]; /* U+0080..U+009F */
        else if (c >= 0x80 && (c & 0xc0) == 0x80)
            continue; /* a continuation byte of the character counted before */
        chars++;
        if (c == 0) {
            snprintf(why, sizeof why, "contains a NUL character (\\0) at character %zu: "
                     "a name is text without control characters", chars);
            return why;
        }
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f)) {
            snprintf(why, sizeof why, "contains the control character U+%04X at character %zu: "
                     "a name is text without control characters", c, chars);
            return why;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ documents */

static void draft_defaults(draft *d)
{
    memset(d, 0, sizeof *d);
    fa4cp_case *c = &d->c;
    c->dtype = FA4CP_BF16;
    c->causal = 1;
    c->window_left = c->window_right = -1;
    c->dist = FA4CP_SEQ_EXPLICIT;
    c->gen_multiple_of = 1;
    c->cp = 1;
    c->comm = FA4CP_CP_P2P;
    c->backend = FA4CP_BACKEND_CUDA;
    c->warmup = 2;
    c->iters = 10;
    c->backward = 1;
    c->check = FA4CP_CHECK_SAMPLED;
    c->samples = 8;
    c->seed = 42;
    c->timeout_s = 300;
}

static fa4cp_status draft_copy(draft *dst, const draft *src)
{
    *dst = *src;
    dst->list = NULL;
    if (src->nlist) {
        dst->list = malloc(sizeof(int32_t) * (size_t)src->nlist);
        if (!dst->list)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
        memcpy(dst->list, src->list, sizeof(int32_t) * (size_t)src->nlist);
    }
    return FA4CP_OK;
}

static fa4cp_status push_case(fa4cp_workload *w, fa4cp_case *c)
{
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        fa4cp_case *nc = realloc(w->cases, sizeof(fa4cp_case) * (size_t)cap);
        if (!nc)
            return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for %d cases", cap);
        w->cases = nc;
        w->cap = cap;
    }
    w->cases[w->n++] = *c;
    return FA4CP_OK;
}

/* The field an override sets (a bare leaf name finds its section); NULL if none. */
static const field *override_field(const fa4cp_override *o)
{
    const field *f = wl_field_by_path(o->key);
    if (!f) {
        const char *home = wl_leaf_home(o->key);
        if (home && !strchr(o->key, '.'))
            f = wl_field_by_path(home);
    }
    return f;
}

/* The shape of a YAML text before it is loaded: at most MAX_DEPTH nested
 * collections, counted on the parser's events, which stops at the first
 * level too deep (O(size) work; a syntax error is left to the loader, which
 * reports it with its mark). */
static fa4cp_status check_depth(const char *name, const unsigned char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    fa4cp_status st = FA4CP_OK;
    int depth = 0;
    if (!yaml_parser_initialize(&p))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&p, buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            break;
        yaml_event_type_t type = ev.type;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                     "%s:%d:%d: nested deeper than %d levels: a workload is a few levels of "
                                     "mappings and lists (docs/workloads.md); refused before loading",
                                     name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, MAX_DEPTH);
                yaml_event_delete(&ev);
                break;
            }
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return st;
}

/* Apply one override: its value is parsed as YAML, so lists work too. */
static fa4cp_status apply_override(draft *d, const fa4cp_override *o)
{
    const field *f = override_field(o);
    if (!f) {
        const char *paths[NFIELDS];
        for (int i = 0; i < NFIELDS; i++)
            paths[i] = wl_fields[i].path;
        const char *near = wl_nearest(o->key, paths, NFIELDS);
        return fa4cp_set_error(FA4CP_ERR_INVALID, "command line: unknown key '%s'%s%s%s", o->key,
                               near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    fa4cp_status st = check_depth("command line", (const unsigned char *)o->value, strlen(o->value));
    if (st)
        return st;
    if (!yaml_parser_initialize(&parser))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "yaml parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)o->value, strlen(o->value));
    if (!yaml_parser_load(&parser, &doc)) {
        st = fa4cp_set_error(FA4CP_ERR_INVALID, "command line: %s=%s: %s", o->key, o->value,
                             parser.problem ? parser.problem : "not a YAML value");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    ctx x = {"command line", &doc};
    if (!root) {
        static yaml_node_t empty;
        empty.type = YAML_SCALAR_NODE;
        empty.data.scalar.value = (yaml_char_t *)"";
        root = &empty;
    }
    st = wl_set_field(&x, d, f, root, f->path);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

static fa4cp_status load_document(const char *file, int docno, yaml_document_t *doc, const fa4cp_override *ov,
                                  int nov, fa4cp_workload *w, int *seqs_left)
{
    ctx x = {file, doc};
    yaml_node_t *root = yaml_document_get_root_node(doc);
    draft base, cur;
    dim dims[MAX_DIMS];
    int ndims = 0;
    fa4cp_status st = FA4CP_OK;
    draft_defaults(&base);
    memset(&cur, 0, sizeof cur);
    if (root->type != YAML_MAPPING_NODE)
        return wl_nerr(&x, root, "", "a workload document is a mapping (version:, attention:, cp:, run:, ...), got %s",
                    wl_node_kind(root));
    FA4CP_TRY(wl_check_dups(&x, root, ""));
    /* name default: the file's base name without .yaml */
    const char *slash = strrchr(file, '/');
    snprintf(base.c.name, sizeof base.c.name, "%s", slash ? slash + 1 : file);
    char *dot = strrchr(base.c.name, '.');
    if (dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml")))
        *dot = 0;
    yaml_node_t *version = NULL, *sweep = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        const char *ks = wl_scalar(k);
        if (!strcmp(ks, "version")) {
            version = v;
            long long ver;
            if (wl_parse_ll(wl_scalar(v), &ver))
                FA4CP_TRY(wl_nerr(&x, v, "version", "expected the schema version 1, got %s%s%s",
                               wl_scalar(v) ? "'" : "", wl_scalar(v) ? wl_scalar(v) : wl_node_kind(v), wl_scalar(v) ? "'" : ""));
            if (ver != 1)
                FA4CP_TRY(wl_nerr(&x, v, "version",
                               "schema version %lld is not known to fa4cp %s (it reads version 1)", ver,
                               fa4cp_version()));
        } else if (!strcmp(ks, "name") || !strcmp(ks, "description")) {
            if (!wl_scalar(v))
                FA4CP_TRY(wl_nerr(&x, v, ks, "expected a string, got %s", wl_node_kind(v)));
            const char *bad = text_problem(v);
            if (bad)
                FA4CP_TRY(wl_nerr(&x, v, ks, "%s", bad));
            if (!strcmp(ks, "name")) {
                if (!*wl_scalar(v) || strlen(wl_scalar(v)) >= sizeof base.c.name)
                    FA4CP_TRY(wl_nerr(&x, v, ks, "expected a name of 1 to %d characters",
                                   (int)sizeof base.c.name - 1));
                snprintf(base.c.name, sizeof base.c.name, "%s", wl_scalar(v));
            }
        } else if (!strcmp(ks, "attention") || !strcmp(ks, "cp") || !strcmp(ks, "run") || !strcmp(ks, "gate")) {
            FA4CP_TRY(wl_load_section(&x, &base, ks, v));
        } else if (!strcmp(ks, "sweep")) {
            sweep = v;
        } else {
            const char *near = wl_nearest(ks, wl_top_keys, 8);
            const char *home = wl_leaf_home(ks);
            if (near)
                FA4CP_TRY(wl_nerr(&x, k, ks, "unknown key '%s' (did you mean '%s'?)", ks, near));
            if (home)
                FA4CP_TRY(wl_nerr(&x, k, ks, "unknown top-level key '%s' (did you mean '%s'? it belongs in the '%.*s:' section)",
                               ks, home, (int)(strchr(home, '.') - home), home));
            FA4CP_TRY(wl_nerr(&x, k, ks,
                           "unknown top-level key '%s'; expected version, name, description, attention, cp, run, gate or sweep",
                           ks));
        }
    }
    if (!version)
        FA4CP_TRY(wl_nerr(&x, root, "version", "missing: every workload starts with 'version: 1'"));
    if (sweep)
        FA4CP_TRY(wl_load_sweep(&x, sweep, dims, &ndims));
    long long ncase = 1;
    for (int i = 0; i < ndims; i++) {
        ncase *= dims[i].nvalues;
        if (ncase > MAX_CASES)
            FA4CP_TRY(wl_nerr(&x, sweep, "sweep", "expands to more than %d cases", MAX_CASES));
    }
    for (long long ci = 0; ci < ncase; ci++) {
        FA4CP_TRY(draft_copy(&cur, &base));
        long long rest = ci;
        size_t at = 0;
        /* the last dimension varies fastest */
        int idx[MAX_DIMS];
        for (int di = ndims - 1; di >= 0; di--) {
            idx[di] = (int)(rest % dims[di].nvalues);
            rest /= dims[di].nvalues;
        }
        for (int di = 0; di < ndims; di++) {
            for (int k = 0; k < dims[di].nkeys; k++) {
                yaml_node_t *item = yaml_document_get_node(doc, dims[di].list[k]->data.sequence.items.start[idx[di]]);
                char ipath[PATHLEN];
                int pl = (int)strnlen(dims[di].path[k], PATHLEN - 16);
                snprintf(ipath, sizeof ipath, "%.*s[%d]", pl, dims[di].path[k], idx[di]);
                FA4CP_TRY(wl_set_field(&x, &cur, dims[di].f[k], item, ipath));
                /* the label says what the case runs with: a --set of a swept key wins */
                char vt[96];
                const char *set = NULL;
                for (int i = 0; i < nov; i++)
                    if (override_field(&ov[i]) == dims[di].f[k])
                        set = ov[i].value;
                if (set)
                    snprintf(vt, sizeof vt, "%s", set);
                else
                    wl_node_text(doc, item, vt, sizeof vt);
                if (at < sizeof cur.c.label)
                    at += (size_t)snprintf(cur.c.label + at, sizeof cur.c.label - at, "%s%s=%s", at ? " " : "",
                                           dims[di].f[k]->path, vt);
            }
        }
        for (int i = 0; i < nov; i++)
            FA4CP_TRY(apply_override(&cur, &ov[i]));
        st = wl_finalize(file, &cur, *seqs_left);
        if (st) {
            if (ndims) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", fa4cp_last_error());
                fa4cp_set_error(st, "%s (sweep case %lld: %s)", msg, ci, cur.c.label);
            }
            free(cur.c.seqlen);
            free(cur.c.cu_padded);
            free(cur.c.cu_tokens);
            goto out;
        }
        *seqs_left -= cur.c.batch;
        cur.c.file = w->file;
        cur.c.doc = docno;
        cur.c.index = w->n;
        st = push_case(w, &cur.c);
        if (st) {
            free(cur.c.seqlen);
            free(cur.c.cu_padded);
            free(cur.c.cu_tokens);
            goto out;
        }
        free(cur.list);
        cur.list = NULL;
    }
out:
    free(cur.list);
    free(base.list);
    return st;
}

static fa4cp_status load_parser(const char *name, yaml_parser_t *parser, const fa4cp_override *ov, int nov,
                                fa4cp_workload **out)
{
    fa4cp_status st = FA4CP_OK;
    fa4cp_workload *w = calloc(1, sizeof *w);
    if (!w)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    w->file = strdup(name);
    if (!w->file) {
        free(w);
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory");
    }
    int docno = 0, seqs_left = MAX_CASE_SEQS;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(parser, &doc)) {
            const char *what = parser->error == YAML_MEMORY_ERROR ? "out of memory" : "YAML syntax error";
            yaml_mark_t mk = parser->problem_mark;
            if (parser->context)
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s: %s %s (line %d)", name, (int)mk.line + 1,
                                     (int)mk.column + 1, what, parser->problem ? parser->problem : "?",
                                     parser->context, (int)parser->context_mark.line + 1);
            else
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s:%d:%d: %s: %s", name, (int)mk.line + 1, (int)mk.column + 1,
                                     what, parser->problem ? parser->problem : "?");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            if (docno == 0)
                st = fa4cp_set_error(FA4CP_ERR_INVALID,
                                     "%s:1:1: the file holds no workload (expected 'version: 1' and an 'attention:' section)",
                                     name);
            break;
        }
        docno++;
        st = load_document(w->file, docno, &doc, ov, nov, w, &seqs_left);
        yaml_document_delete(&doc);
        if (st)
            break;
    }
    if (st) {
        fa4cp_workload_free(w);
        return st;
    }
    *out = w;
    return FA4CP_OK;
}

fa4cp_status fa4cp_workload_load_buffer(const char *name, const void *buf, size_t len, const fa4cp_override *ov,
                                        int nov, fa4cp_workload **out)
{
    yaml_parser_t parser;
    if (!out)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "out is NULL");
    *out = NULL;
    if (!name)
        name = "<buffer>";
    if (len > MAX_FILE_BYTES)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "%s: %zu bytes: a workload file is at most %u MiB", name, len,
                               MAX_FILE_BYTES >> 20);
    fa4cp_status cs = check_depth(name, buf, len);
    if (cs)
        return cs;
    if (!yaml_parser_initialize(&parser))
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    fa4cp_status st = load_parser(name, &parser, ov, nov, out);
    yaml_parser_delete(&parser);
    return st;
}

const char *fa4cp_workload_dir(void)
{
    static _Thread_local char dir[4096];
    const char *d = getenv("FA4CP_DATADIR");
    snprintf(dir, sizeof dir, "%s/jobs", d && *d ? d : FA4CP_PKGDATADIR);
    return dir;
}

fa4cp_status fa4cp_workload_load(const char *path, const fa4cp_override *ov, int nov, fa4cp_workload **out)
{
    if (!out || !path)
        return fa4cp_set_error(FA4CP_ERR_INVALID, "path or out is NULL");
    *out = NULL;
    /* a path as given; else a shipped workload by name: DIR/NAME, DIR/NAME.yaml */
    char found[4096 + 256];
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT && !strchr(path, '/') && *path) {
        int err = errno;
        const char *dir = fa4cp_workload_dir();
        snprintf(found, sizeof found, "%s/%s", dir, path);
        if (stat(found, &sb) != 0)
            snprintf(found, sizeof found, "%s/%s.yaml", dir, path);
        if (stat(found, &sb) != 0)
            return fa4cp_set_error(FA4CP_ERR_IO,
                                   "%s: cannot open: %s; and no workload of that name in %s (the "
                                   "shipped ones; FA4CP_DATADIR moves it)",
                                   path, strerror(err), dir);
        path = found;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return fa4cp_set_error(FA4CP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* read at most the cap (and one byte more, to know it is over): a pipe,
     * /dev/zero or a huge file is refused after MAX_FILE_BYTES, not read on */
    size_t cap = 0, len = 0;
    unsigned char *buf = NULL;
    fa4cp_status st = FA4CP_OK;
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES) {
                st = fa4cp_set_error(FA4CP_ERR_INVALID, "%s: more than %u MiB: a workload file is at most %u MiB",
                                     path, MAX_FILE_BYTES >> 20, MAX_FILE_BYTES >> 20);
                break;
            }
            size_t ncap = cap ? cap * 2 : 64 * 1024;
            if (ncap > MAX_FILE_BYTES + 1)
                ncap = MAX_FILE_BYTES + 1;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                st = fa4cp_set_error(FA4CP_ERR_NOMEM, "%s: out of memory while reading", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f))
                st = fa4cp_set_error(FA4CP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!st)
        st = fa4cp_workload_load_buffer(path, buf, len, ov, nov, out);
    free(buf);
    return st;
}

int fa4cp_workload_count(const fa4cp_workload *w) { return w ? w->n : 0; }

const fa4cp_case *fa4cp_workload_get(const fa4cp_workload *w, int i)
{
    return w && i >= 0 && i < w->n ? &w->cases[i] : NULL;
}

void fa4cp_workload_free(fa4cp_workload *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->cases[i].seqlen);
        free(w->cases[i].cu_padded);
        free(w->cases[i].cu_tokens);
    }
    free(w->cases);
    free(w->file);
    free(w);
}

