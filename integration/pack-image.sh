#!/bin/sh
# Packs a directory as a one-layer docker-archive tar (what `docker save`
# writes and what `docker load`, `podman load`, `ctr image import` and
# `hpcc run` all take), with the digests a real engine would record.
# Usage: [ROOT_OWNED=1] pack-image.sh DIR OUT.tar TAG [IMAGE_CONFIG_JSON]
#   IMAGE_CONFIG_JSON: the image's "config" object (Env, Cmd, ...);
#   default {"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]}.
#   ROOT_OWNED=1: every entry owned by root and dated 0 (a tree a user
#   made, packed as an image would be); otherwise owners are kept.
set -eu
DIR=${1:?usage: pack-image.sh DIR OUT.tar TAG [IMAGE_CONFIG_JSON]}
OUT=${2:?usage: pack-image.sh DIR OUT.tar TAG [IMAGE_CONFIG_JSON]}
TAG=${3:?usage: pack-image.sh DIR OUT.tar TAG [IMAGE_CONFIG_JSON]}
CONFIG=${4:-'{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]}'}
WORK=$(mktemp -d "$(dirname "$OUT")/pack.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ "${ROOT_OWNED:-0}" = 1 ]; then
    set -- --owner=0 --group=0 --mtime=@0
else
    set --
fi
tar -C "$DIR" --numeric-owner --sort=name "$@" -cf "$WORK/layer.tar" .
layer_sha=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$CONFIG" "$layer_sha" >"$WORK/config.json"
config_sha=$(sha256sum "$WORK/config.json" | cut -d' ' -f1)
mv "$WORK/config.json" "$WORK/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_sha" "$TAG" >"$WORK/manifest.json"
tar -C "$WORK" -cf "$OUT.tmp" manifest.json "$config_sha.json" layer.tar
chmod 644 "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
