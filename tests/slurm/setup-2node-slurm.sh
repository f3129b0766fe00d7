#!/usr/bin/env bash
# setup-2node-slurm.sh (fa4cp copy of shared/slurm-local, names made configurable) - a real SLURM cluster of N emulated nodes (default 2) on ONE machine, for CI.
#
# Debian 12 (bookworm), as root, no systemd needed. Each node is one slurmd in
# its own network namespace (own IP on a private bridge) and its own UTS
# namespace (gethostname() == node name), so `srun -N2 ... --mpi=pmix` really
# spreads ranks over two "hosts": PMIX_NODEID, PMIX_LOCAL_RANK, PMIX_HOSTNAME
# and gethostname() differ per node, and cross-node traffic goes over TCP.
# The nodes still share the filesystem (/tmp, /dev/shm) and the CPUs.
#
# Topology (test-only addresses, all inside namespaces this script creates):
#   bridge slt-br0 10.200.0.1/24 in the root namespace (slurmctld, srun, munged)
#   netns slt-node<i>: eth0 10.200.0.(10+i)/24, slurmd -N node<i>
#
# Settings (environment):
#   SLURM_2NODE_DIR        where everything lives      (/tmp/slurm-local/cluster2)
#   SLURM_2NODE_NODES      number of nodes (1..9)      (2)
#   SLURM_2NODE_CPUS       CPUs each node advertises   (4)
#   SLURM_2NODE_AUTH       munge | none                (munge)
#   SLURM_2NODE_CTLD_PORT  slurmctld port              (6827, so it can coexist with
#                                                      setup-local-slurm.sh's 6817)
#   SLURM_2NODE_SKIP_APT   1 = never run apt-get       (0)
#   SLURM_2NODE_WAIT       seconds to wait for idle    (60)
#   SLURM_2NODE_BRIDGE     bridge name                 (slt-br0)
#   SLURM_2NODE_NS         netns/veth name prefix      (slt: netns slt-node<i>, veth slt-n<i>)
#   SLURM_2NODE_NET        first three octets          (10.200.0)
#
# Afterwards:  source $SLURM_2NODE_DIR/env.sh   (exports SLURM_CONF)
#              srun -N2 --ntasks-per-node=2 --mpi=pmix ./prog
# Stop:        bash $SLURM_2NODE_DIR/stop.sh    (kills only the PIDs this script started,
#                                               removes the bridge and namespaces)
# Note: with AUTH=munge an already-running munged is reused and NOT stopped by stop.sh;
#       the script that started munged stops it, so when both setup scripts run at once,
#       stop the cluster that printed 'reusing it' first (or use AUTH=none for one of them).
set -euo pipefail

PREFIX=${SLURM_2NODE_DIR:-/tmp/slurm-local/cluster2}
NNODES=${SLURM_2NODE_NODES:-2}
CPUS=${SLURM_2NODE_CPUS:-4}
AUTH=${SLURM_2NODE_AUTH:-munge}
CTLD_PORT=${SLURM_2NODE_CTLD_PORT:-6827}
SKIP_APT=${SLURM_2NODE_SKIP_APT:-0}
WAIT_S=${SLURM_2NODE_WAIT:-60}
BR=${SLURM_2NODE_BRIDGE:-slt-br0}
NSP=${SLURM_2NODE_NS:-slt}
NET=${SLURM_2NODE_NET:-10.200.0}
CTLD_ADDR=$NET.1
PKGS=(slurmctld slurmd slurm-client munge libpmix-dev libpmix-bin gcc pkgconf iproute2 util-linux)

T0=$(date +%s.%N)
say() { printf '[setup-2node-slurm %6.2fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { echo "setup-2node-slurm: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

[ "$(id -u)" = 0 ] || die "run as root"
case "$AUTH" in munge|none) ;; *) die "SLURM_2NODE_AUTH must be munge or none";; esac
[ "$NNODES" -ge 1 ] && [ "$NNODES" -le 9 ] || die "SLURM_2NODE_NODES must be 1..9"

# ---------------------------------------------------------------- packages
t=$(now)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$SKIP_APT" = 1 ] && die "missing packages: ${missing[*]} (SLURM_2NODE_SKIP_APT=1)"
    say "apt-get update; installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${PKGS[@]}" >/dev/null
fi
T_APT=$(secs "$t" "$(now)")
say "packages ready ($T_APT s): $(dpkg-query -W -f='${Package}=${Version} ' slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge libpmix2)"

# ---------------------------------------------------------------- stop a previous instance
if [ -f "$PREFIX/stop.sh" ]; then
    say "stopping previous instance in $PREFIX"
    bash "$PREFIX/stop.sh" || true
fi

# ---------------------------------------------------------------- directories + config
rm -rf "$PREFIX/state" "$PREFIX/spool" "$PREFIX/run" "$PREFIX/tmp"
mkdir -p "$PREFIX"/{etc,state,log,run}
for i in $(seq "$NNODES"); do mkdir -p "$PREFIX/spool/slurmd-node$i" "$PREFIX/tmp/node$i"; done
CONF=$PREFIX/etc/slurm.conf
if [ "$AUTH" = munge ]; then AUTHTYPE=auth/munge; CREDTYPE=cred/munge; else AUTHTYPE=auth/none; CREDTYPE=cred/none; fi

cat > "$CONF" <<EOF
# Written by setup-2node-slurm.sh - $NNODES emulated nodes, everything as root.
ClusterName=localci2
SlurmctldHost=localhost($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=$AUTHTYPE
CredType=$CREDTYPE
StateSaveLocation=$PREFIX/state
# Per-node paths (%n = node name): the emulated nodes share one filesystem.
SlurmdSpoolDir=$PREFIX/spool/slurmd-%n
# PMIx creates TmpFS/spmix_appdir_<uid>_<job>.<step> on every node: it must differ per node.
TmpFS=$PREFIX/tmp/%n
SlurmctldPidFile=$PREFIX/run/slurmctld.pid
SlurmdPidFile=$PREFIX/run/slurmd-%n.pid
SlurmctldLogFile=$PREFIX/log/slurmctld.log
SlurmdLogFile=$PREFIX/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
MinJobAge=30
EOF
for i in $(seq "$NNODES"); do
    echo "NodeName=node$i NodeAddr=$NET.$((10 + i)) CPUs=$CPUS RealMemory=1000 State=UNKNOWN" >> "$CONF"
done
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$CONF"
: > "$PREFIX/etc/plugstack.conf"
: > "$PREFIX/run/pids"
echo "$NNODES" > "$PREFIX/run/nnodes"
echo "$BR $NSP" > "$PREFIX/run/net"

alive() {      # running and not a zombie (kill -0 succeeds on zombies)
    local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}
start_bg() {   # start_bg NAME LOGFILE CMD... ; records "NAME PID LOG" in run/pids
    local name=$1 logf=$2; shift 2
    "$@" < /dev/null > "$logf" 2>&1 &
    echo "$name $! $logf" >> "$PREFIX/run/pids"
}

cat > "$PREFIX/env.sh" <<EOF
export SLURM_CONF=$CONF
EOF
cat > "$PREFIX/stop.sh" <<'EOF'
#!/usr/bin/env bash
# Stops only the daemons recorded in run/pids (started by setup-2node-slurm.sh),
# then removes the bridge and network namespaces that script created.
D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SLURM_CONF=$D/etc/slurm.conf
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1; [ -n "$st" ] && [ "$st" != Z ]; }
if [ -s "$D/run/pids" ]; then
    ctld=$(awk '$1=="slurmctld"{print $2}' "$D/run/pids")
    if [ -n "$ctld" ] && alive "$ctld"; then   # cancel leftover jobs so no slurmstepd outlives slurmd
        jobs=$(squeue -h -o %i 2>/dev/null)
        if [ -n "$jobs" ]; then
            scancel $jobs
            for _ in $(seq 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
        fi
    fi
    tac "$D/run/pids" | while read -r name pid _; do      # slurmds, slurmctld, munged
        comm=${name%%-*}                                  # slurmd-node1 -> slurmd
        if alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
            kill "$pid"
            for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -9 "$pid"
            echo "stopped $name (pid $pid)"
        fi
    done
    : > "$D/run/pids"
fi
n=$(cat "$D/run/nnodes" 2>/dev/null || echo 0)
read -r br nsp < "$D/run/net" 2>/dev/null || { br=slt-br0; nsp=slt; }
ip link show "$br" >/dev/null 2>&1 && ip link del "$br" && echo "removed bridge $br"
for i in $(seq "$n"); do
    ip netns list | grep -qw "$nsp-node$i" && ip netns del "$nsp-node$i" && echo "removed netns $nsp-node$i"
done
exit 0
EOF
chmod +x "$PREFIX/stop.sh"

# ---------------------------------------------------------------- network: bridge + one netns per node
t=$(now)
ip link show "$BR" >/dev/null 2>&1 && die "$BR already exists (another instance without stop.sh?)"
ip link add "$BR" type bridge
ip addr add "$CTLD_ADDR/24" dev "$BR"
ip link set "$BR" up
for i in $(seq "$NNODES"); do
    ns=$NSP-node$i
    ip netns list | grep -qw "$ns" && ip netns del "$ns"
    ip netns add "$ns"
    ip link add "$NSP-n$i" type veth peer name eth0 netns "$ns"
    ip link set "$NSP-n$i" master "$BR" up
    ip -n "$ns" addr add "$NET.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done
T_NET=$(secs "$t" "$(now)")

# ---------------------------------------------------------------- munge
t=$(now)
if [ "$AUTH" = munge ]; then
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already running; reusing it (not stopped by stop.sh)"
    else
        start_bg munged "$PREFIX/log/munged.out" setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
        for _ in $(seq 100); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
        munge -n | unmunge >/dev/null || { cat "$PREFIX/log/munged.out" >&2; bash "$PREFIX/stop.sh" >&2; die "munged did not start"; }
    fi
fi

# ---------------------------------------------------------------- slurm daemons
t=$(now)
export SLURM_CONF=$CONF
start_bg slurmctld "$PREFIX/log/slurmctld.out" slurmctld -D -f "$CONF"
for i in $(seq "$NNODES"); do
    # nsenter --net (NOT `ip netns exec`: that remounts /sys, hiding /sys/fs/cgroup, and slurmd
    # then dies with "No filesystem mounted on /sys/fs/cgroup"). unshare --uts gives the node
    # its own hostname; `exec` keeps the recorded PID == slurmd's PID.
    start_bg "slurmd-node$i" "$PREFIX/log/slurmd-node$i.out" \
        nsenter --net="/run/netns/$NSP-node$i" unshare --uts \
        sh -c "hostname node$i && exec slurmd -D -N node$i -f '$CONF'"
done

deadline=$(( $(date +%s) + WAIT_S ))
while :; do
    states=$(sinfo -h -N -o '%T' 2>/dev/null | sort -u | paste -sd' ' || true)
    nidle=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | wc -l || true)
    [ "$states" = idle ] && [ "$nidle" = "$NNODES" ] && break
    while read -r name pid logf; do
        alive "$pid" || { tail -n 20 "$logf" >&2; bash "$PREFIX/stop.sh" >&2; die "$name (pid $pid) exited"; }
    done < "$PREFIX/run/pids"
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 20 "$PREFIX"/log/*.out >&2; bash "$PREFIX/stop.sh" >&2; die "nodes not idle after ${WAIT_S}s (states '$states')"; }
    sleep 0.1
done
T_DAEMONS=$(secs "$t" "$(now)")
say "$NNODES nodes idle ($T_DAEMONS s after starting daemons; network setup $T_NET s)"
sinfo -N

# ---------------------------------------------------------------- smoke test
t=$(now)
out=$(srun -N "$NNODES" --ntasks-per-node=1 --mpi=pmix sh -c 'echo "$PMIX_RANK:$(hostname)"' | sort | paste -sd' ')
T_SRUN=$(secs "$t" "$(now)")
want=$(for i in $(seq "$NNODES"); do echo "$((i - 1)):node$i"; done | paste -sd' ')
[ "$out" = "$want" ] || { bash "$PREFIX/stop.sh" >&2; die "smoke test: got '$out', want '$want'"; }
say "smoke test ok: srun -N$NNODES --ntasks-per-node=1 --mpi=pmix -> $out ($T_SRUN s)"

PROBE_SRC=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/pmix_probe.c
if [ -f "$PROBE_SRC" ] && [ "$NNODES" -ge 2 ]; then
    gcc -O2 -Wall -o "$PREFIX/pmix_probe" "$PROBE_SRC" $(pkg-config --cflags --libs pmix)
    srun -N 2 --ntasks-per-node=2 -m cyclic --mpi=pmix "$PREFIX/pmix_probe" | sort
fi

T_TOTAL=$(secs "$T0" "$(now)")
cat <<EOF

SLURM $NNODES-node test cluster is up (total ${T_TOTAL}s; packages ${T_APT}s, daemons ${T_DAEMONS}s).
  PIDs:    $(awk '{printf "%s %s  ", $1, $2}' "$PREFIX/run/pids")
  Use:     export SLURM_CONF=$CONF      (or: source $PREFIX/env.sh)
           srun -N2 --ntasks-per-node=2 --mpi=pmix ./prog
  Logs:    $PREFIX/log/
  Stop:    bash $PREFIX/stop.sh
EOF
