#!/bin/sh
# test_report.sh - fa4cp-report on a fixture of fa4cp-run results
# (tests/report/fixture.jsonl: weak and strong scaling of p2p and a2a at
# cp 1, 2, 4 on the cpu backend, plus a truncated line and a FAILED case).
b=${top_builddir:-.}
s=${top_srcdir:-.}
rep="$b/bin/fa4cp-report"
fx="$s/tests/report/fixture.jsonl"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fa4cp-report-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0
t() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
has() { grep -q -- "$2" "$1"; }

"$rep" "$fx" >"$tmp/md" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && echo 0 || echo 1) "reads the fixture ($rc)"
t $(has "$tmp/e" "fixture.jsonl:13: not JSON" && echo 0 || echo 1) "the truncated line is reported with file:line and skipped"
t $(has "$tmp/md" "12 record(s)" && echo 0 || echo 1) "12 usable records (the FAILED case is left out)"
t $(has "$tmp/md" "^## Weak scaling" && has "$tmp/md" "^### p2p, 256 tokens per GPU, h 4/4, d 32, bf16, causal" && echo 0 || echo 1) \
  "weak-scaling series per comm shape"
t $(has "$tmp/md" "^## Strong scaling" && has "$tmp/md" "^### a2a, 512 tokens, h 4/4" && echo 0 || echo 1) "strong-scaling series"
t $(has "$tmp/md" "^| 4 | 1 | 1 | - | 1k | 62.873 |" && echo 0 || echo 1) "weak p2p row at 4 GPUs: nodes, replicas, job, time from the fixture"
t $(has "$tmp/md" "^| GPUs | nodes | replicas | job | tokens |" && echo 0 || echo 1) "columns for nodes, replicas and job"
t $(has "$tmp/e" "2 record(s) were replaced by a later record" && echo 0 || echo 1) "records that replace earlier ones are reported"
first=$(grep -c "^| 1 | .* | 100.0% | .* | 100.0% |$" "$tmp/md")
t $([ "$first" -eq 4 ] && echo 0 || echo 1) "efficiency 100% at the smallest run of each of the 4 series ($first)"
# head_dim_v: records that differ only in it are two series, labelled d/dv (issue 20)
grep '"comm":"a2a"' "$fx" | grep '"status":"OK"' | sed 's/"head_dim":32,/"head_dim":32,"head_dim_v":16,/' >"$tmp/dv.jsonl"
cat "$fx" "$tmp/dv.jsonl" >"$tmp/both.jsonl"
"$rep" "$tmp/both.jsonl" >"$tmp/md2" 2>"$tmp/e2"; rc=$?
t $([ $rc -eq 0 ] && [ -s "$tmp/dv.jsonl" ] && has "$tmp/md2" "^### a2a, 512 tokens, h 4/4, d 32/16, bf16" && \
    has "$tmp/md2" "^### a2a, 512 tokens, h 4/4, d 32, bf16" && ! has "$tmp/e2" "4 record(s) were replaced" && echo 0 || echo 1) \
  "head_dim_v apart from head_dim: a series of its own, labelled d 32/16 ($rc)"
"$rep" --csv "$fx" >"$tmp/csv" 2>/dev/null; rc=$?
rows=$(wc -l <"$tmp/csv")
t $([ $rc -eq 0 ] && [ "$rows" -eq 13 ] && head -1 "$tmp/csv" | grep -q "^kind,comm,tokens,tokens_per_gpu.*,nodes,replicas,job$" && echo 0 || echo 1) \
  "CSV: header and 12 rows ($rows)"
t $(has "$tmp/csv" "^strong,p2p,512,128,4,4,32,bf16,causal,cpu,4,16.8799,.*,1.2494,38.866,.*,0.5396,1,1,-$" && echo 0 || echo 1) "strong p2p 4-GPU CSV row with its efficiency"
if command -v gnuplot >/dev/null 2>&1; then
    # an output directory with a quote and spaces: gnuplot gets it through
    # posix_spawn, never through a shell
    out="$tmp/it's a report dir"
    "$rep" "$fx" -o "$out" >/dev/null 2>"$tmp/e"; rc=$?
    ok=0
    for f in scaling.md weak.csv strong.csv weak.gp weak.dat strong.gp strong.dat \
             weak-fwd.svg weak-bwd.svg weak-efficiency.svg strong-fwd.svg strong-bwd.svg strong-efficiency.svg; do
        [ -s "$out/$f" ] || { ok=1; echo "# missing $f"; }
    done
    grep -q "<svg" "$out/weak-fwd.svg" || ok=1
    t $([ $rc -eq 0 ] && echo $ok || echo 1) "-o DIR with a quote and spaces: tables, .gp/.dat, forward, backward and efficiency SVGs"
    t $(grep -q "ideal" "$out/strong.gp" && grep -q "set key outside below" "$out/strong.gp" && echo 0 || echo 1) \
      "the plots draw an ideal-scaling line and put the legend outside"
    "$rep" "$fx" -o "$tmp/png" --format png >/dev/null 2>&1; rc=$?
    t $([ $rc -eq 0 ] && head -c 4 "$tmp/png/strong-bwd.png" | grep -q PNG && echo 0 || echo 1) "--format png"
    "$rep" "$fx" -o "$tmp/gpfail" --gnuplot false >/dev/null 2>"$tmp/e"; rc=$?
    t $([ $rc -eq 3 ] && has "$tmp/e" "false weak.gp exited with status 1" && echo 0 || echo 1) "gnuplot failing: exit 3 and why ($rc)"
else
    n=$((n + 1)); echo "ok $n # SKIP gnuplot is not installed"
fi
"$rep" "$fx" -o "$tmp/nogp" --gnuplot /nonexistent/gnuplot >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && [ -s "$tmp/nogp/weak.gp" ] && [ -s "$tmp/nogp/strong.dat" ] && [ ! -e "$tmp/nogp/weak-fwd.svg" ] \
    && has "$tmp/e" "not found" && echo 0 || echo 1) "without gnuplot: .gp and .dat files and a note"
t $(has "$tmp/e" "&& gnuplot weak.gp strong.gp" && echo 0 || echo 1) "the note names the scripts that were written"
# only strong-scaling series: the hint must not name weak.gp
grep '"name":"strong' "$fx" >"$tmp/strong.jsonl"
"$rep" "$tmp/strong.jsonl" -o "$tmp/only" --gnuplot /nonexistent/gnuplot >/dev/null 2>"$tmp/e"
t $([ ! -e "$tmp/only/weak.gp" ] && has "$tmp/e" "&& gnuplot strong.gp\$" && echo 0 || echo 1) "a hint for what was written only (strong.gp)"
# --baseline: the same runs pass; a baseline twice as fast fails (exit 6)
"$rep" "$fx" --baseline "$fx" >"$tmp/b" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && has "$tmp/b" "^## Against the baseline" && has "$tmp/e" "10 case(s) compared, 0 worse" && echo 0 || echo 1) \
  "a baseline of the same runs: 10 cases (12 records) compared, exit 0 ($rc)"
awk '{ if (match($0, /"exit_code":0,"fwd_ms":[0-9.e+-]+/)) { v = substr($0, RSTART + 23, RLENGTH - 23);
       $0 = substr($0, 1, RSTART + 22) (v / 2) substr($0, RSTART + RLENGTH) } print }' "$fx" >"$tmp/fast.jsonl"
"$rep" "$fx" --baseline "$tmp/fast.jsonl" >"$tmp/b" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 6 ] && has "$tmp/b" "| +100.0% | .* | SLOWER |" && has "$tmp/e" "10 worse than the baseline" && echo 0 || echo 1) \
  "a baseline twice as fast: +100% per case, SLOWER, exit 6 ($rc)"
"$rep" "$fx" --baseline "$tmp/fast.jsonl" --threshold 150 >/dev/null 2>&1; rc=$?
t $([ $rc -eq 0 ] && echo 0 || echo 1) "--threshold 150 lets a 100% slowdown pass ($rc)"
sed 's/"max_rel_err":-1/"max_rel_err":0.004/' "$fx" >"$tmp/err-new.jsonl"
sed 's/"max_rel_err":-1/"max_rel_err":0.001/' "$fx" >"$tmp/err-old.jsonl"
"$rep" "$tmp/err-new.jsonl" -b "$tmp/err-old.jsonl" >"$tmp/b" 2>"$tmp/e"; rc=$?
t $([ $rc -eq 6 ] && has "$tmp/b" "| +300% | LESS ACCURATE |" && echo 0 || echo 1) "four times the baseline's error: LESS ACCURATE, exit 6 ($rc)"
"$rep" >/dev/null 2>&1; rc=$?
t $([ $rc -eq 2 ] && echo 0 || echo 1) "no input: exit 2"
tail -1 "$fx" >"$tmp/failed.jsonl"
"$rep" "$tmp/failed.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "no usable record" && echo 0 || echo 1) "only a FAILED record: exit 2"
"$rep" "$tmp/missing.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "cannot read" && echo 0 || echo 1) "a missing file: exit 2"
echo "1..$n"
