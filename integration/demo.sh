#!/bin/sh
# make demo: run a small busybox bundle rootless with hpcc, then the same
# tree packed as an image tar through `hpcc run IMAGE`.
# Usage: demo.sh /abs/path/to/hpcc
set -eu
HPCC_SRC=${1:?usage: demo.sh HPCC_BINARY}

if [ ! -x /bin/busybox ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "demo: installing busybox-static"
        DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >/dev/null
    else
        echo "demo: /bin/busybox is missing; run 'sudo apt-get install busybox-static'" >&2
        exit 1
    fi
fi

DEMO=$(mktemp -d /tmp/hpcc-demo.XXXXXX)
trap 'rm -rf "$DEMO"' EXIT
chmod 755 "$DEMO"
cp "$HPCC_SRC" "$DEMO/hpcc"
BUNDLE=$DEMO/bundle
mkdir -p "$BUNDLE/rootfs/bin" "$BUNDLE/rootfs/proc" "$BUNDLE/rootfs/sys" \
    "$BUNDLE/rootfs/dev" "$BUNDLE/rootfs/tmp" "$BUNDLE/rootfs/etc"
cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
for applet in sh echo cat id hostname ls mount grep touch head; do
    ln -s busybox "$BUNDLE/rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$BUNDLE/rootfs/etc/passwd"

# The container's program: say what a person should notice.
cat > "$BUNDLE/rootfs/hello.sh" <<'SCRIPT'
echo "  hello from inside the container"
echo "  hostname:         $(hostname)"
echo "  I am:             $(id)"
echo "  my PID:           $$ (a PID namespace of my own)"
echo "  uid map:          $(cat /proc/self/uid_map | tr -s ' ')"
if touch /cannot-write 2>/dev/null; then echo "  root filesystem:  writable"; else echo "  root filesystem:  read-only"; fi
echo "  /dev holds:       $(ls /dev | tr '\n' ' ')"
SCRIPT

# Run as an unprivileged user: root demos through `nobody`.
if [ "$(id -u)" = 0 ]; then
    chown -R nobody "$BUNDLE"
    AS="setpriv --reuid=nobody --regid=nogroup --clear-groups"
    XDG=$DEMO/xdg
    mkdir -m 700 "$XDG" && chown nobody "$XDG"
else
    AS=""
    XDG=${XDG_RUNTIME_DIR:-$DEMO/xdg}
    mkdir -p -m 700 "$XDG"
fi

run_as() { $AS env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp XDG_RUNTIME_DIR="$XDG" "$@"; }

echo "hpcc demo: a busybox bundle in $BUNDLE"
echo "\$ hpcc --version"
run_as "$DEMO/hpcc" --version | sed 's/^/  /'
echo "\$ hpcc spec --rootless    (as $(run_as id -un), uid $(run_as id -u))"
(cd "$BUNDLE" && run_as "$DEMO/hpcc" spec --rootless)
# Ask for the demo script instead of an interactive shell.
sed -i -e 's/"terminal": true/"terminal": false/' \
    -e 's#^\( *\)"sh"$#\1"sh", "/hello.sh"#' "$BUNDLE/config.json"
echo "\$ hpcc run demo"
(cd "$BUNDLE" && run_as "$DEMO/hpcc" --root "$XDG/hpcc" run demo)
echo "\$ hpcc list    (the container is gone once run returns)"
run_as "$DEMO/hpcc" --root "$XDG/hpcc" list | sed 's/^/  /'

# Part 2: the image front door. Pack the same busybox tree as a
# docker-archive tar (what `docker save` writes) and run it directly.
IMG=$DEMO/image
mkdir -p "$IMG/layer/bin" "$IMG/layer/etc" "$IMG/layer/work"
cp /bin/busybox "$IMG/layer/bin/busybox"
for applet in sh echo cat id ls touch tr; do ln -s busybox "$IMG/layer/bin/$applet"; done
cat > "$IMG/layer/hello-image.sh" <<'SCRIPT'
echo "  hello from an image, run straight from its tar"
echo "  I am:             $(id)   (your own uid: no root, no daemon)"
echo "  my PID:           $$   (hpcc exec'd in place: the PID hpcc started with)"
echo "  working dir:      $(pwd)"
if touch /cannot-write 2>/dev/null; then echo "  image:            writable"; else echo "  image:            read-only (the cached copy never changes)"; fi
SCRIPT
ROOT_OWNED=1 sh "$(dirname "$0")/pack-image.sh" "$IMG/layer" "$DEMO/demo.tar" hpcc-demo:latest \
    '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sh","-c"],"Cmd":["sh /hello-image.sh"],"WorkingDir":"/work"}'
CACHE=$DEMO/cache
if [ "$(id -u)" = 0 ]; then mkdir -p "$CACHE" && chown nobody "$CACHE"; fi
echo "\$ hpcc run demo.tar          (first run unpacks into the cache)"
run_as env HPCC_CACHE_DIR="$CACHE" "$DEMO/hpcc" run -q "$DEMO/demo.tar"
echo "\$ hpcc run demo.tar -- 'echo \$((6*7)) from a warm start'    (arguments replace CMD; the tar is not read again)"
run_as env HPCC_CACHE_DIR="$CACHE" "$DEMO/hpcc" run "$DEMO/demo.tar" -- 'echo "  $((6*7)) from a warm start"'
echo "\$ hpcc images"
run_as env HPCC_CACHE_DIR="$CACHE" "$DEMO/hpcc" images | sed 's/^/  /'
echo "demo: done"
