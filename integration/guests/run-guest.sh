#!/bin/sh
# Boots a guest that build-guest.sh made, under qemu (TCG: /dev/kvm exists
# on these machines but does not run guests), with a second disk holding
# the suite (as suite.sh) and its files; the guest runs the suite at boot
# and powers off. Prints the suite's lines and its count (also appended to
# $HPCC_SUMMARY_FILE); fails when a check failed or no count came back.
# Usage: run-guest.sh GUEST_DIR LABEL SUITE NAME=PATH...
#   each PATH (a file or a folder) lands on the payload disk as NAME.
set -eu
USAGE="usage: run-guest.sh GUEST_DIR LABEL SUITE NAME=PATH..."
G=${1:?$USAGE} LABEL=${2:?$USAGE} SUITE=${3:?$USAGE}
shift 3
LIMIT=${GUEST_TIMEOUT:-1500}
for f in "$G/disk.img" "$G/vmlinuz" "$G/initrd.img" "$SUITE"; do
    [ -f "$f" ] || { echo "$LABEL: $f is missing" >&2; exit 1; }
done
W=$(mktemp -d /tmp/hpcc-guest.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir "$W/payload"
cp "$SUITE" "$W/payload/suite.sh"
for arg in "$@"; do
    name=${arg%%=*} path=${arg#*=}
    [ -e "$path" ] || { echo "$LABEL: $path is missing" >&2; exit 1; }
    cp -a "$path" "$W/payload/$name"
done
size=$(($(du -sm "$W/payload" | cut -f1) + 256))
# mkfs.ext4 and debugfs live in /sbin, off a user's PATH.
/sbin/mkfs.ext4 -q -F -L payload -d "$W/payload" "$W/payload.img" "${size}M"
rm -rf "$W/payload"
echo "$LABEL: booting $(basename "$G") (qemu, TCG, up to ${LIMIT}s)"
start=$(date +%s)
# snapshot=on: the guest's writes to its root disk go to a scratch file,
# so the built image stays as built for the next run. No "quiet": the
# kernel's lines stay in console.log, so a guest that hangs shows where.
timeout "$LIMIT" qemu-system-x86_64 -accel tcg -smp 2 -m 3072 -nographic -no-reboot \
    -kernel "$G/vmlinuz" -initrd "$G/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.show_status=0" \
    -drive file="$G/disk.img",if=virtio,format=raw,snapshot=on \
    -drive file="$W/payload.img",if=virtio,format=raw \
    </dev/null >"$W/console.log" 2>&1 || echo "$LABEL: qemu ended with status $? after $(($(date +%s) - start))s"
/sbin/debugfs -R "cat /results.log" "$W/payload.img" >"$W/results.log" 2>/dev/null || :
if [ ! -s "$W/results.log" ]; then
    # No results on the disk: what the console showed is all there is.
    grep -a 'HPCC-GUEST: ' "$W/console.log" | sed 's/.*HPCC-GUEST: //' >"$W/results.log" || :
fi
sed "s/^/$LABEL: /" "$W/results.log"
count=$(grep '^guest: ' "$W/results.log" | tail -1 | sed "s/^guest: /$LABEL: /")
echo "$LABEL: the guest ran for $(($(date +%s) - start))s"
if [ -z "$count" ]; then
    echo "$LABEL: the guest suite gave no count; the end of its console:" >&2
    tail -40 "$W/console.log" | tr -d '\033' >&2
    [ -z "${HPCC_SUMMARY_FILE:-}" ] || echo "$LABEL: did not finish" >>"$HPCC_SUMMARY_FILE"
    exit 1
fi
echo "$count"
[ -z "${HPCC_SUMMARY_FILE:-}" ] || echo "$count" >>"$HPCC_SUMMARY_FILE"
! grep -q '^not ok ' "$W/results.log"
