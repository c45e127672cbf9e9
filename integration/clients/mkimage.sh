#!/bin/sh
# A busybox-static image as a docker-archive tar (pack-image.sh), the one
# format that `docker load`, `podman load` and `ctr image import` all
# take. The clients' tests run this image.
# Usage: mkimage.sh OUT.tar [TAG]
set -eu
OUT=${1:?usage: mkimage.sh OUT.tar [TAG]}
TAG=${2:-hpcc-busybox:latest}
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || { echo "mkimage.sh: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/layer/bin" "$WORK/layer/etc" "$WORK/layer/tmp" "$WORK/layer/proc" \
    "$WORK/layer/sys" "$WORK/layer/dev" "$WORK/layer/root"
chmod 1777 "$WORK/layer/tmp"
cp "$BUSYBOX" "$WORK/layer/bin/busybox"
# Every applet, so a client's `sh -c '...'` finds what a test asks for.
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$WORK/layer/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$WORK/layer/etc/passwd"
echo "root:x:0:" >"$WORK/layer/etc/group"
ROOT_OWNED=1 sh "$(dirname "$0")/../pack-image.sh" "$WORK/layer" "$OUT" "$TAG" '{"Env":["PATH=/bin"],"Cmd":["sh"]}'
