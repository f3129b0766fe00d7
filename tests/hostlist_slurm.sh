#!/bin/sh
# hostlist_slurm.sh - fa4cp's hostlist expansion against Slurm's own:
# `scontrol show hostnames EXPR` (no controller needed: a minimal slurm.conf)
# and tests/hostlist_expand EXPR must print the same hosts, or both refuse,
# for every expression of tests/hostlist/edge-cases.txt and for
# FA4CP_HOSTLIST_RANDOM (default 400) random expressions (the seed is printed;
# FA4CP_HOSTLIST_SEED repeats a run).  Numbers that overflow Slurm's unsigned
# long (tests/hostlist/overflow.txt) are refused by fa4cp where Slurm wraps.
src=${top_srcdir:-.}
X=${top_builddir:-.}/tests/hostlist_expand
SCONTROL=${SCONTROL:-scontrol}
if ! command -v "$SCONTROL" >/dev/null 2>&1; then
    echo "1..0 # SKIP scontrol is not installed (Debian: slurm-client)"; exit 0
fi
T=${TMPDIR:-/tmp}/fa4cp-hostlist.$$
mkdir -p "$T" || exit 99
trap 'rm -rf "$T"' EXIT
cat >"$T/slurm.conf" <<CONF
ClusterName=hostlist
SlurmctldHost=localhost
NodeName=localhost CPUs=1 State=UNKNOWN
PartitionName=p Nodes=localhost Default=YES
CONF
SLURM_CONF=$T/slurm.conf
export SLURM_CONF
unset SLURM_NODELIST
if [ "$("$SCONTROL" show hostnames 'n[1-2]' 2>"$T/e" | tr '\n' ' ')" != "n1 n2 " ]; then
    echo "1..0 # SKIP scontrol show hostnames does not work here: $(head -1 "$T/e")"; exit 0
fi
seed=${FA4CP_HOSTLIST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
nrand=${FA4CP_HOSTLIST_RANDOM:-400}
cp "$src/tests/hostlist/edge-cases.txt" "$T/exprs"
"$X" --random "$nrand" "$seed" >>"$T/exprs" || { echo "Bail out! hostlist_expand --random failed"; exit 1; }
n=0 same=0 bad=0 refused=0 hosts=0
# slurm: its hosts, or "INVALID" (scontrol says so on stderr and exits 0)
slurm() { "$SCONTROL" -- show hostnames "$1" >"$T/so" 2>"$T/se"
          if grep -q '^Invalid hostlist' "$T/se"; then echo INVALID >"$T/so"; fi; }
ours() { "$X" "$1" >"$T/fo" 2>"$T/fe"; rc=$?
         if [ $rc = 1 ]; then echo INVALID >"$T/fo"; elif [ $rc != 0 ]; then echo "CRASH $rc" >"$T/fo"; fi; }
while IFS= read -r e; do
    n=$((n + 1))
    slurm "$e"; ours "$e"
    if cmp -s "$T/so" "$T/fo"; then
        same=$((same + 1))
        if [ "$(head -1 "$T/so")" = INVALID ]; then refused=$((refused + 1)); else
            hosts=$((hosts + $(wc -l <"$T/so"))); fi
    else
        bad=$((bad + 1))
        echo "not ok $((bad)) - '$e': fa4cp and scontrol differ"
        echo "#   scontrol: $(head -c 300 "$T/so" | tr '\n' ' ') $(grep -v '^Invalid' "$T/se" | head -1)"
        echo "#   fa4cp:    $(head -c 300 "$T/fo" | tr '\n' ' ') $(grep '^#' "$T/fe")"
    fi
done <"$T/exprs"
k=$bad
k=$((k + 1)); if [ $bad = 0 ] && [ $n -ge 300 ]; then
    echo "ok $k - $same of $n expressions expand as 'scontrol show hostnames' does ($refused refused by both, $hosts hosts; random seed $seed)"
else echo "not ok $k - $same of $n expressions agree with scontrol (random seed $seed)"; fi
# overflow: Slurm wraps or clamps the number; fa4cp refuses and says why
while IFS= read -r e; do
    ours "$e"; slurm "$e"
    k=$((k + 1))
    if [ "$(cat "$T/fo")" = INVALID ] && grep -q 'too large' "$T/fe"; then
        echo "ok $k - '$e' is refused as too large (Slurm gives: $(head -c 80 "$T/so" | tr '\n' ' '))"
    else echo "not ok $k - '$e' should be refused as too large: $(cat "$T/fo" "$T/fe" | head -2)"; fi
done <"$src/tests/hostlist/overflow.txt"
echo "1..$k"
