#!/bin/sh
# dracut pre-mount hook: runs imageswarm's installer once the network is up (dracut's
# initqueue waited for it: rd.neednet=1), with the steps of imageswarm's own ramdisk
# (/usr/lib/imageswarm/imageswarm-lib.sh): failure → imageswarm.on-failure, success → the
# post action. Never returns when it installs.
[ -e /tmp/imageswarm.install ] || return 0
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh
. /usr/lib/imageswarm/imageswarm-lib.sh

# The service's stdout goes to the journal only; its stderr to the console as well.
exec 1>&2
imageswarm_shell() { emergency_shell -n imageswarm "imageswarm: the install failed; the messages above say why"; }
imageswarm_reboot() { sync; systemctl --no-block --force reboot 2>/dev/null || reboot -f; }
imageswarm_poweroff() { sync; systemctl --no-block --force poweroff 2>/dev/null || poweroff -f; }

# dracut marks each interface it set up (by name, and by MAC as well).
for setup in /tmp/net.*.did-setup; do
    netif=${setup#/tmp/net.}
    netif=${netif%.did-setup}
    [ -d "/sys/class/net/$netif" ] || continue
    record_network "$netif"
    break
done
[ -e "$IMAGESWARM_RUN/dhcp.env" ] || fail "no network: dracut brought up no interface (see ip= and rd.neednet)"
. "$IMAGESWARM_RUN/dhcp.env"
say "dracut: address $DHCP_IP on $DHCP_INTERFACE, host name ${DHCP_HOSTNAME:-none}"
install_and_finish
