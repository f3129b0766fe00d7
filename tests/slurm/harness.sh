# harness.sh - sourced by the TAP scripts that start local Slurm clusters
# (tests/slurm.sh, tests/run_mpi_slurm.sh, tests/test_run_slurm.sh): the skip,
# TAP and clean-up helpers, the checks before a cluster can be started, one
# cluster at a time, and free TCP ports (several checkouts, or a cluster of
# shared/slurm-local, may run on the same machine).

skip_all() { echo "1..0 # SKIP $*"; exit 0; }

N=0
FAILS=0
ok() { # ok STATUS DESCRIPTION (STATUS 0 = pass)
    N=$((N + 1))
    if [ "$1" = 0 ]; then echo "ok $N - $2"; else echo "not ok $N - $2"; FAILS=$((FAILS + 1)); fi
}
diag() { sed 's/^/# /'; }

run() { # run TIMEOUT OUT ERR CMD... ; sets RC and DT (seconds)
    local t=$1 o=$2 e=$3 t0
    shift 3
    t0=$(date +%s)
    timeout -k 5 "$t" "$@" >"$o" 2>"$e"
    RC=$?
    DT=$(($(date +%s) - t0))
}

# the stop scripts of every cluster started, run on every exit path
STOPS=()
slurm_cleanup() {
    local s
    for s in "${STOPS[@]}"; do bash "$s" >/dev/null 2>&1; done
}
trap slurm_cleanup EXIT
trap 'exit 1' INT TERM

# slurm_can_start DIR: skip unless this machine can start a cluster (root,
# the Slurm daemons or apt-get, bc and flock), then take DIR/lock (one test
# cluster at a time: plain and sanitizer builds, or two checkouts).
slurm_can_start() {
    [ "${FA4CP_SKIP_SLURM:-0}" = 1 ] && skip_all "FA4CP_SKIP_SLURM=1"
    local c
    [ "$(id -u)" = 0 ] || skip_all "not root: the test starts slurmctld/slurmd (and network namespaces)"
    if [ "${FA4CP_SLURM_NO_APT:-0}" = 1 ]; then

        for c in slurmctld slurmd srun; do
            command -v "$c" >/dev/null || skip_all "$c not installed (FA4CP_SLURM_NO_APT=1)"
        done
        export SLURM_LOCAL_SKIP_APT=1 SLURM_2NODE_SKIP_APT=1
    fi
    for c in bc flock; do
        command -v "$c" >/dev/null || skip_all "$c not installed (the cluster scripts need it)"
    done
    export SLURM_2NODE_AUTH=none SLURM_LOCAL_AUTH=none
    mkdir -p "$1"
    exec 9>"$1/lock"
    flock -w 600 9 || skip_all "another fa4cp Slurm test held $1/lock for 10 minutes"
}

# free_port BASE: BASE, BASE+10, ... the first whose port and port+1 nobody
# listens on (slurmctld takes the port, slurmd the next one)
free_port() {
    local p=$1 used
    used=$(ss -Hltn 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}')
    while printf '%s\n' "$used" | grep -qx -e "$p" -e "$((p + 1))"; do p=$((p + 10)); done
    echo "$p"
}
