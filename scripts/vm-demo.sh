#!/usr/bin/env bash
# Quick start 3: set up (QEMU, dnsmasq and the other test packages, the bootable Debian root,
# the build), then boot a small cluster of VMs that network-boot imageswarm's installer,
# install a Debian image over the swarm and boot it. Needs root (network namespaces, taps).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "vm-demo: run as root: the VMs need a network namespace, taps and loop devices" >&2
  exit 2
fi
bash scripts/setup.sh --test
exec node scripts/vm-demo.mjs "$@"
