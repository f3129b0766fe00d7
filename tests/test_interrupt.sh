#!/bin/sh
# test_interrupt.sh - issue 15: SIGINT, SIGTERM and SIGUSR1 at 20 random
# moments of a multi-case CPU run (local mode, 4 ranks as threads), each run
# continued with --resume.  After every run: every line of results.jsonl
# parses (no torn line), every case the run started has a record, and the
# run's own lines match its footer; when a job is complete: every case has
# exactly one complete record (nothing duplicated by --resume).  The seed is
# printed; FA4CP_TEST_SEED replays it.  About 30 s.
b=${top_builddir:-.}
run="$b/bin/fa4cp-run"
check="$b/tests/results_check"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fa4cp-interrupt.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0
t() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
seed=${FA4CP_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "# seed $seed (replay with FA4CP_TEST_SEED=$seed)"
cat >"$tmp/job.yaml" <<'EOF'
version: 1
name: interrupt
attention: {heads: 4, kv_heads: 4, head_dim: 16, sequences: [64, 32]}
cp: {size: 4, comm: p2p}
run: {backend: cpu, warmup: 1, iters: 40, check: sampled}
sweep:
  cp.comm: [p2p, all_gather, a2a]
  attention.causal: [true, false]
  run.seed: [1, 2]
EOF
ncases=12
job=1
out="$tmp/out$job"
sigs="INT TERM USR1"
for trial in $(seq 1 20); do
    sig=$(echo $sigs | cut -d' ' -f$(( (trial - 1) % 3 + 1 )))
    delay=$(awk -v s="$seed" -v i="$trial" 'BEGIN { srand(s % 1000003); for (k = 0; k < i; k++) r = rand(); printf "%.2f", 0.02 + r * 0.9 }')
    before=$(cat "$out/results.jsonl" 2>/dev/null | wc -l)
    "$run" "$tmp/job.yaml" --ranks 4 -q --tap --resume -o "$out" >"$tmp/o" 2>"$tmp/e" &
    pid=$!
    sleep "$delay"
    kill -s "$sig" $pid 2>/dev/null
    wait $pid; rc=$?
    after=$(cat "$out/results.jsonl" 2>/dev/null | wc -l)
    "$check" "$out" >"$tmp/c" 2>"$tmp/ce"; crc=$?
    started=$(grep -c "^\(not \)\?ok [0-9]* - .*case" "$tmp/o")
    skipped=$(grep -c "# SKIP recorded before" "$tmp/o")
    case $sig in INT) want=130 ;; TERM) want=143 ;; USR1) want=138 ;; esac
    good=0
    # every line parses; a run ends 0 (done before the signal) or with 128+signal
    [ $crc -eq 0 ] || [ ! -e "$out/results.jsonl" ] || good=1
    [ $rc -eq 0 ] || [ $rc -eq $want ] || good=1
    # every case it printed (ran, interrupted or NOT RUN) got its record: none lost, none extra
    [ $((after - before)) -eq $((started - skipped)) ] || good=1
    # with a footer (handlers installed), a line for every case of the job
    if grep -q "^# fa4cp-run concluded" "$tmp/o"; then [ "$started" -eq $ncases ] || good=1; fi
    t $good "trial $trial: SIG$sig after $delay s: exit $rc, $((after - before)) record(s) for $((started - skipped)) case line(s), every line parses"
    [ $good -eq 0 ] || sed 's/^/# /' "$tmp/o" "$tmp/e" "$tmp/ce" | tail -20
    if [ $rc -eq 0 ] || [ $trial -eq 20 ]; then
        # the job: finish it without signals, then every case has one complete record
        "$run" "$tmp/job.yaml" --ranks 4 -q --tap --resume -o "$out" >"$tmp/o" 2>"$tmp/e"; rc=$?
        "$check" "$out" >"$tmp/c" 2>"$tmp/ce"; crc=$?
        complete=$(grep "^record" "$tmp/c" | grep -v " INTERRUPTED \| NOT RUN " | wc -l)
        dups=$(grep "^record" "$tmp/c" | grep -v " INTERRUPTED \| NOT RUN " | awk '{print $7}' | sort | uniq -d | wc -l)
        t $([ $rc -eq 0 ] && [ $crc -eq 0 ] && [ "$complete" -eq $ncases ] && [ "$dups" -eq 0 ] && echo 0 || echo 1) \
          "job $job complete after --resume: $complete complete records for $ncases cases, $dups duplicated"
        job=$((job + 1))
        out="$tmp/out$job"
    fi
done
echo "1..$n"
