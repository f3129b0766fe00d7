/* fa4cp-layout - print the world table and the CP/DP groups.
 *
 * Under `srun --mpi=pmix` every rank bootstraps and rank 0 prints after the
 * table was gathered; without a launcher it prints the local world (--ranks);
 * with --nodes it plans a made-up cluster without touching a GPU.
 * Exit status: 0 ok, 2 usage, 3 runtime (PMIx, NCCL, a peer), 8 the singleton
 * trap (srun without --mpi=pmix).  docs/fa4cp-layout.1 is the manual.
 */
#include "fa4cp.h"
#include "cp/cp_config.h"
#include "core/json.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exit_codes.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: fa4cp-layout [OPTION]...\n"
            "Print the world table (rank, host, node, local rank, GPU) and the CP/DP groups.\n"
            "\n"
            "  --cp N                 CP group size (default: the tasks of the smallest node,\n"
            "                         when it divides the world; else 1)\n"
            "  --comm KIND            p2p | all_gather | a2a (a2a warns when a group crosses nodes)\n"
            "  --allow-cross-node-a2a no warning for a2a groups across nodes\n"
            "  --json                 JSON instead of a table\n"
            "  --check-nccl-id        pass rank 0's NCCL unique id through the bootstrap and\n"
            "                         check that every rank got it\n"
            "Where the world comes from (default: detected; see fa4cp-layout(1)):\n"
            "  --bootstrap KIND       auto | pmix | slurm | local\n"
            "  --ranks N              local mode: N ranks in this process\n"
            "  --timeout S            bound of every bootstrap call (default 60)\n"
            "Planning a made-up cluster (no launcher, no GPU):\n"
            "  --nodes N              number of nodes\n"
            "  --tasks-per-node T     tasks on each node, or a list per node (8,8,4)\n"
            "  --distribution D       block | cyclic (default block)\n"
            "  --gpus-per-node G      GPUs per node (default: one per task; 0 = none)\n"
            "\n"
            "  -h, --help             this text\n"
            "  --version              the version\n"
            "\n"
            "Exit status: 0 ok, 2 usage, 3 runtime failure, 8 launched by srun without PMIx.\n");
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "fa4cp-layout: %s '%s': want an integer in %d..%d\n", opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int exit_code(fa4cp_status st)
{
    if (st == FA4CP_ERR_LAUNCH)
        return EXIT_LAUNCH;
    return EXIT_RUNTIME;
}

/* FNV-1a, to compare the ids that ranks received */
static uint64_t hash64(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv)
{
    enum { O_CP = 256, O_COMM, O_ALLOW, O_JSON, O_BOOT, O_RANKS, O_TIMEOUT, O_NODES, O_TPN,
           O_DIST, O_GPN, O_VERSION, O_NCCLID };
    static const struct option opts[] = {
        {"cp", required_argument, 0, O_CP},
        {"comm", required_argument, 0, O_COMM},
        {"allow-cross-node-a2a", no_argument, 0, O_ALLOW},
        {"json", no_argument, 0, O_JSON},
        {"check-nccl-id", no_argument, 0, O_NCCLID},
        {"bootstrap", required_argument, 0, O_BOOT},
        {"ranks", required_argument, 0, O_RANKS},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"nodes", required_argument, 0, O_NODES},
        {"tasks-per-node", required_argument, 0, O_TPN},
        {"distribution", required_argument, 0, O_DIST},
        {"gpus-per-node", required_argument, 0, O_GPN},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0},
    };
    int cp = 0, is_a2a = 0, allow = 0, json = 0, check_id = 0, nodes = 0, gpn = -1;
    const char *tpn = NULL, *dist = "block";
    fa4cp_world_config cfg = FA4CP_WORLD_CONFIG_INIT;
    int ranks_given = 0, rc = 0, c;
    fa4cp_world *world = NULL;
    fa4cp_world_row *plan = NULL;
    fa4cp_layout *layout = NULL;
    int *counts = NULL;
    char *text = NULL;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_CP:
            if (parse_int("--cp", optarg, 1, 1 << 20, &cp))
                return EXIT_USAGE;
            break;
        case O_COMM: { /* the cp config knows the names and the refusals */
            fa4cp_cp_comm_type comm;
            if (fa4cp_cp_comm_lookup(optarg, 1, &comm) != FA4CP_OK) {
                fprintf(stderr, "fa4cp-layout: --comm: %s\n", fa4cp_last_error());
                return EXIT_USAGE;
            }
            is_a2a = fa4cp_cp_comm_info_of(comm)->group_in_node;
            break;
        }
        case O_ALLOW: allow = 1; break;
        case O_JSON: json = 1; break;
        case O_NCCLID: check_id = 1; break;
        case O_BOOT:
            if (fa4cp_world_kind_parse(optarg, &cfg.kind) != FA4CP_OK ||
                cfg.kind == FA4CP_WORLD_PLAN) {
                fprintf(stderr, "fa4cp-layout: --bootstrap '%s' is not one of auto, pmix, slurm, "
                                "local\n", optarg);
                return EXIT_USAGE;
            }
            break;
        case O_RANKS:
            if (parse_int("--ranks", optarg, 1, 4096, &cfg.local_ranks))
                return EXIT_USAGE;
            ranks_given = 1;
            break;
        case O_TIMEOUT: {
            char *end;
            cfg.timeout_s = strtod(optarg, &end);
            if (*end || end == optarg || !(cfg.timeout_s > 0) || !(cfg.timeout_s <= FA4CP_TIMEOUT_MAX_S)) {
                fprintf(stderr, "fa4cp-layout: --timeout '%s': want seconds in (0, %.0f]\n", optarg,
                        FA4CP_TIMEOUT_MAX_S);
                return EXIT_USAGE;
            }
            break;
        }
        case O_NODES:
            if (parse_int("--nodes", optarg, 1, 100000, &nodes))
                return EXIT_USAGE;
            break;
        case O_TPN: tpn = optarg; break;
        case O_DIST:
            if (strcmp(optarg, "block") != 0 && strcmp(optarg, "cyclic") != 0) {
                fprintf(stderr, "fa4cp-layout: --distribution '%s' is not block or cyclic\n",
                        optarg);
                return EXIT_USAGE;
            }
            dist = optarg;
            break;
        case O_GPN:
            if (parse_int("--gpus-per-node", optarg, 0, 4096, &gpn))
                return EXIT_USAGE;
            break;
        case O_VERSION:
            printf("fa4cp-layout %s (pmix %s, nccl %s)\n", fa4cp_version(),
                   fa4cp_pmix_available() ? "yes" : "no", fa4cp_nccl_available() ? "yes" : "no");
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fa4cp-layout: unexpected argument '%s' (see --help)\n", argv[optind]);
        return EXIT_USAGE;
    }
    if ((tpn || nodes) && !(tpn && nodes)) {
        fprintf(stderr, "fa4cp-layout: planning needs both --nodes and --tasks-per-node\n");
        return EXIT_USAGE;
    }
    if (nodes && (ranks_given || cfg.kind != FA4CP_WORLD_AUTO || check_id)) {
        fprintf(stderr, "fa4cp-layout: --nodes plans a made-up cluster; it does not go with "
                        "--ranks, --bootstrap or --check-nccl-id\n");
        return EXIT_USAGE;
    }

    const fa4cp_world_row *table;
    int n, me = 0, nnodes = 0;
    const char *source;
    fa4cp_status st;
    json_t *idinfo = NULL; /* the NCCL id check, for the output */
    if (nodes) {
        counts = calloc((size_t)nodes, sizeof(int));
        if (!counts)
            return EXIT_RUNTIME;
        if (strchr(tpn, ',')) {
            int k = 0;
            if (fa4cp_tasks_per_node_parse(tpn, counts, nodes, &k) != FA4CP_OK || k != nodes) {
                fprintf(stderr, "fa4cp-layout: --tasks-per-node '%s': want one count or %d "
                                "counts (one per node)%s%s\n", tpn, nodes,
                        fa4cp_last_error()[0] ? ": " : "", fa4cp_last_error());
                rc = EXIT_USAGE;
                goto out;
            }
        } else {
            int t;
            if (parse_int("--tasks-per-node", tpn, 1, 4096, &t)) {
                rc = EXIT_USAGE;
                goto out;
            }
            for (int i = 0; i < nodes; i++)
                counts[i] = t;
        }
        st = fa4cp_world_plan(nodes, 0, counts, dist, gpn, &plan, &n);
        if (st != FA4CP_OK) {
            fprintf(stderr, "fa4cp-layout: %s\n", fa4cp_last_error());
            rc = EXIT_USAGE;
            goto out;
        }
        table = plan;
        nnodes = nodes;
        source = "plan";
    } else {
        st = fa4cp_world_init(&cfg, &world);
        if (st != FA4CP_OK) {
            fprintf(stderr, "fa4cp-layout: error: %s\n", fa4cp_last_error());
            rc = exit_code(st);
            goto out;
        }
        table = fa4cp_world_table(world);
        n = fa4cp_world_size(world);
        me = fa4cp_world_rank(world);
        nnodes = fa4cp_world_nodes(world);
        source = fa4cp_world_kind_name(fa4cp_world_kind_of(world));
        if (check_id) {
            /* rank 0's unique id through the bootstrap, then everyone's hash gathered */
            unsigned char id[128];
            int procs = fa4cp_world_procs(world);
            uint64_t h, *all = calloc((size_t)procs, sizeof *all);
            if (!all) {
                rc = EXIT_RUNTIME;
                goto out;
            }
            if (fa4cp_nccl_available()) {
                st = fa4cp_nccl_unique_id(world, id, sizeof id);
            } else {
                /* no NCCL in this build: carry a test pattern of the same size the same way */
                uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
                for (size_t i = 0; i < sizeof id; i++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    id[i] = (unsigned char)(seed >> 56);
                }
                st = fa4cp_world_bcast(world, id, sizeof id);
            }
            if (st == FA4CP_OK) {
                h = hash64(id, sizeof id);
                st = fa4cp_world_allgather(world, &h, all, sizeof h);
            }
            if (st != FA4CP_OK) {
                fprintf(stderr, "fa4cp-layout: error: NCCL id exchange: %s\n", fa4cp_last_error());
                free(all);
                rc = exit_code(st);
                goto out;
            }
            int agree = 1;
            for (int p = 0; p < procs; p++)
                agree &= all[p] == all[0];
            char hash[32];
            snprintf(hash, sizeof hash, "%016llx", (unsigned long long)all[0]);
            idinfo = json_pack("{s:i, s:s, s:s, s:i, s:b}", "bytes", 128, "from",
                               fa4cp_nccl_available() ? "ncclGetUniqueId"
                                                      : "test pattern (no NCCL in this build)",
                               "hash", hash, "ranks", procs, "agree", agree);
            free(all);
            if (!agree) {
                fprintf(stderr, "fa4cp-layout: error: ranks received different NCCL ids\n");
                rc = EXIT_RUNTIME;
                goto out;
            }
        }
    }
    if (cp == 0) {
        int smallest = n;
        int *per = calloc((size_t)nnodes + 1, sizeof(int));
        if (per) {
            for (int r = 0; r < n; r++)
                if (table[r].node >= 0 && table[r].node <= nnodes)
                    per[table[r].node]++;
            for (int i = 0; i < nnodes; i++)
                if (per[i] > 0 && per[i] < smallest)
                    smallest = per[i];
            free(per);
        }
        cp = (smallest > 0 && n % smallest == 0) ? smallest : 1;
    }
    st = fa4cp_layout_build(table, n, cp, is_a2a, allow, &layout);
    if (st != FA4CP_OK) {
        if (me == 0)
            fprintf(stderr, "fa4cp-layout: error: %s\n", fa4cp_last_error());
        rc = st == FA4CP_ERR_INVALID ? EXIT_USAGE : EXIT_RUNTIME;
        goto out;
    }
    if (!world || fa4cp_world_kind_of(world) != FA4CP_WORLD_LOCAL) {
        /* several processes (or a plan of them) will each drive a GPU through NCCL */
        st = fa4cp_world_check_gpus(table, n);
        if (st != FA4CP_OK) {
            if (me == 0)
                fprintf(stderr, "fa4cp-layout: error: %s\n", fa4cp_last_error());
            rc = world ? EXIT_RUNTIME : EXIT_USAGE;
            goto out;
        }
    }
    if (me == 0) {
        const char *w = fa4cp_layout_warning(layout);
        while (*w) { /* one prefixed line per warning */
            const char *nl = strchr(w, '\n');
            int k = nl ? (int)(nl - w) : (int)strlen(w);
            fprintf(stderr, "fa4cp-layout: warning: %.*s\n", k, w);
            w += k + (nl ? 1 : 0);
        }
        st = fa4cp_layout_format(layout, source, json, &text);
        if (st != FA4CP_OK) {
            fprintf(stderr, "fa4cp-layout: error: %s\n", fa4cp_last_error());
            rc = EXIT_RUNTIME;
            goto out;
        }
        if (idinfo && json) {
            /* the layout document with one more member */
            char err[160];
            json_t *doc = fa4cp_json_parse(text, err, sizeof err);
            char *rows = NULL;
            if (doc && !json_object_set(doc, "nccl_id", idinfo))
                rows = fa4cp_json_rows(doc);
            json_decref(doc);
            if (!rows) {
                fprintf(stderr, "fa4cp-layout: error: cannot add the NCCL id to the JSON%s%s\n",
                        err[0] ? ": " : "", err);
                rc = EXIT_RUNTIME;
                goto out;
            }
            fputs(rows, stdout);
            free(rows);
        } else {
            fputs(text, stdout);
            if (idinfo) {
                char *t = json_dumps(idinfo, 0);
                printf("# nccl id: %s\n", t ? t : "?");
                free(t);
            }
        }
        if (fflush(stdout) != 0) {
            fprintf(stderr, "fa4cp-layout: error: writing the output failed\n");
            rc = EXIT_RUNTIME;
        }
    }
out:
    json_decref(idinfo);
    fa4cp_free(text);
    fa4cp_layout_destroy(layout);
    fa4cp_free(plan);
    free(counts);
    fa4cp_world_finalize(world);
    return rc;
}
