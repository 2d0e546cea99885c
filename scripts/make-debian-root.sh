#!/usr/bin/env bash
# Builds a minimal Debian 12 root with debootstrap for the archive fidelity test, once per
# machine: it is kept under /var/cache/imageswarm-tests (outside the clone, so later runs
# and fresh clones reuse it) and rebuilt only when missing.
#   scripts/make-debian-root.sh [DIR]
set -euo pipefail
dir="${1:-${IMAGESWARM_DEBIAN_ROOT:-/var/cache/imageswarm-tests/bookworm-minbase}}"
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
trap 'rm -rf "$partial"' EXIT
mkdir -p "$(dirname "$dir")"
echo "debian root: debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
debootstrap --variant=minbase bookworm "$partial" "$mirror" >"$partial.log" 2>&1 || {
  tail -20 "$partial.log" >&2
  exit 1
}
rm -f "$partial.log"
# Nothing of debootstrap's may stay mounted in it.
for m in proc sys dev/pts; do mountpoint -q "$partial/$m" && umount "$partial/$m"; done
mv "$partial" "$dir"
trap - EXIT
echo "debian root: built $dir ($(du -sh "$dir" | cut -f1))"
