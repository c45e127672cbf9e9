# Simulated compute nodes on one machine, sourced by start-cluster.sh and
# stop-cluster.sh. Each node is one long-lived holder process (`sleep`) in
# its own network, UTS and mount namespaces:
#   - network: one end of a veth pair on a bridge the cluster makes, with an
#     address from a /24 chosen among those this host does not route;
#   - UTS: its own hostname (the node name);
#   - mount: node-local /tmp, /var/tmp (the hpcc cache), /dev/shm, /run, and
#     the cluster's Slurm spool and TmpFS, each a directory under
#     DIR/nodes/NAME/ so that the tests can look at every node from outside.
#     The cluster directory and the --share paths stay visible on every
#     node, as a parallel filesystem is.
# Daemons are started inside a node with `nsenter -t HOLDER -n -u -m`.

# node_state DIR: the file that records the network, for stop-cluster.sh.
NODES_NET_FILE=net

# pick_subnet: a 10.213.X prefix with no route and no address on this host.
pick_subnet() {
    for _ in $(seq 1 64); do
        x=$(( $(od -An -N1 -tu1 /dev/urandom) % 250 + 2 ))
        if [ -z "$(ip -4 route show to match "10.213.$x.1")" ] ||
            [ "$(ip -4 route show to match "10.213.$x.1" | awk '{print $1}')" = default ]; then
            if ! ip -4 -o addr show | grep -q " 10\.213\.$x\."; then
                echo "10.213.$x"
                return 0
            fi
        fi
    done
    return 1
}

# make_bridge DIR: the cluster's switch; the host end (the login node,
# where slurmctld, srun and mpirun run) is PREFIX.1.
make_bridge() {
    prefix=$(pick_subnet) || return 1
    br="hpccbr${prefix##*.}"
    ip link add "$br" type bridge || return 1
    printf 'bridge=%s\nprefix=%s\n' "$br" "$prefix" >"$1/$NODES_NET_FILE"
    ip addr add "$prefix.1/24" dev "$br" && ip link set "$br" up
}

# make_node DIR NAME INDEX SHARE...: starts NAME's holder and wires it up.
make_node() {
    dir=$1 name=$2 idx=$3
    shift 3
    . "$dir/$NODES_NET_FILE"
    nd=$dir/nodes/$name
    mkdir -p "$nd/tmp" "$nd/var-tmp" "$nd/run" "$nd/spool" "$nd/slurm-tmp" "$nd/host-tmp"
    chmod 1777 "$nd/tmp" "$nd/var-tmp" "$nd/slurm-tmp"
    chmod 0755 "$nd" "$nd/run"
    chmod 0700 "$nd/spool"
    # The holder's script: what a node's boot would mount. /tmp is
    # replaced last but one, after a view of the host's /tmp is kept (as
    # the working directory) to bind the shared paths back from.
    shares=""
    for s in "$dir" "$@"; do
        case "$s" in
        /tmp/?*) shares="$shares ${s#/tmp/}" ;;
        /var/tmp/*|/dev/shm/*|/run/*) echo "nodes.sh: cannot share $s: it is node-local" >&2; return 1 ;;
        esac
    done
    # shellcheck disable=SC2016
    unshare --net --uts --mount --propagation private sh -c '
        set -e
        nd=$1 dir=$2 name=$3; shift 3
        hostname "$name"
        mount --bind /tmp "$nd/host-tmp"
        cd "$nd/host-tmp"
        mount --bind "$nd/tmp" /tmp
        for s in "$@"; do
            mkdir -p "/tmp/$s"
            mount --bind "./$s" "/tmp/$s"
        done
        cd /
        mount --bind "$nd/var-tmp" /var/tmp
        mount --bind "$nd/run" /run
        mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
        mount --bind "$nd/spool" "$dir/spool"
        mount --bind "$nd/slurm-tmp" "$dir/tmp"
        echo up >"$nd/ready"
        exec sleep infinity
    ' holder "$nd" "$dir" "$name" $shares </dev/null >"$nd/holder.log" 2>&1 &
    echo $! >"$nd/pid"
    n=100
    while [ ! -f "$nd/ready" ]; do
        n=$((n - 1))
        if [ "$n" -le 0 ] || ! kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
            echo "nodes.sh: node $name did not come up: $(cat "$nd/holder.log")" >&2
            return 1
        fi
        sleep 0.1
    done
    pid=$(cat "$nd/pid")
    addr="$prefix.$((idx + 1))"
    veth="${bridge}n$idx"
    ip link add "$veth" type veth peer name eth0 netns "/proc/$pid/ns/net"
    ip link set "$veth" master "$bridge" up
    nsenter -t "$pid" -n sh -c "ip link set lo up && ip addr add $addr/24 dev eth0 && ip link set eth0 up"
    echo "$addr" >"$nd/addr"
    # The address names the node too (mpirun host files list addresses).
    ln -sfn "$name" "$dir/nodes/$addr"
}

# in_node DIR NAME CMD...: runs CMD in NAME's namespaces.
in_node() {
    pid=$(cat "$1/nodes/$2/pid")
    shift 2
    nsenter -t "$pid" -n -u -m -- "$@"
}

# remove_nodes DIR: ends every holder (and with it the node's namespaces,
# mounts and veth) and deletes the bridge. Safe to run more than once.
remove_nodes() {
    for nd in "$1"/nodes/*/; do
        [ -f "$nd/pid" ] || continue
        pid=$(cat "$nd/pid")
        # Only our holder: a reused PID must not be killed.
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ] &&
            [ "$(readlink "/proc/$pid/cwd")" = / ]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$nd/pid" "$nd/ready"
    done
    if [ -f "$1/$NODES_NET_FILE" ]; then
        . "$1/$NODES_NET_FILE"
        ip link del "$bridge" 2>/dev/null || true
        # Kept under another name for check-stopped.sh.
        mv "$1/$NODES_NET_FILE" "$1/$NODES_NET_FILE.gone"
    fi
}
