#!/usr/bin/env bash
# Sets up a fresh machine (Debian 12 with Node 20 and npm) for imageswarm: the system
# tools it drives, pnpm from the npm registry, the workspace's packages, and a build.
# Safe to run again; it only installs what is missing.
#   scripts/setup.sh           tools for running imageswarm and the demo
#   scripts/setup.sh --test    also what the test suite uses
#   scripts/setup.sh --bench   also what the benchmarks use (aria2, ethtool)
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.9
# GNU tar and zstd are the archive engine, squashfs-tools-ng (tar2sqfs, sqfs2tar) the SquashFS
# one; util-linux gives unshare (deterministic
# sparse members); acl, attr and libcap2-bin let the tests make the metadata a real
# root has (ACLs, xattrs, file capabilities); Chromium runs the dashboard's browser test;
# python3-libtorrent is the foreign seeder of the mixed-swarm test (test/faults-swarm).
RUNTIME_DEBS=(tar zstd gzip util-linux squashfs-tools-ng)
TEST_DEBS=(acl attr libcap2-bin iproute2 chromium debootstrap python3-libtorrent)
# The installer ramdisk (imageswarm initrd) packs with cpio and carries busybox and the disk
# tools; its boot test runs QEMU (Debian's iPXE ROMs) with dnsmasq for DHCP.
TEST_DEBS+=(cpio busybox-static kmod fdisk dosfstools xfsprogs qemu-system-x86 ipxe-qemu dnsmasq-base)
# The VM harness (scripts/lib/vm-*.mjs): qemu-img makes the VMs' sparse disks, OVMF is their
# UEFI firmware, mkfs.ext4 (e2fsprogs) formats the harness test's partition.
TEST_DEBS+=(qemu-utils ovmf e2fsprogs)
# Trust (issue 17): the key and signature tests check our minisign files against the real tool,
# and our secret key files against openssl (PKCS#8, and a key openssl encrypted with scrypt).
TEST_DEBS+=(minisign openssl)
# Encrypted archives: a packet capture of the swarm (test/trust-encryption-capture.test.ts)
# must not hold the image's marker.
TEST_DEBS+=(tcpdump)
# SquashFS images: mksquashfs makes the hostile images of the core tests (and the benchmark's
# reference).
TEST_DEBS+=(squashfs-tools)
# Packaging (issue 18, test/package-install.test.ts): systemd-analyze verifies the service unit
# (systemd need not run); dpkg-deb, which builds and unpacks the .deb, is in dpkg already.
TEST_DEBS+=(systemd)
# Several servers (issue 21, test/mirror.test.ts): stock aria2 downloads with the torrent that
# lists every server, its first tracker dead.
TEST_DEBS+=(aria2)

# The swarm benchmark (scripts/bench-swarm) compares against aria2 and turns offloads off.
BENCH_DEBS=(aria2 ethtool iproute2 curl)

debs=("${RUNTIME_DEBS[@]}")
if [[ "${1:-}" == "--test" ]]; then debs+=("${TEST_DEBS[@]}"); fi
if [[ "${1:-}" == "--bench" ]]; then debs+=("${TEST_DEBS[@]}" "${BENCH_DEBS[@]}"); fi

missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed" || missing+=("$deb")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pnpm comes from the npm registry into the project's own tool directory (no global
# install, no corepack: its signature check cannot reach its keys here).
PNPM_HOME_DIR="$PWD/.cache/pnpm"
if [[ ! -x "$PNPM_HOME_DIR/node_modules/.bin/pnpm" ]] ||
  [[ "$("$PNPM_HOME_DIR/node_modules/.bin/pnpm" --version)" != "$PNPM_VERSION" ]]; then
  echo "setup: installing pnpm $PNPM_VERSION from the npm registry"
  npm install --silent --no-audit --no-fund --prefix "$PNPM_HOME_DIR" "pnpm@$PNPM_VERSION" >/dev/null
fi
export PATH="$PNPM_HOME_DIR/node_modules/.bin:$PATH"
# Turborepo would send usage telemetry; these machines, and many install networks, are offline.
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

pnpm install --frozen-lockfile --reporter=silent
pnpm exec turbo run build --output-logs=errors-only
# The archive fidelity test installs a real Debian root; it is built once per machine.
# The VM tests install a bootable Debian root (kernel, GRUB, systemd) onto virtual machines.
if [[ "${1:-}" == "--test" ]]; then
  bash scripts/make-debian-root.sh
  bash scripts/make-debian-root.sh --bootable
fi
echo "setup: ready (node $(node --version), pnpm $(pnpm --version), $(tar --version | head -1), $(zstd --version))"
