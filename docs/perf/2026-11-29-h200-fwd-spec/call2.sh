#!/bin/bash
# call 2 (fwd spec, 17ad681): main's bench_attn (3d224df) and the branch's alternated per
# shape, three times (main, fwd, main, fwd, main, fwd; --fwd --iters 20), then racecheck and
# synccheck on the forward smoke, test_cp_gpu, and the forward tests with tuning 8192
# (step_spec's rescaling path at nearly every block; partial, 25 s).  At d96 also the branch with
# tuning 2097152 (L: the same kernel launched with all 227 KB of shared memory: the carveout
# alone).  A table at the end.
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_attn* test_*
export LD_LIBRARY_PATH=$PWD; O=$OUT; S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } | tee $O/gpu.txt
for sh in 128,4096,0 128,8192,0 128,8192,1 128,16384,0 128,16384,1 128,32768,1 64,16384,1 128,-1,1 96,16384,0 96,8192,0; do
  for r in 1 2 3; do
    ./bench_attn.main --fwd --iters 20 --shape $sh 2>&1 | grep "^|  " | tail -1 | sed "s/^/main$r /" >> $O/bench.txt
    ./bench_attn --fwd --iters 20 --shape $sh 2>&1 | grep "^|  " | tail -1 | sed "s/^/fwd$r /" >> $O/bench.txt
    case $sh in 96,*) FA4CP_CUDA_TUNING=2097152 ./bench_attn --fwd --iters 20 --shape $sh 2>&1 | grep "^|  " | tail -1 | sed "s/^/L$r /" >> $O/bench.txt;; esac
  done
done; el
python3 - $O <<'PY'
import sys, re
O = sys.argv[1]; rows = {}; cols = []
for l in open(O + '/bench.txt'):
    m = re.match(r'(\S+) \|\s*(\S+)\s*\|\s*(\S+)\s*\|\s*\d+\s*\|\s*\d+\s*\|\s*(\S+)\s*\|\s*[\d.]+\s*\|\s*([\d.]+)', l)
    if not m: continue
    if m.group(1) not in cols: cols.append(m.group(1))
    rows.setdefault(' '.join(m.group(2, 3, 4)), {})[m.group(1)] = float(m.group(5))
print('%-20s ' % 'shape' + ' '.join('%7s' % c for c in cols) + '  fwd/main (per pair)')
for k, v in rows.items():
    pr = ' '.join('%.3f' % (v['fwd%d' % r] / v['main%d' % r]) for r in (1, 2, 3) if 'fwd%d' % r in v and v.get('main%d' % r))
    print('%-20s ' % k + ' '.join('%7.1f' % v.get(c, 0) for c in cols) + '  ' + pr)
PY
for t in racecheck synccheck; do timeout 20 compute-sanitizer --tool $t ./bench_attn --fwd --smoke > $O/san_$t.txt 2>&1; echo "$t rc=$? $(el) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/san_$t.txt | tail -1)"; done
timeout 35 ./test_cp_gpu > $O/cp.tap 2>&1; echo "test_cp_gpu rc=$? $(el) ok=$(grep -c '^ok' $O/cp.tap) notok=$(grep -c '^not ok' $O/cp.tap) skip=$(grep -c '# SKIP' $O/cp.tap)"; grep -E "^not ok|^1\.\.|Bail" $O/cp.tap | head -4
FA4CP_CUDA_TUNING=8192 timeout 25 ./test_attn cuda fwd > $O/attn_fwd_8192.tap 2>&1; echo "attn_fwd 8192 rc=$? $(el) ok=$(grep -c '^ok' $O/attn_fwd_8192.tap) notok=$(grep -c '^not ok' $O/attn_fwd_8192.tap)"; grep -E "^not ok" $O/attn_fwd_8192.tap | head -4
el
