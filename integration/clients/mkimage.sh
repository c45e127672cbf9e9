#!/bin/sh
# Packs a busybox-static tree as a docker-archive tar (what `docker save`
# writes), the one format that `docker load`, `podman load` and
# `ctr image import` all take. The clients' tests run this image.
# Usage: mkimage.sh OUT.tar [TAG]
set -eu
OUT=${1:?usage: mkimage.sh OUT.tar [TAG]}
TAG=${2:-hpcc-busybox:latest}
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || { echo "mkimage.sh: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/layer/bin" "$WORK/layer/etc" "$WORK/layer/tmp" "$WORK/layer/proc" \
    "$WORK/layer/sys" "$WORK/layer/dev" "$WORK/layer/root" "$WORK/out"
chmod 1777 "$WORK/layer/tmp"
cp "$BUSYBOX" "$WORK/layer/bin/busybox"
# Every applet, so a client's `sh -c '...'` finds what a test asks for.
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$WORK/layer/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$WORK/layer/etc/passwd"
echo "root:x:0:" >"$WORK/layer/etc/group"
tar -C "$WORK/layer" --owner=0 --group=0 --numeric-owner --sort=name --mtime=@0 -cf "$WORK/out/layer.tar" .
layer_sha=$(sha256sum "$WORK/out/layer.tar" | cut -d' ' -f1)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_sha" >"$WORK/out/config.json"
config_sha=$(sha256sum "$WORK/out/config.json" | cut -d' ' -f1)
mv "$WORK/out/config.json" "$WORK/out/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_sha" "$TAG" >"$WORK/out/manifest.json"
tar -C "$WORK/out" -cf "$OUT.tmp" manifest.json "$config_sha.json" layer.tar
chmod 644 "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
