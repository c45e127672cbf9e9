#!/bin/sh
# Runs inside a guest at boot (hpcc-guest.service): mounts the payload
# disk the host attached as /dev/vdb, runs its suite, and leaves the
# results on that disk and on the serial console.
set -u
mkdir -p /payload
if ! mount /dev/vdb /payload; then
    echo "HPCC-GUEST: not ok 0 - no payload disk"
    exit 1
fi
cd /payload
sh ./suite.sh 2>&1 | tee /payload/results.log | sed 's/^/HPCC-GUEST: /' >/dev/console
sync
umount /payload
