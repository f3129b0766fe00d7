#!/bin/sh
# install-deps.sh - install what fa4cp needs to build and test, on Debian 12 or
# Ubuntu 24.04 (apt).  Installs only what is missing; uses sudo when not root.
# CUDA and NCCL are optional and not installed here (configure finds them in
# /usr/local/cuda).  Pass --with-slurm to add what the Slurm cluster tests use.
set -e
pkgs="build-essential autoconf automake libtool pkg-config libyaml-dev libjansson-dev libpmix-dev"
[ "${1:-}" = "--with-slurm" ] && pkgs="$pkgs libpmix-bin slurmctld slurmd slurm-client munge iproute2 util-linux bc"
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && { echo "install-deps: everything is installed"; exit 0; }
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
echo "install-deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
