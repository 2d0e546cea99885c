#!/usr/bin/env bash
# Checks the dracut module and the initramfs-tools hook for real: in a copy of the bootable
# Debian test root (never the host's own /boot), installs the builder, adds node, the
# imageswarm program and the glue, builds an initramfs for the root's kernel, lists it,
# and boots it under QEMU (TCG) with no image server reachable: the console must show the
# install starting, its clear failure and the power-off. Needs root and the network (apt).
#   packages/installer/scripts/check-initramfs-builders.sh [dracut|initramfs-tools]...
# Takes about 2 minutes per builder here (apt, dracut, a 60 s boot under TCG).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/../.." && pwd)
root_src=${IMAGESWARM_BOOTABLE_ROOT:-/var/cache/imageswarm-tests/bookworm-bootable}
program=${IMAGESWARM_PROGRAM:-$repo/packages/cli/dist/imageswarm-installer.mjs}
[[ -f $program ]] || program=$repo/packages/cli/dist/imageswarm-install.mjs
builders=("$@")
((${#builders[@]})) || builders=(initramfs-tools dracut)

[[ $(id -u) -eq 0 ]] || { echo "check-initramfs-builders: needs root (chroot, mounts)" >&2; exit 1; }
[[ -d $root_src/boot ]] || { echo "check-initramfs-builders: no $root_src (scripts/make-debian-root.sh --bootable)" >&2; exit 1; }
[[ -f $program ]] || { echo "check-initramfs-builders: no $program (pnpm build)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/imageswarm-initramfs-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

# in_root ROOT COMMAND...: chrooted, with /dev, /proc, /sys and /run in a private mount
# namespace, so no mount outlives the command.
in_root() {
	unshare --mount --propagation private sh -c '
		root=$1; shift
		mount --rbind /dev "$root/dev"
		mount -t proc proc "$root/proc"
		mount -t sysfs sys "$root/sys"
		mount -t tmpfs tmpfs "$root/run"
		cp /etc/resolv.conf "$root/etc/resolv.conf"
		exec chroot "$root" "$@"
	' in_root "$@"
}

# prepare ROOT PACKAGES...: the test root with the builder, the disk tools, node and the program.
prepare() {
	local root=$1
	shift
	cp -a "$root_src" "$root"
	# dracut's network module would pick systemd-networkd, which needs dbus (not in the root),
	# and the package's own initramfs build would fail: use dhclient (network-legacy).
	mkdir -p "$root/etc/dracut.conf.d"
	echo 'add_dracutmodules+=" network-legacy "' >"$root/etc/dracut.conf.d/10-network-legacy.conf"
	in_root "$root" sh -c 'export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/tmp/apt.log 2>&1 ||
		{ tail -20 /tmp/apt.log; exit 1; }' apt "$@"
	install -m 0755 "$(command -v node)" "$root/usr/bin/node"
	install -D -m 0644 -t "$root/usr/lib/imageswarm" "$program" "$here/ramdisk/imageswarm-lib.sh"
	[[ -f $program.LEGAL.txt ]] && install -m 0644 "$program.LEGAL.txt" "$root/usr/lib/imageswarm/"
	return 0
}

# boot NAME KERNEL INITRD: boots under TCG with no image server reachable; checks the console.
boot() {
	local name=$1 kernel=$2 initrd=$3 console=$work/$1-console.log
	local started=$SECONDS
	timeout 600 qemu-system-x86_64 -machine q35 -accel tcg -m 768 -nographic -no-reboot \
		-monitor none -serial "file:$console" -kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 quiet imageswarm.server=http://10.0.2.2:6969 imageswarm.image=demo imageswarm.connect-timeout=5 imageswarm.on-failure=poweroff imageswarm.failure-delay=0" \
		-netdev "user,id=n0,hostname=$name-node,restrict=on" -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:58
	echo "--- $name: console (imageswarm lines), $((SECONDS - started)) s wall"
	grep -a 'imageswarm' "$console" | tr -d '\r'
	local expect
	for expect in "address 10.0.2.15 on .*, host name $name-node" 'starting imageswarm-install(er)?\.mjs with node v' \
		'error E_SERVER_UNREACHABLE' 'FAILED: the installer exited with 4: the image server is unreachable' \
		'powering off' 'reboot: Power down'; do
		grep -aEq "$expect" "$console" || { echo "FAIL $name: no console line matching: $expect" >&2; return 1; }
	done
	echo "OK $name"
}

for builder in "${builders[@]}"; do
	root=$work/$builder-root
	case $builder in
	initramfs-tools)
		prepare "$root" fdisk xfsprogs dosfstools
		install -D -m 0755 "$here/initramfs-tools/hooks/imageswarm" "$root/etc/initramfs-tools/hooks/imageswarm"
		install -D -m 0755 "$here/initramfs-tools/scripts/init-premount/imageswarm" \
			"$root/etc/initramfs-tools/scripts/init-premount/imageswarm"
		kver=$(basename "$(ls -d "$root"/lib/modules/*)")
		in_root "$root" mkinitramfs -o /tmp/imageswarm-initrd.img "$kver"
		in_root "$root" lsinitramfs /tmp/imageswarm-initrd.img >"$work/$builder.list"
		;;
	dracut)
		# dracut replaces initramfs-tools in the copy; procps gives the pgrep its network module needs.
		prepare "$root" dracut dracut-network procps fdisk xfsprogs dosfstools
		cp -r "$here/dracut/90imageswarm" "$root/usr/lib/dracut/modules.d/"
		kver=$(basename "$(ls -d "$root"/lib/modules/*)")
		in_root "$root" dracut --no-hostonly --add imageswarm --compress zstd \
			--force /tmp/imageswarm-initrd.img "$kver" >"$work/dracut.log" 2>&1 ||
			{ tail -20 "$work/dracut.log"; exit 1; }
		in_root "$root" lsinitrd /tmp/imageswarm-initrd.img >"$work/$builder.list"
		;;
	*) echo "check-initramfs-builders: unknown builder $builder" >&2; exit 2 ;;
	esac
	echo "--- $builder: $(du -h "$root/tmp/imageswarm-initrd.img" | cut -f1) initramfs; imageswarm files in it:"
	grep -E 'usr/bin/node$|usr/lib/imageswarm/|imageswarm(-install)?(\.sh)?$|usr/bin/(tar|zstd)$|usr/sbin/sfdisk$' \
		"$work/$builder.list" | awk '{ print "  " $NF }'
	for want in usr/bin/node usr/lib/imageswarm/imageswarm-lib.sh 'usr/lib/imageswarm/imageswarm-install(er)?\.mjs' \
		'(scripts/init-premount/imageswarm|hooks/pre-mount/90-imageswarm-install\.sh)'; do
		grep -Eq "$want" "$work/$builder.list" || { echo "FAIL $builder: $want is not in the initramfs" >&2; exit 1; }
	done
	boot "$builder" "$root/boot/vmlinuz-$kver" "$root/tmp/imageswarm-initrd.img"
	rm -rf "$root"
done
