"""summary.py - one line per fa4cp-run record: wall, timed, setup, generation, check, fwd/bwd ms,
GPU share, error, status.  usage: python3 docs/perf/summary.py OUT/results.jsonl ...
(one copy for every measuring call; the call scripts ran it from their own folder)"""
import json, sys
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(path, e); continue
    print("# %s" % path)
    print("%-14s %-28s %9s %9s %8s %8s %8s %9s %9s %5s %9s %s" % ("name", "label", "wall_ms", "timed_ms", "setup", "gen", "check", "fwd_ms", "bwd_ms", "gpu%", "max_err", "status"))
    for l in lines:
        try:
            j = json.loads(l)
        except ValueError:
            continue
        r = j.get("result", {})
        f = lambda k: (r.get(k) if r.get(k) is not None else float("nan"))
        print("%-14s %-28s %9.1f %9.1f %8.1f %8.1f %8.1f %9.2f %9.2f %5.0f %9.2e %s %s" % (j.get("name"), j.get("label", "")[:28], f("wall_ms"), f("timed_total_ms"), f("setup_ms"), f("generate_ms"), f("check_ms"), f("fwd_ms"), f("bwd_ms"), 100 * f("gpu_share"), f("max_rel_err"), r.get("status"), (r.get("message") or "")[:80]))
