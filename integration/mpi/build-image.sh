#!/bin/sh
# Builds an MPI test image once: Debian 12 minbase with Open MPI (the same
# 4.1.4 the host has) or MPICH (4.0.2, likewise) via debootstrap, plus
# pingpong compiled on the host against the same MPI, packed as a
# docker-archive tar. Reused while its inputs are unchanged.
# Usage: build-image.sh OUT.tar [openmpi|mpich]   (as root: debootstrap needs it)
set -eu
OUT=${1:?usage: build-image.sh OUT.tar [openmpi|mpich]}
FLAVOR=${2:-openmpi}
case "$FLAVOR" in
openmpi) PACKAGES=openmpi-bin,libopenmpi3 MPICC=mpicc.openmpi TAG=hpcc-mpi ;;
mpich) PACKAGES=mpich,libmpich12 MPICC=mpicc.mpich TAG=hpcc-mpich ;;
*) echo "build-image.sh: unknown MPI flavour $FLAVOR" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP="$OUT.inputs"
want="$( (sha256sum "$HERE/pingpong.c" "$0" "$HERE/../pack-image.sh"; echo "$FLAVOR") | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    echo "mpi image: $OUT is up to date"
    exit 0
fi
for tool in debootstrap $MPICC; do
    command -v $tool >/dev/null || { echo "mpi image: $tool missing (apt-get install debootstrap libopenmpi-dev libmpich-dev)" >&2; exit 1; }
done
# The mirror this machine's apt already uses.
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
WORK=$(mktemp -d "$(dirname "$OUT")/mpi-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "mpi image: debootstrap bookworm (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/dev/"*
$MPICC -O2 -o "$WORK/rootfs/usr/local/bin/pingpong" "$HERE/pingpong.c"
sh "$HERE/../pack-image.sh" "$WORK/rootfs" "$OUT" "$TAG:latest" \
    '{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/bash"]}'
echo "$want" >"$STAMP"
echo "mpi image: wrote $OUT ($(du -h "$OUT" | cut -f1))"
