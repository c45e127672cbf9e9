#!/bin/sh
# Builds a VM guest disk for the guest suite, once: Debian (bookworm gives
# kernel 6.1, bullseye 5.10) with systemd, cgroup v2, and what the suite
# runs (podman, Open MPI, busybox), from this machine's Debian mirror with
# debootstrap, packed as an ext4 image by mkfs.ext4 -d. The kernel and
# initrd are copied out beside it for qemu's -kernel/-initrd. Reused
# while its inputs are unchanged.
# Usage: build-guest.sh bookworm|bullseye OUTDIR   (as root: debootstrap needs it)
set -eu
DIST=${1:?usage: build-guest.sh bookworm|bullseye OUTDIR}
OUT=${2:?usage: build-guest.sh bookworm|bullseye OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
# systemd (with logind, for a lingering user's user@UID.service), the
# kernel, and what the suite needs: uidmap (newuidmap for rootless podman),
# dbus-user-session (the user bus podman's systemd cgroup manager talks to),
# podman, Open MPI, busybox-static, procps; runc and crun, which make
# guest-conformance measures beside hpcc.
# debootstrap makes the base; the rest is installed in the chroot with apt
# (debootstrap cannot configure containers-common, podman's dependency).
BASE=systemd,systemd-sysv,dbus,libpam-systemd,linux-image-amd64,udev,kmod,procps,passwd
PACKAGES="uidmap podman openmpi-bin busybox-static iproute2 dbus-user-session runc crun"
STAMP="$OUT/inputs"
want="$( (sha256sum "$0" "$HERE/guest-boot.sh"; echo "$DIST $BASE $PACKAGES") | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/disk.img" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "guest $DIST: $OUT/disk.img is up to date"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "guest $DIST: building it needs root (debootstrap)" >&2; exit 1; }
# The mirror this machine's apt already uses.
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/rootfs
echo "guest $DIST: debootstrap from $MIRROR"
debootstrap --variant=minbase --include="$BASE" "$DIST" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
echo "guest $DIST: installing $PACKAGES"
echo "deb $MIRROR $DIST main" >"$ROOT/etc/apt/sources.list"
# No service starts in the chroot; its /proc lives in a mount namespace
# of its own, so nothing is left mounted whatever happens.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
unshare -m sh -c 'mount -t proc proc "$1/proc" && chroot "$1" sh -c "
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends $2"' sh "$ROOT" "$PACKAGES" \
    >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; exit 1; }
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*
echo "hpcc-guest-$DIST" >"$ROOT/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$ROOT/etc/fstab"
# No password for root on the console; nothing listens on the network.
chroot "$ROOT" passwd -d root >/dev/null
# The suite runs once at boot, prints to the serial console and powers off.
cp "$HERE/guest-boot.sh" "$ROOT/usr/local/sbin/hpcc-guest-boot"
chmod 755 "$ROOT/usr/local/sbin/hpcc-guest-boot"
cat >"$ROOT/etc/systemd/system/hpcc-guest.service" <<'UNIT'
[Unit]
Description=hpcc guest suite
After=multi-user.target systemd-logind.service
Wants=systemd-logind.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hpcc-guest-boot
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/hpcc-guest.service "$ROOT/etc/systemd/system/multi-user.target.wants/hpcc-guest.service"
# The unprivileged account of the suite, lingering so that it has a
# user@UID.service (a delegated cgroup) without logging in.
chroot "$ROOT" useradd -m -s /bin/sh hpcctest
mkdir -p "$ROOT/var/lib/systemd/linger" && touch "$ROOT/var/lib/systemd/linger/hpcctest"
# Quiet consoles: no getty fighting the suite for ttyS0.
ln -sf /dev/null "$ROOT/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/getty@tty1.service"
cp "$ROOT"/boot/vmlinuz-* "$WORK/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$WORK/initrd.img"
mkfs.ext4 -q -F -L hpcc-guest -d "$ROOT" "$WORK/disk.img" 4G
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/disk.img" "$OUT/"
echo "$want" >"$STAMP"
echo "guest $DIST: wrote $OUT/disk.img ($(du -h "$OUT/disk.img" | cut -f1) used)"
