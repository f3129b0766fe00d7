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
t $(has "$tmp/md" "^| 4 | 1k | 62.873 |" && echo 0 || echo 1) "weak p2p row at 4 GPUs (time from the fixture)"
first=$(grep -c "^| 1 | .* | 100.0% | .* | 100.0% |$" "$tmp/md")
t $([ "$first" -eq 4 ] && echo 0 || echo 1) "efficiency 100% at the smallest run of each of the 4 series ($first)"
"$rep" --csv "$fx" >"$tmp/csv" 2>/dev/null; rc=$?
rows=$(wc -l <"$tmp/csv")
t $([ $rc -eq 0 ] && [ "$rows" -eq 13 ] && head -1 "$tmp/csv" | grep -q "^kind,comm,tokens,tokens_per_gpu" && echo 0 || echo 1) \
  "CSV: header and 12 rows ($rows)"
t $(has "$tmp/csv" "^strong,p2p,512,128,4,4,32,bf16,causal,cpu,4,16.8799,.*,1.2494,38.866,.*,0.5396$" && echo 0 || echo 1) "strong p2p 4-GPU CSV row with its efficiency"
if command -v gnuplot >/dev/null 2>&1; then
    "$rep" "$fx" -o "$tmp/out" >/dev/null 2>"$tmp/e"; rc=$?
    ok=0
    for f in scaling.md weak.csv strong.csv weak.gp weak.dat weak-tflops.svg weak-efficiency.svg strong-tflops.svg strong-efficiency.svg; do
        [ -s "$tmp/out/$f" ] || { ok=1; echo "# missing $f"; }
    done
    grep -q "<svg" "$tmp/out/weak-tflops.svg" || ok=1
    t $([ $rc -eq 0 ] && echo $ok || echo 1) "-o DIR: tables, .gp/.dat and SVG plots with gnuplot"
else
    n=$((n + 1)); echo "ok $n # SKIP gnuplot is not installed"
fi
"$rep" "$fx" -o "$tmp/nogp" --gnuplot /nonexistent/gnuplot >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 0 ] && [ -s "$tmp/nogp/weak.gp" ] && [ -s "$tmp/nogp/strong.dat" ] && [ ! -e "$tmp/nogp/weak-tflops.svg" ] \
    && has "$tmp/e" "gnuplot not found" && echo 0 || echo 1) "without gnuplot: .gp and .dat files and a note"
"$rep" >/dev/null 2>&1; rc=$?
t $([ $rc -eq 2 ] && echo 0 || echo 1) "no input: exit 2"
tail -1 "$fx" >"$tmp/failed.jsonl"
"$rep" "$tmp/failed.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "no usable record" && echo 0 || echo 1) "only a FAILED record: exit 2"
"$rep" "$tmp/missing.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
t $([ $rc -eq 2 ] && has "$tmp/e" "cannot read" && echo 0 || echo 1) "a missing file: exit 2"
echo "1..$n"
