#!/bin/bash
# round.sh check|speed NAME... : every NAME/run.sh (cwd NAME, OUT=$OUT/NAME);
# check: all at once; speed: one after another, alone on the GPU
cd "$(dirname "$0")"; ph=$1; shift; S=$(date +%s); R=$OUT
el() { echo "t=$(( $(date +%s) - S ))"; }
if [ -d main ]; then (cd main && for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null); fi
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader; } > $R/gpu-$ph.txt
for n in "$@"; do (cd $n && for f in *.xz; do [ -e "$f" ] && xz -d -f "$f"; done; chmod +x ./* 2>/dev/null); done
for n in "$@"; do
  mkdir -p $R/$n
  if [ "$ph" = check ]; then
    ( cd $n && OUT=$R/$n timeout 330 bash run.sh check > $R/$n/run-check.log 2>&1; echo "$n check rc=$? $(el)" >> $R/rc.txt ) &
  else
    ( cd $n && OUT=$R/$n timeout 200 bash run.sh speed > $R/$n/run-speed.log 2>&1; echo "$n speed rc=$? $(el)" >> $R/rc.txt )
  fi
done
wait; el >> $R/rc.txt; cat $R/rc.txt
for n in "$@"; do echo "=== $n"; tail -40 $R/$n/run-$ph.log; done
cd $R && tar czf /tmp/round.tgz . && rm -rf $R/* && mv /tmp/round.tgz $R/all.tgz
