#!/bin/bash
# call 1 (fwd spec, the d128 kernels of 8daa5ac): the forward tests of the branch (test_attn cuda fwd: every forward case,
# the large-logit cases that take step_spec's rare paths), then main's bench_attn and the
# branch's interleaved, twice (main, fwd, main, fwd; fwd with tuning 0 = step_spec on, 1048576
# = off: the same binary), then memcheck on the forward smoke.  A table of the runs at the end.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn* test_*
export LD_LIBRARY_PATH=$PWD; O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
timeout 80 ./test_attn cuda fwd > $O/attn_fwd.tap 2>&1; echo "attn_fwd rc=$? $(el) ok=$(grep -c '^ok' $O/attn_fwd.tap) notok=$(grep -c '^not ok' $O/attn_fwd.tap)"
grep -E "^not ok|^1\.\.|Bail|large logits" $O/attn_fwd.tap | head -8; grep -A3 "^not ok" $O/attn_fwd.tap | grep "^#" | head -6
SH="--shape 128,4096,0 --shape 128,8192,0 --shape 128,8192,1 --shape 128,16384,0 --shape 128,16384,1 --shape 128,32768,1 --shape 64,16384,1 --shape 128,-1,1 --shape 96,16384,0 --shape 96,8192,0"
for r in 1 2; do
  echo "== round $r main $(date -u +%T)"; ./bench_attn.main --fwd --iters 10 $SH > $O/bench_main_$r.txt 2>&1
  echo "== round $r fwd $(date -u +%T)"; ./bench_attn --fwd --iters 10 --variants 0,1048576 $SH > $O/bench_fwd_$r.txt 2>&1
done; el
timeout 30 compute-sanitizer --tool memcheck ./bench_attn --fwd --smoke > $O/san_memcheck.txt 2>&1; echo "memcheck rc=$? $(el) $(grep 'ERROR SUMMARY' $O/san_memcheck.txt | tail -1)"
python3 - $O <<'PY'
import sys, re, glob
O = sys.argv[1]; rows = {}; cols = []
def parse(f, tag):
    for l in open(f):
        m = re.match(r'(?:tuning (\S+)\s+)?\|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*\d+\s*\|\s*\d+\s*\|\s*(\S+)\s*\|\s*[\d.]+\s*\|\s*([\d.]+)', l)
        if not m: continue
        col = tag + ('' if m.group(1) is None else '/' + m.group(1))
        if col not in cols: cols.append(col)
        rows.setdefault((m.group(2), m.group(3), m.group(4)), {})[col] = float(m.group(5))
for r in (1, 2):
    parse('%s/bench_main_%d.txt' % (O, r), 'main%d' % r); parse('%s/bench_fwd_%d.txt' % (O, r), 'fwd%d' % r)
print('%-22s ' % 'shape' + ' '.join('%10s' % c for c in cols))
for k, v in rows.items():
    print('%-22s ' % ' '.join(k) + ' '.join('%10.1f' % v.get(c, 0) for c in cols))
PY
el
