#!/usr/bin/env bats
# hpcc pull and hpcc run docker:// against Debian's docker-registry
# (distribution 2.8) on 127.0.0.1: one over plain HTTP, one over TLS with
# a CA made here and htpasswd basic auth, and one whose bearer-token realm
# is token_server.py (our own, signing JWTs the registry checks against a
# certificate made here). Images are pushed with skopeo
# from the busybox tar the runner builds, plus a two-platform index made
# here from it. Runs as root and, by run.sh, as an unprivileged user.
# (Misbehaving registries are runtime-tests/tests/registry.)
# rootless: yes

load lib

# A port nothing listens on, below the kernel's ephemeral range: a port in
# that range can be the source port of some open connection, which a
# connect probe cannot see and bind() then refuses.
free_port() {
    local low high base span p
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    if [ "$low" -gt 11024 ]; then
        base=10000 span=$((low - 10000))
    elif [ "$high" -lt 64511 ]; then
        base=$((high + 1)) span=$((65535 - high))
    else # no room outside the range: the retries below must do
        base=20000 span=20000
    fi
    for _ in $(seq 50); do
        p=$((base + RANDOM % span))
        listening "$p" || { echo "$p"; return 0; }
    done
    return 1
}

listening() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up_or_gone() { # PORT PIDFILE
    listening "$1" || ! kill -0 "$(cat "$2")" 2>/dev/null
}

# Calls START PORT (which starts a daemon with start_daemon PIDFILE LOG)
# on a free port until the daemon listens there, and sets PORT. A port
# free when checked can be taken before the daemon binds it, so a daemon
# that dies saying so is started again on another.
serve_on_free_port() { # PIDFILE LOG START
    local pidfile=$1 log=$2 start=$3 port
    for _ in 1 2 3 4 5; do
        port=$(free_port) || return 1
        "$start" "$port"
        wait_for 15 up_or_gone "$port" "$pidfile"
        if listening "$port" && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            PORT=$port
            return 0
        fi
        grep -qi 'address already in use' "$log" || break
    done
    cat "$log" >&2
    return 1
}

start_registry() { # NAME [EXTRA-YAML]; sets PORT
    REGISTRY_NAME=$1 REGISTRY_EXTRA=${2:-}
    mkdir -p "$SUITE_WORK/$1-store"
    serve_on_free_port "$SUITE_WORK/$1.pid" "$SUITE_WORK/$1.log" registry_on_port
}

registry_on_port() { # PORT
    local w=$SUITE_WORK name=$REGISTRY_NAME
    cat >"$w/$name.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $w/$name-store
http:
  addr: 127.0.0.1:$1
$REGISTRY_EXTRA
EOF
    start_daemon "$w/$name.pid" "$w/$name.log" docker-registry serve "$w/$name.yml"
}

# A stopped registry again, on its port and with its config.
restart_registry() { # NAME PORT
    start_daemon "$SUITE_WORK/$1.pid" "$SUITE_WORK/$1.log" docker-registry serve "$SUITE_WORK/$1.yml"
    wait_for 15 listening "$2" || { cat "$SUITE_WORK/$1.log" >&2; return 1; }
}

token_server_on_port() { # PORT
    local w=$SUITE_WORK
    start_daemon "$w/token-server.pid" "$w/token-server.out" python3 "$BATS_TEST_DIRNAME/token_server.py" \
        "$1" "$w/token/signer.key" "$w/token/signer.crt" hpcc-test-issuer hpcc-test-registry \
        alice:s3cret public "$w/token-requests.log"
}

# A CA, and a certificate for 127.0.0.1 it signed.
make_tls() { # DIR
    local d=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hpcc-test-ca \
        -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$d/san.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/san.ext" -out "$d/server.crt" 2>/dev/null
}

# From the busybox image, an OCI layout whose index offers it as
# linux/amd64 and a copy whose config says arm64 as linux/arm64.
make_two_platform_layout() { # DIR
    local d=$1 idx m c mdata cdata c2 m2 msize
    skopeo copy -q "docker-archive:$HPCC_IMAGE" "oci:$d:one" >/dev/null
    idx=$(cat "$d/index.json")
    m=$(printf '%s' "$idx" | grep -o 'sha256:[0-9a-f]\{64\}' | head -1)
    mdata=$(cat "$d/blobs/sha256/${m#sha256:}")
    c=$(printf '%s' "$mdata" | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]\{64\}')
    cdata=$(cat "$d/blobs/sha256/${c#sha256:}")
    # Same length, so the manifest's config size still holds.
    printf '%s' "${cdata//\"amd64\"/\"arm64\"}" >"$d/c2"
    c2=sha256:$(sha256sum "$d/c2" | cut -d' ' -f1)
    mv "$d/c2" "$d/blobs/sha256/${c2#sha256:}"
    printf '%s' "${mdata//$c/$c2}" >"$d/m2"
    m2=sha256:$(sha256sum "$d/m2" | cut -d' ' -f1)
    msize=$(stat -c %s "$d/m2")
    mv "$d/m2" "$d/blobs/sha256/${m2#sha256:}"
    local mt=application/vnd.oci.image.manifest.v1+json
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"%s","size":%s,"platform":{"os":"linux","architecture":"amd64"},"annotations":{"org.opencontainers.image.ref.name":"multi"}},{"mediaType":"%s","digest":"%s","size":%s,"platform":{"os":"linux","architecture":"arm64"}}]}' \
        "$mt" "$m" "${#mdata}" "$mt" "$m2" "$msize" >"$d/inner.json"
    local inner=sha256:$(sha256sum "$d/inner.json" | cut -d' ' -f1) isize
    isize=$(stat -c %s "$d/inner.json")
    mv "$d/inner.json" "$d/blobs/sha256/${inner#sha256:}"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"multi"}}]}' \
        "$inner" "$isize" >"$d/index.json"
}

# The registry in token mode, and the token server whose signing
# certificate it trusts: anyone may pull public/*, alice anything.
start_token_registry() {
    local w=$SUITE_WORK
    mkdir -p "$w/token"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hpcc-test-token-signer \
        -keyout "$w/token/signer.key" -out "$w/token/signer.crt" 2>/dev/null
    serve_on_free_port "$w/token-server.pid" "$w/token-server.out" token_server_on_port
    TOKEN_AUTH=$PORT
    start_registry token "auth:
  token:
    realm: http://127.0.0.1:$TOKEN_AUTH/token
    service: hpcc-test-registry
    issuer: hpcc-test-issuer
    rootcertbundle: $w/token/signer.crt"
    TOKEN=$PORT
    export TOKEN TOKEN_AUTH
    local ref
    for ref in public/busybox:1 private/busybox:1; do
        tmo skopeo copy -q "docker-archive:$HPCC_IMAGE" "docker://127.0.0.1:$TOKEN/$ref" \
            --dest-tls-verify=false --dest-creds alice:s3cret
    done
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}' "$TOKEN" "$(printf alice:s3cret | base64)" >"$w/token-auth.json"
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}' "$TOKEN" "$(printf alice:wrong | base64)" >"$w/token-bad-auth.json"
}

setup_file() {
    require_cmd docker-registry docker-registry
    require_cmd skopeo skopeo
    require_cmd htpasswd apache2-utils
    require_cmd openssl openssl
    require_cmd python3 python3
    make_work_dir registry
    local w=$SUITE_WORK
    mkdir -p "$w/tls" "$w/certs"
    make_tls "$w/tls"
    cp "$w/tls/ca.crt" "$w/certs/ca.crt"
    htpasswd -Bbn alice s3cret >"$w/htpasswd"
    start_registry plain
    PLAIN=$PORT
    start_registry secure "  tls:
    certificate: $w/tls/server.crt
    key: $w/tls/server.key
auth:
  htpasswd:
    realm: hpcc-test
    path: $w/htpasswd"
    SECURE=$PORT
    export PLAIN SECURE
    tmo skopeo copy -q "docker-archive:$HPCC_IMAGE" "docker://127.0.0.1:$PLAIN/busybox:latest" --dest-tls-verify=false
    tmo skopeo copy -q "docker-archive:$HPCC_IMAGE" "docker://127.0.0.1:$SECURE/team/busybox:1" \
        --dest-cert-dir "$w/certs" --dest-creds alice:s3cret
    make_two_platform_layout "$w/multi"
    tmo skopeo copy -q --all "oci:$w/multi:multi" "docker://127.0.0.1:$PLAIN/multi:latest" --dest-tls-verify=false
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}' "$SECURE" "$(printf alice:s3cret | base64)" >"$w/auth.json"
    printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}' "$SECURE" "$(printf alice:wrong | base64)" >"$w/bad-auth.json"
    start_token_registry
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    stop_pidfile "$SUITE_WORK/plain.pid"
    stop_pidfile "$SUITE_WORK/secure.pid"
    stop_pidfile "$SUITE_WORK/token.pid"
    stop_pidfile "$SUITE_WORK/token-server.pid"
    remove_work_dir
}

setup() {
    export HPCC_CACHE_DIR=$SUITE_WORK/cache-$BATS_TEST_NUMBER
    export HOME=$SUITE_WORK/home-$BATS_TEST_NUMBER
    mkdir -p "$HOME"
    unset REGISTRY_AUTH_FILE SSL_CERT_FILE DOCKER_CONFIG XDG_RUNTIME_DIR
}

h() { tmo "$HPCC" "$@"; }

# What a failed pull may not leave: downloads and unpacks in progress.
half_made() { find "$HPCC_CACHE_DIR/pulls" "$HPCC_CACHE_DIR/tmp" -mindepth 1 -maxdepth 1 2>/dev/null; }

@test "registry: run docker://localhost:PORT/busybox:latest from a plain-HTTP registry" {
    run h run -q "docker://localhost:$PLAIN/busybox:latest" -- echo hi from the registry
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "hi from the registry"
    run h images
    assert_contains "$output" "localhost:$PLAIN/busybox:latest"
    # Warm, by the manifest digest the cache recorded, with the registry asked nothing.
    run h images --format json
    digest=$(printf '%s' "$output" | grep -o '"manifest": "sha256:[0-9a-f]*"' | grep -o 'sha256:[0-9a-f]*')
    stop_pidfile "$SUITE_WORK/plain.pid"
    run h run -q "docker://localhost:$PLAIN/busybox@$digest" -- echo warm
    restart_registry plain "$PLAIN"
    assert_eq "$output" "warm"
}

@test "registry: TLS with a private CA and htpasswd credentials from an auth file" {
    ref=docker://127.0.0.1:$SECURE/team/busybox:1
    # No CA: one line naming TLS and the way out.
    run h run -q "$ref" -- true
    [ "$status" -ne 0 ]
    assert_contains "$output" "SSL_CERT_FILE"
    : >"$SUITE_WORK/no-certs.pem"
    SSL_CERT_FILE=$SUITE_WORK/no-certs.pem run h run -q "$ref" -- true
    [ "$status" -ne 0 ]
    assert_contains "$output" "no-certs.pem: no certificates in it"
    export SSL_CERT_FILE=$SUITE_WORK/tls/ca.crt
    run h run -q "$ref" -- true
    [ "$status" -ne 0 ]
    assert_contains "$output" "wants a user name and password"
    REGISTRY_AUTH_FILE=$SUITE_WORK/bad-auth.json run h run -q "$ref" -- true
    [ "$status" -ne 0 ]
    assert_contains "$output" "access denied"
    assert_contains "$output" "user alice"
    export REGISTRY_AUTH_FILE=$SUITE_WORK/auth.json
    run h run -q "$ref" -- echo secure
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "secure"
    # Nothing half-made from the failures.
    run ls "$HPCC_CACHE_DIR/images"
    assert_eq "$(echo "$output" | wc -l)" 1
    assert_eq "$(half_made)" "" "left in the cache"
    # The same credentials where Docker and then podman keep them, each
    # into an empty cache, so the image must be downloaded with them.
    unset REGISTRY_AUTH_FILE
    mkdir -p "$HOME/.docker"
    cp "$SUITE_WORK/auth.json" "$HOME/.docker/config.json"
    HPCC_CACHE_DIR=$HPCC_CACHE_DIR-docker run h run -q "$ref" -- echo from docker config
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "from docker config"
    rm "$HOME/.docker/config.json"
    export XDG_RUNTIME_DIR=$SUITE_WORK/xdg-$BATS_TEST_NUMBER
    mkdir -p "$XDG_RUNTIME_DIR/containers"
    cp "$SUITE_WORK/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json"
    HPCC_CACHE_DIR=$HPCC_CACHE_DIR-podman run h run -q "$ref" -- echo from podman auth
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "from podman auth"
}

@test "registry: pull -o and --layout give files hpcc run takes, and --platform picks from an index" {
    w=$SUITE_WORK
    run h pull -q -o "$w/pulled-$BATS_TEST_NUMBER.tar" "docker://127.0.0.1:$PLAIN/busybox:latest"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    run h run -q "$w/pulled-$BATS_TEST_NUMBER.tar" -- echo from the archive
    assert_eq "$output" "from the archive"
    run h pull -q --layout "$w/layout-$BATS_TEST_NUMBER" "docker://127.0.0.1:$PLAIN/busybox:latest"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    run h run -q "$w/layout-$BATS_TEST_NUMBER" -- echo from the layout
    assert_eq "$output" "from the layout"
    # The two-platform index: this machine's variant runs; arm64 is pulled on request.
    run h run -q "docker://127.0.0.1:$PLAIN/multi:latest" -- echo native variant
    assert_eq "$output" "native variant"
    run h pull -q --platform linux/arm64 -o "$w/arm-$BATS_TEST_NUMBER.tar" "docker://127.0.0.1:$PLAIN/multi:latest"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    run tar -xOf "$w/arm-$BATS_TEST_NUMBER.tar" --wildcards 'blobs/sha256/*'
    assert_contains "$output" '"arm64"'
    run h pull -q --platform linux/s390x -o "$w/none-$BATS_TEST_NUMBER.tar" "docker://127.0.0.1:$PLAIN/multi:latest"
    [ "$status" -ne 0 ]
    assert_contains "$output" "no linux/s390x variant"
    [ ! -e "$w/none-$BATS_TEST_NUMBER.tar" ]
}

@test "registry: bearer tokens from a token realm, anonymous and with credentials" {
    log=$SUITE_WORK/token-requests.log
    private=docker://127.0.0.1:$TOKEN/private/busybox:1
    # A private repository with no credentials, then with wrong ones: one
    # line each, and nothing cached.
    run h run -q "$private" -- true
    [ "$status" -ne 0 ]
    assert_eq "$(echo "$output" | wc -l)" 1 "lines of: $output"
    assert_contains "$output" "$private"
    assert_contains "$output" "access denied"
    REGISTRY_AUTH_FILE=$SUITE_WORK/token-bad-auth.json run h run -q "$private" -- true
    [ "$status" -ne 0 ]
    assert_eq "$(echo "$output" | wc -l)" 1 "lines of: $output"
    assert_contains "$output" "token server refused the credentials for user alice"
    assert_eq "$(find "$HPCC_CACHE_DIR/images" -mindepth 1 -maxdepth 1 2>/dev/null)$(half_made)" "" "left in the cache"
    # Anonymous: the realm grants pull on public/*, and the registry
    # accepts the token it signed.
    : >"$log"
    run h run -q "docker://127.0.0.1:$TOKEN/public/busybox:1" -- echo bearer anonymous
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "bearer anonymous"
    run cat "$log"
    assert_contains "$output" "service=hpcc-test-registry scope=repository:public/busybox:pull as=anonymous"
    # With credentials from an auth file the realm signs alice's access.
    : >"$log"
    export REGISTRY_AUTH_FILE=$SUITE_WORK/token-auth.json
    run h run -q "$private" -- echo bearer alice
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "bearer alice"
    run cat "$log"
    assert_contains "$output" "scope=repository:private/busybox:pull as=alice"
}

@test "registry: a site mirror serves a registry no resolver knows" {
    w=$SUITE_WORK
    dead=$(free_port)
    printf '[registry_mirrors]\n"registry.invalid:5000" = ["127.0.0.1:%s", "127.0.0.1:%s"]\n' "$dead" "$PLAIN" >"$w/mirrors.toml"
    HPCC_CONFIG=$w/mirrors.toml run h run -q docker://registry.invalid:5000/busybox:latest -- echo from the mirror
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_eq "$output" "from the mirror"
    run h images
    assert_contains "$output" "registry.invalid:5000/busybox:latest"
    # Without the mirror, the registry itself is asked, and cannot be found.
    run h pull -q docker://registry.invalid:5000/other:latest
    [ "$status" -ne 0 ]
    assert_contains "$output" "docker://registry.invalid:5000/other:latest"
}

@test "registry: a progress bar on a terminal, none under -q or into a pipe" {
    ref=docker://127.0.0.1:$PLAIN/busybox:latest
    # A terminal as a user's shell has one: with TERM unset (run.sh's
    # env -i), the bar library draws nothing on any terminal.
    export TERM=xterm
    run on_pty "$HPCC pull -o $SUITE_WORK/bar-$BATS_TEST_NUMBER.tar $ref"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_contains "$output" "pulling $ref"
    run on_pty "$HPCC pull -q -o $SUITE_WORK/quiet-$BATS_TEST_NUMBER.tar $ref"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_not_contains "$output" "pulling"
    run h pull -o "$SUITE_WORK/pipe-$BATS_TEST_NUMBER.tar" "$ref"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    assert_not_contains "$output" "pulling"
}
