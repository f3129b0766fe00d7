#!/bin/bash
cd "$(dirname "$0")"; for f in *.xz; do xz -d -f "$f"; done; chmod +x bench_cp old_bench_cp test_attn test_cp_gpu; export LD_LIBRARY_PATH=$PWD
S=$(date +%s); el() { echo "t=$(( $(date +%s) - S ))"; }
( timeout 100 ./test_attn cuda chain > $OUT/chain.tap 2>&1; echo "chain rc=$? $(el) ok=$(grep -c '^ok' $OUT/chain.tap) notok=$(grep -c '^not ok' $OUT/chain.tap)" ) &
( timeout 150 ./test_cp_gpu > $OUT/cp.tap 2>&1; echo "cp_gpu rc=$? $(el) ok=$(grep -c '^ok' $OUT/cp.tap) notok=$(grep -c '^not ok' $OUT/cp.tap)" ) &
wait
for b in old_bench_cp bench_cp; do timeout 40 ./$b --tokens 32768 --cp 8 --iters 10 --warmup 2 --no-exec > $OUT/$b.txt 2>&1; echo "== $b rc=$? $(el)"; grep -vE '^# bench|^#  tokens' $OUT/$b.txt; done
