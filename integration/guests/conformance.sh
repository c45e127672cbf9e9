#!/bin/sh
# The runtime-tools validation suite inside a guest (cgroup v2, systemd),
# run on request (make guest-conformance), never by make test: the suite
# is built outside this repository. Runs as suite.sh from the payload disk
# (/payload: hpcc, validation.sh, runtime-tools/) against hpcc and, for a
# side-by-side count, the guest's own runc and crun (crun 1.8.1 rejects the
# suite's ociVersion 1.3.0: its bundles are pinned to 1.1.0). Its closing
# "guest:" line is hpcc's count.
set -u
P=/payload
install -m 0755 "$P/hpcc" /usr/local/bin/hpcc
echo "# guest: $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
for rt in /usr/local/bin/hpcc /usr/sbin/runc /usr/bin/crun; do
    if [ ! -x "$rt" ]; then
        echo "# $rt is not installed in the guest"
        continue
    fi
    echo "# $("$rt" --version 2>&1 | head -1)"
    pin=
    [ "$rt" != /usr/bin/crun ] || pin=1.1.0
    PIN_OCI_VERSION=$pin LOGDIR=/tmp/logs-$(basename "$rt") bash "$P/validation.sh" "$P/runtime-tools" "$rt" |
        tee /tmp/validation.out
    [ "$rt" != /usr/local/bin/hpcc ] || hpcc_count=$(tail -1 /tmp/validation.out)
done
echo "guest: ${hpcc_count:-no count from hpcc's run}"
