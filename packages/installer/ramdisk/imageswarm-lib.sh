# imageswarm's installer steps in shell, shared by the installer ramdisk's /init, the dracut
# module (90imageswarm) and the initramfs-tools script. POSIX sh: busybox ash, dash, bash.
# Installed as /usr/lib/imageswarm/imageswarm-lib.sh; the program it runs sits beside it.

IMAGESWARM_LIB=${IMAGESWARM_LIB:-/usr/lib/imageswarm}
IMAGESWARM_RUN=/run/imageswarm
# The kernel command line; another file only in this library's tests.
IMAGESWARM_CMDLINE=${IMAGESWARM_CMDLINE:-/proc/cmdline}

# say MESSAGE...: one console line, with the seconds since boot.
say() {
	read -r uptime _ </proc/uptime
	echo "imageswarm: [$uptime] $*"
}

# cmdline_arg NAME...: prints the value of the first of these kernel parameters that is
# on the command line (a bare NAME gives 1); fails when none is.
cmdline_arg() {
	read -r cmdline <"$IMAGESWARM_CMDLINE"
	set -f
	for want in "$@"; do
		for arg in $cmdline; do
			case "$arg" in
			"$want="*) set +f; echo "${arg#*=}"; return 0 ;;
			"$want") set +f; echo 1; return 0 ;;
			esac
		done
	done
	set +f
	return 1
}

# bootif_mac: the MAC of the NIC the node booted from, lower case with colons, from BOOTIF=
# as iPXE gives it (BOOTIF=${net0/mac}: aa:bb:cc:dd:ee:ff) or PXELINUX (01-aa-bb-cc-dd-ee-ff,
# 01 being Ethernet's hardware type); fails when there is none.
bootif_mac() {
	mac=$(cmdline_arg BOOTIF) || return 1
	mac=$(echo "$mac" | tr 'A-F-' 'a-f:')
	case "$mac" in ??:??:??:??:??:??:??) mac=${mac#??:} ;; esac
	case "$mac" in ??:??:??:??:??:??) echo "$mac" ;; *) return 1 ;; esac
}

# installer_program: the program this initramfs carries: the whole installer, else the
# install-only client (which needs the target root mounted at /a already).
installer_program() {
	for program in "$IMAGESWARM_LIB/imageswarm-installer.mjs" "$IMAGESWARM_LIB/imageswarm-install.mjs"; do
		[ -f "$program" ] && echo "$program" && return 0
	done
	return 1
}

# exit_meaning CODE: what an imageswarm exit code means (EXIT_CODES in core/src/errors.ts).
exit_meaning() {
	case "$1" in
	2) echo "bad parameters: check the kernel command line" ;;
	3) echo "the image is not published on the server" ;;
	4) echo "the image server is unreachable" ;;
	5) echo "verification failed: the download does not match the image" ;;
	6) echo "no space left for staging or on the target" ;;
	7) echo "extracting the image failed" ;;
	8) echo "the download failed" ;;
	9) echo "no usable staging directory" ;;
	10) echo "the target root is not usable" ;;
	11) echo "a tool is missing from this initramfs" ;;
	12) echo "an archive could not be read" ;;
	13) echo "the server is in the wrong state" ;;
	14) echo "the disks do not fit the layout, or partitioning failed" ;;
	15) echo "the image cannot be made bootable" ;;
	16) echo "a post-install script failed" ;;
	17) echo "the image or its node config is not signed, and this node requires signed ones" ;;
	18) echo "a signature is not valid: a forged or damaged manifest, node config, override or post-install script" ;;
	19) echo "the image was signed with a revoked key" ;;
	20) echo "the image's signature, its node config or the key list has expired" ;;
	21) echo "the image is older than the one this node holds (rollback refused)" ;;
	22) echo "the server's key list is not signed by this node's root key" ;;
	23) echo "the image could not be decrypted" ;;
	24) echo "the key files are missing or not valid" ;;
	70) echo "internal error: please report it with the messages above" ;;
	130) echo "interrupted" ;;
	137) echo "killed (out of memory?)" ;;
	*) echo "exit code $1" ;;
	esac
}

# Each initramfs builder overrides these three with its own way, where it has one.
imageswarm_shell() { setsid cttyhack sh -l; }
imageswarm_reboot() { sync; reboot -f; }
imageswarm_poweroff() { sync; poweroff -f; }

# finish reboot|poweroff: does it; never returns.
finish() {
	case "$1" in
	poweroff) say "powering off"; imageswarm_poweroff ;;
	*) say "rebooting"; imageswarm_reboot ;;
	esac
	# reboot -f returns at once while the kernel goes down; wait for it.
	while :; do sleep 60; done
}

# fail WHAT...: says what failed, then does what imageswarm.on-failure= says: shell
# (default, as SystemImager), reboot or poweroff, those two after imageswarm.failure-delay=
# seconds (default 60). Never returns.
fail() {
	say "FAILED: $*"
	action=$(cmdline_arg imageswarm.on-failure) || action=shell
	delay=$(cmdline_arg imageswarm.failure-delay) || delay=60
	case "$delay" in
	'' | *[!0-9]*) say "imageswarm.failure-delay=$delay is not a number of seconds; waiting 60 s"; delay=60 ;;
	esac
	case "$action" in
	reboot | poweroff)
		say "will $action in $delay s (imageswarm.on-failure=$action)"
		sleep "$delay"
		finish "$action"
		;;
	*)
		[ "$action" = shell ] || say "imageswarm.on-failure=$action is none of shell, reboot, poweroff"
		say "opening a shell (imageswarm.on-failure=shell); leave it to reboot"
		imageswarm_shell
		finish reboot
		;;
	esac
}

# post_action: after a successful install, what imageswarm.post-action= or SystemImager's
# si.post-action= says: reboot (default, as SystemImager 5), poweroff (or shutdown), shell.
# Never returns.
post_action() {
	action=$(cmdline_arg imageswarm.post-action si.post-action) || action=reboot
	case "$action" in
	reboot | poweroff) ;;
	shutdown) action=poweroff ;;
	shell)
		say "install finished; opening a shell (post action: shell); leave it to reboot"
		imageswarm_shell
		action=reboot
		;;
	directboot | kexec) say "post action $action: imageswarm reboots into the installed system instead"; action=reboot ;;
	*) say "post action $action is none of reboot, poweroff, shell; rebooting"; action=reboot ;;
	esac
	say "install finished; post action: $action"
	finish "$action"
}

# record_network IFACE [ADDRESS]: writes what the installer needs to know of the network
# into /run/imageswarm/dhcp.env (KEY=value lines), for initramfs builders whose own DHCP
# client configured IFACE (the ramdisk's udhcpc script writes a fuller one itself). Without
# ADDRESS, IFACE's IPv4 address is read with ip.
record_network() {
	address=${2:-$(ip -4 -o addr show dev "$1" 2>/dev/null)}
	address=${address#*inet }
	address=${address%%/*}
	read -r host </proc/sys/kernel/hostname
	case "$host" in '(none)' | localhost) host= ;; esac
	mkdir -p "$IMAGESWARM_RUN"
	{
		echo "DHCP_INTERFACE=$1"
		echo "DHCP_MAC=$(cat "/sys/class/net/$1/address")"
		echo "DHCP_IP=$address"
		echo "DHCP_HOSTNAME=$host"
	} >"$IMAGESWARM_RUN/dhcp.env.new" && mv "$IMAGESWARM_RUN/dhcp.env.new" "$IMAGESWARM_RUN/dhcp.env"
}

# ramdisk_settings: exports the settings baked into this initramfs (imageswarm initrd
# --trust-root writes /etc/imageswarm/installer.env): IMAGESWARM_* lines only, never run as
# shell. The environment wins over the kernel command line, so the boot path cannot
# replace or remove them (the root key the installer trusts).
ramdisk_settings() {
	env_file=${IMAGESWARM_ETC:-/etc/imageswarm}/installer.env
	[ -f "$env_file" ] || return 0
	while IFS= read -r line; do
		case "$line" in
		IMAGESWARM_*=*)
			name=${line%%=*}
			case "$name" in *[!A-Z0-9_]*) continue ;; esac
			export "$name=${line#*=}"
			say "ramdisk setting $name=${line#*=}"
			;;
		esac
	done <"$env_file"
}

# run_installer: runs the program with node and returns its exit status. --initial-old-
# space-size=64 cuts the client's garbage collections during extraction (about 10 % of its
# CPU in the 32-node benchmark: docs/installer-ramdisk.md, "Node options").
run_installer() {
	program=$(installer_program) || {
		say "this initramfs carries no imageswarm program in $IMAGESWARM_LIB"
		return 11
	}
	ramdisk_settings
	say "starting ${program##*/} with node $(node --version)"
	node --initial-old-space-size=64 "$program"
}

# boot_mounted_image: imageswarm.image-mode=disk|ram: the installer mounted the SquashFS
# image read-only under an overlay at the target root; this node runs it from there, without
# a disk root or a reboot: /dev, /proc, /sys and /run (which holds the image's mounts, and
# its RAM copy) move into it, and switch_root hands it PID 1. Never returns.
boot_mounted_image() {
	target=$(cmdline_arg imageswarm.target) || target=/a
	init=$(cmdline_arg init) || init=/sbin/init
	[ -e "$target$init" ] || [ -L "$target$init" ] || fail "the mounted image has no $init to boot"
	# The image brings its own DHCP client; the lease stays valid until it renews it.
	for pidfile in /run/udhcpc.*.pid; do
		[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
	done
	for dir in dev proc sys run; do
		mkdir -p "$target/$dir" 2>/dev/null
		mount --move "/$dir" "$target/$dir" || fail "cannot move /$dir into the mounted image"
	done
	echo "imageswarm: booting the mounted image (switch_root to $target, $init)" >"$target/dev/console"
	exec switch_root "$target" "$init"
}

# install_and_finish: the common end of every initramfs: install, then the post action on
# success (or, for a mounted image, booting it), or fail with what the exit code means.
# Never returns.
install_and_finish() {
	run_installer
	status=$?
	[ "$status" -eq 0 ] || fail "the installer exited with $status: $(exit_meaning "$status")"
	case "$(cmdline_arg imageswarm.image-mode)" in
	disk | ram) boot_mounted_image ;;
	esac
	post_action
}
