#!/usr/bin/env bash
# Build the project's image (choreo-app:latest, from ./Dockerfile) with whichever container
# engine answers, and print the DOCKER_HOST that reaches it (last line of stdout; empty for
# the engine's default socket). Progress goes to stderr.
#
# Where a Docker engine answers, it is used as is. Otherwise rootful Podman from Debian's
# packages is prepared (installed only when missing) and serves the Docker API on a socket
# in the state dir, because the docker CLI, compose and testcontainers all speak that API.
# When the Dockerfile's base image is absent and cannot be pulled (no registry reachable),
# a Debian bookworm base with python3 is made with mmdebstrap and tagged as that base.
# Every step is cached: the base and the project image carry a hash of their inputs in a
# label and are rebuilt only when the hash changes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${CHOREO_STATE_DIR:-$ROOT/.choreo}/containers
IMAGE=${CHOREO_IMAGE:-choreo-app:latest}
BASE=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$ROOT/Dockerfile" | head -1)
LOCAL_BASE_PACKAGES=python3,python3-venv,python-is-python3,passwd,ca-certificates
export DOCKER_BUILDKIT=0 # Podman's Docker API has no BuildKit; Docker builds the same way

say() { echo "image: $*" >&2; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# Podman: runc instead of crun (crun fails on this kernel's mixed cgroup layout) and explicit
# ulimits (the defaults exceed what the kernel grants here); CONTAINERS_CONF points at them.
podman_conf() {
    mkdir -p "$STATE"
    cat >"$STATE/containers.conf.new" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
    mv "$STATE/containers.conf.new" "$STATE/containers.conf"
    export CONTAINERS_CONF=$STATE/containers.conf
    # Docker's image format for every build (OCI images have no HEALTHCHECK): this script's,
    # the API service's (it inherits this) and podman-compose's when given the same variable.
    export BUILDAH_FORMAT=docker
}

install_missing() {
    local missing=()
    for tool in "$@"; do
        command -v "${tool%%=*}" >/dev/null || missing+=("${tool#*=}")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

start_podman() {
    install_missing podman=podman buildah=buildah runc=runc
    podman_conf
    local socket=$STATE/podman.sock
    export DOCKER_HOST=unix://$socket
    # This podman is local: a CONTAINER_HOST in the caller's environment would make every
    # podman call here a remote client (the service refuses its socket argument, builds go
    # elsewhere).
    unset CONTAINER_HOST CONTAINER_CONNECTION
    if engine_answers; then return; fi
    # It exits after 10 idle minutes (a CI clone leaves no process behind); the next run of
    # this script starts it again.
    say "starting podman system service on $socket"
    rm -f "$socket"
    setsid nohup podman system service --time=600 "$DOCKER_HOST" \
        >"$STATE/podman-service.log" 2>&1 </dev/null &
    echo $! >"$STATE/podman-service.pid"
    for _ in $(seq 100); do
        if engine_answers; then return; fi
        sleep 0.2
    done
    say "podman system service did not answer on $socket; see $STATE/podman-service.log"
    exit 1
}

label() { # image label -> value, empty when the image or the label is absent
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

hash_files() { # the content of every file under the given paths, as one hash
    (cd "$ROOT" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# The host's CA bundle goes into the local base: HTTPS from inside a build may pass a proxy
# that signs with a local CA. It belongs to this machine, so it stays out of the Dockerfile.
local_base() {
    local certs=/etc/ssl/certs/ca-certificates.crt
    local inputs
    inputs=$( (echo "$LOCAL_BASE_PACKAGES" && cat "$certs") | sha256sum | cut -c1-16)
    local current
    current=$(label "$BASE" choreo.local-base)
    if [ "$current" = "$inputs" ]; then return; fi
    if [ -z "$current" ] && { docker image inspect "$BASE" >/dev/null 2>&1 ||
        timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; }; then
        return # the registry's base
    fi
    install_missing mmdebstrap=mmdebstrap
    say "no registry reachable: making $BASE from Debian bookworm ($LOCAL_BASE_PACKAGES)"
    local tarball=$STATE/base.tar
    mmdebstrap --quiet --mode=root --variant=minbase --include="$LOCAL_BASE_PACKAGES" \
        --customize-hook="cp $certs \"\$1$certs\"" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
        bookworm "$tarball" >&2
    podman import --quiet \
        --change "ENV SSL_CERT_FILE=$certs" --change "ENV PIP_CERT=$certs" \
        --change "LABEL choreo.local-base=$inputs" --change 'CMD ["python3"]' \
        "$tarball" "$BASE" >&2
    rm -f "$tarball"
}

BUILD=(docker build)
if engine_answers; then
    say "using the Docker engine at ${DOCKER_HOST:-its default socket}"
else
    unset DOCKER_HOST
    if engine_answers; then
        say "using the Docker engine at its default socket"
    else
        start_podman
        say "using Podman at $DOCKER_HOST"
        BUILD=(podman build --layers)
        local_base
    fi
fi

inputs=$(hash_files Dockerfile .dockerignore pyproject.toml README.md choreo schemas services deploy)
if [ "$(label "$IMAGE" choreo.inputs)" = "$inputs" ]; then
    say "$IMAGE is up to date ($inputs)"
else
    say "building $IMAGE ($inputs)"
    "${BUILD[@]}" -q --label "choreo.inputs=$inputs" -t "$IMAGE" "$ROOT" >&2
fi
echo "${DOCKER_HOST:-}"
