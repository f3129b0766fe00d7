#!/bin/sh
# install.sh - `make install DESTDIR=...` puts the tools, the shipped
# workloads and job scripts ($(pkgdatadir)/jobs), the documents ($(docdir))
# and the manual pages in place, the scripts and pages name the installed
# paths, and an installed sbatch-style command line runs a shipped workload
# found by name: acceptance.sbatch with WORKLOAD=smoke under a stand-in srun
# (no Slurm needed), and a planned acceptance for 2 nodes (--dry-run).
b=${top_builddir:-.}
T=${TMPDIR:-/tmp}/fa4cp-install.$$
D=$T/dest
mkdir -p "$T" || exit 99
trap 'rm -rf "$T"' EXIT
n=0 fails=0
t() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi; }
if ! make -s -C "$b" install DESTDIR="$D" >"$T/install.log" 2>&1; then
    echo "not ok 1 - make install DESTDIR=$D"; sed 's/^/# /' "$T/install.log" | tail -20; echo "1..1"; exit 1
fi
t 0 "make install DESTDIR=..."
J=$D$pkgdatadir/jobs
for f in acceptance.yaml acceptance-internode.yaml smoke.yaml kernel.yaml weak-scaling.yaml strong-scaling.yaml; do
    t "$([ -f "$J/$f" ] && echo 0 || echo 1)" "workload $f in \$(pkgdatadir)/jobs"
done
for f in acceptance.sbatch scaling.sbatch layout.sbatch; do
    t "$([ -x "$J/$f" ] && echo 0 || echo 1)" "job script $f in \$(pkgdatadir)/jobs, executable"
done
for f in README.md workloads.md exit-codes.md world.md cp.md; do
    t "$([ -f "$D$docdir/$f" ] && echo 0 || echo 1)" "$f in \$(docdir)"
done
missing=
for f in "${top_srcdir:-.}"/docs/*.md; do [ -f "$D$docdir/$(basename "$f")" ] || missing="$missing $(basename "$f")"; done
t "$([ -z "$missing" ] && echo 0 || echo 1)" "every docs/*.md of the sources is installed${missing:+ (missing:$missing)}"
M=$D$mandir/man1
t "$([ -f "$M/fa4cp-run.1" ] && [ -f "$M/fa4cp-layout.1" ] && [ -f "$M/fa4cp-report.1" ] && echo 0 || echo 1)" "three manual pages"
t "$(grep -q "$docdir/workloads.md" "$M/fa4cp-run.1" && grep -q "$pkgdatadir/jobs/NAME" "$M/fa4cp-run.1" && echo 0 || echo 1)" \
    "fa4cp-run(1) names the installed documents and workloads"
t "$(cat "$J"/*.sbatch "$M"/*.1 | grep -c '@[a-zA-Z_]*@' | grep -qx 0 && echo 0 || echo 1)" "no @variable@ left in scripts and pages"
t "$(grep -q "sbatch $pkgdatadir/jobs/acceptance.sbatch" "$J/acceptance.sbatch" && grep -q "FA4CP_RUN:-$bindir/fa4cp-run" "$J/acceptance.sbatch" && echo 0 || echo 1)" \
    "acceptance.sbatch names its installed path and fa4cp-run's"

# the installed tools, from DESTDIR: libraries and the data directory moved
LD_LIBRARY_PATH=$D$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
FA4CP_DATADIR=$D$pkgdatadir
FA4CP_RUN=$D$bindir/fa4cp-run
export LD_LIBRARY_PATH FA4CP_DATADIR FA4CP_RUN
"$FA4CP_RUN" --help >"$T/help" 2>&1
t "$(grep -q "$D$pkgdatadir/jobs/NAME" "$T/help" && echo 0 || echo 1)" "fa4cp-run --help names the directory it searches"
env -u FA4CP_DATADIR "$FA4CP_RUN" --help >"$T/help2" 2>&1
t "$(grep -q " $pkgdatadir/jobs/NAME" "$T/help2" && echo 0 || echo 1)" "without FA4CP_DATADIR it is \$(pkgdatadir)/jobs ($pkgdatadir)"
# a stand-in srun: drops its own options and runs the command (one task)
mkdir -p "$T/sbin"
cat >"$T/sbin/srun" <<'SRUN'
#!/bin/sh
while [ $# -gt 0 ]; do case $1 in -*) shift ;; *) break ;; esac; done
exec "$@"
SRUN
chmod +x "$T/sbin/srun"
unset SLURM_PROCID SLURM_STEP_ID SLURM_STEP_NUM_TASKS PMIX_NAMESPACE
(cd "$T" && PATH=$T/sbin:$PATH SLURM_JOB_ID=4242 WORKLOAD=smoke bash "$J/acceptance.sbatch" --ranks 4 -q) >"$T/o" 2>"$T/e"
rc=$?
t "$rc" "installed acceptance.sbatch with WORKLOAD=smoke --ranks 4: exit $rc"
[ "$rc" = 0 ] || sed 's/^/# /' "$T/e" | tail -5
t "$(grep -c '^ok ' "$T/o" | grep -qx 6 && echo 0 || echo 1)" "TAP: 6 cases ok ($(grep -c '^ok ' "$T/o"))"
t "$([ "$(wc -l <"$T/results/accept-4242/results.jsonl")" = 6 ] && grep -q "\"file\":\"$D$pkgdatadir/jobs/smoke.yaml\"" "$T/results/accept-4242/results.jsonl" && echo 0 || echo 1)" \
    "6 records in results/accept-4242, the workload found in the installed jobs directory"
(cd "$T" && PATH=$T/sbin:$PATH SLURM_JOB_ID=4243 bash "$J/acceptance.sbatch" --dry-run --nodes 2 --tasks-per-node 8) >"$T/o" 2>"$T/e"
rc=$?
t "$rc" "installed acceptance.sbatch --dry-run --nodes 2 --tasks-per-node 8 (the shipped acceptance workload): exit $rc"
[ "$rc" = 0 ] || sed 's/^/# /' "$T/e" | tail -5
"$FA4CP_RUN" --dry-run no-such-workload >/dev/null 2>"$T/e"
rc=$?
t "$([ $rc = 2 ] && grep -q "no workload of that name in $D$pkgdatadir/jobs" "$T/e" && echo 0 || echo 1)" "an unknown name: exit 2 and where it looked (exit $rc)"
echo "1..$n"
[ $fails = 0 ]
