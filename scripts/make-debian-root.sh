#!/usr/bin/env bash
# Builds Debian 12 roots with debootstrap for the tests, once per machine: they are kept
# under /var/cache/imageswarm-tests (outside the clone, so later runs and fresh clones
# reuse them) and rebuilt only when missing.
#   scripts/make-debian-root.sh [DIR]              minbase: the archive fidelity test's root
#   scripts/make-debian-root.sh --bootable [DIR]   a root that boots: kernel, GRUB, systemd,
#                                                  DHCP on every NIC (the VM tests' image)
set -euo pipefail
variant=minbase
if [[ "${1:-}" == "--bootable" ]]; then
  variant=bootable
  shift
fi
cache=/var/cache/imageswarm-tests
if [[ $variant == minbase ]]; then
  dir="${1:-${IMAGESWARM_DEBIAN_ROOT:-$cache/bookworm-minbase}}"
else
  dir="${1:-${IMAGESWARM_BOOTABLE_ROOT:-$cache/bookworm-bootable}}"
fi
if [[ -f "$dir/etc/debian_version" ]]; then
  echo "debian root: reusing $dir"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "debian root: needs root (debootstrap creates device nodes and owners); skipped" >&2
  exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
partial="$dir.partial-$$"
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}" 2>/dev/null || true; done
  rm -rf "$partial" "$partial.log"
}
trap cleanup EXIT
mkdir -p "$(dirname "$dir")"
echo "debian root: debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
debootstrap --variant=minbase bookworm "$partial" "$mirror" >"$partial.log" 2>&1 || {
  tail -20 "$partial.log" >&2
  exit 1
}
# Nothing of debootstrap's may stay mounted in it.
for m in proc sys dev/pts; do mountpoint -q "$partial/$m" && umount "$partial/$m"; done

if [[ $variant == bootable ]]; then
  # What a site's image of a compute node has, kept small for installs under emulation
  # (about 270 MB unpacked): no documentation, locales or drivers a server room lacks.
  cat >"$partial/etc/dpkg/dpkg.cfg.d/01-imageswarm-small" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/lib/modules/*/kernel/drivers/gpu/*
path-exclude=/lib/modules/*/kernel/sound/*
path-exclude=/lib/modules/*/kernel/drivers/media/*
path-exclude=/lib/modules/*/kernel/drivers/infiniband/*
path-exclude=/lib/modules/*/kernel/drivers/net/wireless/*
EOF
  # Packages' maintainer scripts must not start services on this machine.
  printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
  chmod +x "$partial/usr/sbin/policy-rc.d"
  for m in proc sys dev; do
    mount --bind "/$m" "$partial/$m"
    mounted+=("$partial/$m")
  done
  echo "debian root: installing a kernel, GRUB and systemd into it"
  chroot "$partial" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get -o Acquire::Languages=none update -qq >"$partial.log" 2>&1
  chroot "$partial" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends \
    linux-image-cloud-amd64 grub-pc systemd-sysv udev zstd >>"$partial.log" 2>&1 || {
    tail -20 "$partial.log" >&2
    exit 1
  }
  chroot "$partial" apt-get clean
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[$i]}"; done
  mounted=()
  rm -f "$partial/usr/sbin/policy-rc.d"
  rm -rf "$partial"/var/lib/apt/lists/* "$partial"/usr/share/doc/*/[!c]* "$partial"/usr/share/man/* \
    "$partial"/usr/share/locale/[!l]*
  # Every node makes its own machine id at first boot (an image must not carry one).
  : >"$partial/etc/machine-id"
  # The console is the serial port as well (a node's console in a rack, and the VMs').
  sed -i 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/
s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/
s/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"/' \
    "$partial/etc/default/grub"
  printf 'GRUB_TERMINAL="console serial"\nGRUB_SERIAL_COMMAND="serial --speed=115200"\n' \
    >>"$partial/etc/default/grub"
  mkdir -p "$partial/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' \
    >"$partial/etc/systemd/network/80-dhcp.network"
  chroot "$partial" systemctl enable systemd-networkd >/dev/null 2>&1
fi

rm -f "$partial.log"
mv "$partial" "$dir"
trap - EXIT
echo "debian root: built $dir ($(du -sh "$dir" | cut -f1))"
