#!/bin/bash
# Proves GPU passthrough on a real NVIDIA host, natively and inside
# `hpcc run`, as root and as an unprivileged user with Debian's default
# user PATH. Run as root on the GPU machine from the repository root:
#   integration/gpu/prove.sh [HPCC_BINARY]
# It builds a probe that dlopens libcuda.so.1 and calls cuInit (and, where
# nvcc exists, a CUDA kernel that adds two vectors and checks them), packs
# them with the host's own C library as a one-layer image, and runs each
# natively and in the container, side by side. Nothing here is installed;
# the user `hpccgpu` is made when missing. Exits non-zero if any
# container run fails where the native one passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HPCC_SRC=${1:-target/x86_64-unknown-linux-musl/release/hpcc}
[ "$(id -u)" = 0 ] || { echo "prove.sh: run as root (it makes a test user)" >&2; exit 2; }
[ -x "$HPCC_SRC" ] || { echo "prove.sh: no hpcc binary at $HPCC_SRC" >&2; exit 2; }
W=$(mktemp -d /tmp/hpcc-gpu.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
cp "$HPCC_SRC" "$W/hpcc"
HPCC=$W/hpcc
FAILED=0
section() { printf '\n== %s\n' "$*"; }

section "host"
date -u +%Y-%m-%dT%H:%MZ
uname -r
ls -l /dev/nvidia* 2>&1 | sed 's/^/  /'
echo "user namespaces: max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null)" \
    "unprivileged_userns_clone=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo n/a)"
SMI=$(command -v nvidia-smi || true)
echo "nvidia-smi: ${SMI:-not found}"
echo "libcuda in the ld.so cache: $(/sbin/ldconfig -p 2>/dev/null | grep -c 'libcuda.so')"
/sbin/ldconfig -p 2>/dev/null | grep -E 'libcuda.so|libnvidia-ml.so' | sed 's/^/  /'
"$HPCC" --version

section "build the probes"
mkdir -p "$W/root/probe"
cc -O2 -o "$W/root/probe/cuda_probe" "$HERE/cuda_probe.c" -ldl || exit 2
PROBES="/probe/cuda_probe"
if command -v nvcc >/dev/null; then
    nvcc -O2 -o "$W/root/probe/vecadd" "$HERE/vecadd.cu" && PROBES="$PROBES /probe/vecadd"
else
    echo "no nvcc: the kernel probe is skipped"
fi
# The image: the probes plus every library they and nvidia-smi link
# (nvidia-smi itself and the driver come from the host, bound by hpcc).
for bin in "$W"/root/probe/* $SMI; do
    ldd "$bin" | grep -o '/[^ ]*' | grep -v -E 'libcuda|libnvidia' || true
done | sort -u | while read -r lib; do
    mkdir -p "$W/root$(dirname "$lib")"
    cp -L "$lib" "$W/root$lib"
done
mkdir -p "$W/root/tmp" "$W/root/etc"
ROOT_OWNED=1 sh "$HERE/../pack-image.sh" "$W/root" "$W/gpu.tar" gpu-probe:1 \
    '{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]}' || exit 2
chmod 644 "$W/gpu.tar"
ls -l "$W/gpu.tar"

id hpccgpu >/dev/null 2>&1 || useradd -m hpccgpu || exit 2
as_user() {
    setpriv --reuid=hpccgpu --regid=hpccgpu --init-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$(getent passwd hpccgpu | cut -d: -f6)" \
        LANG=C.UTF-8 ${RUN_CONFIG:+HPCC_CONFIG=$RUN_CONFIG} "$@"
}
as_root() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    HPCC_CACHE_DIR="$W/root-cache" ${RUN_CONFIG:+HPCC_CONFIG=$RUN_CONFIG} "$@"; }

# compare WHO LABEL NATIVE_CMD -- CONTAINER_ARGS...
compare() {
    local who=$1 label=$2 native=$3
    shift 4
    section "$label ($who)"
    echo "-- native:"
    native_out=$($who sh -c "$native" 2>&1); native_rc=$?
    echo "$native_out" | sed 's/^/   /'
    echo "   exit $native_rc"
    echo "-- hpcc run:"
    out=$($who "$HPCC" run "$@" 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    echo "   exit $rc"
    if [ "$native_rc" = 0 ] && [ "$rc" != 0 ]; then
        echo "   FAILED: native passed, the container did not"
        FAILED=$((FAILED + 1))
    fi
}

for who in as_user as_root; do
    compare $who "nvidia-smi -L" "$SMI -L" -- "$W/gpu.tar" -- nvidia-smi -L
    compare $who "nvidia-smi query" \
        "$SMI --query-gpu=name,driver_version,memory.total --format=csv,noheader" \
        -- "$W/gpu.tar" -- nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    compare $who "cuInit probe" "$W/root/probe/cuda_probe" -- "$W/gpu.tar" -- /probe/cuda_probe
    case $PROBES in *vecadd*)
        compare $who "vector-add kernel" "$W/root/probe/vecadd" -- "$W/gpu.tar" -- /probe/vecadd ;;
    esac
done
# CDI: nvidia-ctk's spec where the toolkit is installed; otherwise one
# written here from the driver's files, as nvidia-ctk would name them.
section "CDI spec"
mkdir -p "$W/cdi"
if command -v nvidia-ctk >/dev/null; then
    nvidia-ctk cdi generate --output="$W/cdi/nvidia.yaml" 2>&1 | tail -3
else
    echo "no nvidia-ctk: writing the spec from the driver's files"
    lib() { /sbin/ldconfig -p | grep -F "$1 (libc6,x86-64)" | head -1 | sed 's/.*=> //'; }
    {
        echo "cdiVersion: 0.5.0"
        echo "kind: nvidia.com/gpu"
        echo "devices:"
        for n in /dev/nvidia[0-9]*; do
            i=${n#/dev/nvidia}
            echo "- name: \"$i\""
            echo "  containerEdits: {deviceNodes: [{path: $n}]}"
        done
        echo "containerEdits:"
        echo "  deviceNodes:"
        for n in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools; do
            [ -e "$n" ] && echo "  - {path: $n}"
        done
        echo "  mounts:"
        for so in libcuda.so.1 libnvidia-ml.so.1 libnvidia-ptxjitcompiler.so.1 libnvidia-nvvm.so.4; do
            p=$(lib "$so")
            [ -n "$p" ] && echo "  - {hostPath: $(readlink -f "$p"), containerPath: /usr/lib/x86_64-linux-gnu/$so, options: [ro, nosuid, nodev, bind]}"
        done
        echo "  - {hostPath: $(readlink -f "$SMI"), containerPath: /usr/bin/nvidia-smi, options: [ro, nosuid, nodev, bind]}"
    } >"$W/cdi/nvidia.yaml"
fi
sed 's/^/  /' "$W/cdi/nvidia.yaml" | head -40
printf 'cdi_spec_dirs = ["%s"]\n' "$W/cdi" >"$W/site.toml"
chmod -R a+rX "$W/cdi" "$W/site.toml"
RUN_CONFIG=$W/site.toml
for who in as_user as_root; do
    compare $who "CDI nvidia.com/gpu=all: cuInit probe" "$W/root/probe/cuda_probe" \
        -- --device nvidia.com/gpu=all "$W/gpu.tar" -- /probe/cuda_probe
    case $PROBES in *vecadd*)
        compare $who "CDI nvidia.com/gpu=0: vector-add kernel" "$W/root/probe/vecadd" \
            -- --device nvidia.com/gpu=0 "$W/gpu.tar" -- /probe/vecadd ;;
    esac
    compare $who "CDI by default for --gpus 0: nvidia-smi -L" "$SMI -L" -- --gpus 0 "$W/gpu.tar" -- nvidia-smi -L
done

RUN_CONFIG=

section "what hpcc bound (--debug, as the user)"
as_user "$HPCC" --debug run "$W/gpu.tar" -- /probe/cuda_probe 2>&1 | grep -i -E 'gpu|nvidia|cuda|device|root|warn' | head -40
section "--gpus none hides the GPUs (the probe must fail)"
as_user "$HPCC" run --gpus none "$W/gpu.tar" -- /probe/cuda_probe; echo "   exit $?"
section "record (through CDI)"
RUN_CONFIG=$W/site.toml
mkdir -m 1777 "$W/out"
as_user "$HPCC" run --record "$W/out/rec.json" --device nvidia.com/gpu=all \
    "$W/gpu.tar" -- /probe/cuda_probe && cat "$W/out/rec.json"
section "summary"
echo "container runs that failed where native passed: $FAILED"
exit $((FAILED != 0))
