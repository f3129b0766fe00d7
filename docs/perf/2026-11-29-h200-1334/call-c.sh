# call C (13:39 UTC, same machine start): call A's test_attn cuda ran out of its 150 s
# (114 of 194 cases, all ok, when the timeout hit): the full run again, alone, 320 s limit
cd .dev/final && for f in *.xz; do xz -d -f $f; done; chmod +x test_* bench_*; export LD_LIBRARY_PATH=$PWD
timeout 320 ./test_attn cuda > $OUT/attn.tap 2>&1; echo "test_attn cuda rc=$?"
