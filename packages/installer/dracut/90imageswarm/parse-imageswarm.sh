#!/bin/sh
# dracut cmdline hook: when the kernel command line asks for an install (imageswarm.server,
# IMAGESERVER or si.image-server; the image names likewise), the network must come up by
# DHCP unless ip= says otherwise, and there is no root to mount: the install runs instead
# (imageswarm-install.sh, pre-mount). Without those parameters this module does nothing.
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

if getarg imageswarm.server= >/dev/null || getarg IMAGESERVER= >/dev/null ||
    getarg si.image-server= >/dev/null || getarg imageswarm.image= >/dev/null ||
    getarg IMAGENAME= >/dev/null || getarg si.image-name= >/dev/null; then
    {
        echo "rd.neednet=1"
        getarg ip= >/dev/null || echo "ip=dhcp"
    } >/etc/cmdline.d/90imageswarm.conf
    # As SystemImager 5: a root dracut accepts, never mounted (the node reboots first).
    root=imageswarm
    rootok=1
    : >/tmp/imageswarm.install
fi
