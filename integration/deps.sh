#!/bin/sh
# The Debian packages a make target needs, in one place.
# Usage: deps.sh demo|test|bench
#   As root: installs whichever are missing (apt-get), so `make demo` and
#   `make test` work on a fresh Debian 12 machine that has only Rust.
#   As a user: prints the one apt-get line to run as root, and fails.
# Packages are checked with dpkg-query, not by looking for programs on
# PATH: a user's PATH lacks /sbin, and a program can come from elsewhere.
set -eu
TARGET=${1:?usage: deps.sh demo|test|bench}

# file: the Makefile's static-binary check; gcc, make: build and link.
DEMO="busybox-static file gcc make"
# uidmap (newuidmap), passwd (useradd), util-linux (setpriv): the rootless
#   half of the suite; zstd: zstd-compressed test layers;
# podman, umoci: podman-saved tars compared with umoci's unpack;
# openmpi-bin, libopenmpi-dev, mpich, libmpich-dev, debootstrap: the MPI
#   test images and their tests;
# bats, containerd, docker.io, slurm-wlm, munge, iproute2, procps: the real
#   clients of integration/clients (the suites start the daemons themselves);
# libc6-dev (libc.a), time: static probes built with gcc, and GNU time;
# qemu-system-x86, e2fsprogs: the VM guests of other kernels (TCG);
# docker-registry, skopeo, apache2-utils (htpasswd), openssl: the local
#   registries of registry.bats, with TLS and basic auth.
TEST="$DEMO uidmap passwd util-linux zstd podman umoci python3 \
openmpi-bin libopenmpi-dev mpich libmpich-dev debootstrap \
bats containerd docker.io slurm-wlm munge iproute2 procps libc6-dev time \
qemu-system-x86 e2fsprogs docker-registry skopeo apache2-utils openssl"
# Installed without their Recommends: qemu's pull in newer qemu-utils from
# backports where those are configured, which conflict.
NORECS="qemu-system-x86"
# The peers `make bench` measures hpcc against.
BENCH="$TEST hyperfine charliecloud crun runc strace python3"

case "$TARGET" in
demo) want=$DEMO ;;
test) want=$TEST ;;
bench) want=$BENCH ;;
*) echo "deps.sh: unknown target $TARGET (demo, test or bench)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $p"
done
[ -n "$missing" ] || exit 0

if [ "$(id -u)" != 0 ]; then
    echo "make $TARGET needs Debian packages that are not installed; as root, run:" >&2
    echo "  apt-get install -y$missing" >&2
    exit 1
fi
echo "make $TARGET: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
apt-get update -q >/dev/null
plain="" norecs=""
for p in $missing; do
    case " $NORECS " in
    *" $p "*) norecs="$norecs $p" ;;
    *) plain="$plain $p" ;;
    esac
done
# Recommends as well, as CI always installed them (podman wants some).
# shellcheck disable=SC2086
[ -z "$plain" ] || apt-get install -y -q$plain >/dev/null
# shellcheck disable=SC2086
[ -z "$norecs" ] || apt-get install -y -q --no-install-recommends$norecs >/dev/null
