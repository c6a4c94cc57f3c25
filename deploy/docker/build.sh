#!/usr/bin/env bash
# Build Steward's image from deploy/docker/Dockerfile:
#     deploy/docker/build.sh [TAG]              # python:3.11-slim from Docker Hub, PyTorch's CPU index
#     deploy/docker/build.sh --offline [TAG]    # neither reachable: a Debian mirror and a wheel folder
# TAG defaults to steward:dev. Run it from anywhere; the build context is only what the Dockerfile copies
# (never .venv/, .steward/, indexes or databases), sent as a tar so any builder honours it.
#
# --offline builds where Docker Hub and download.pytorch.org cannot be reached but PyPI and a Debian mirror
# can (an air-gapped network with mirrors, or this project's development machine):
#   - the base image is made with debootstrap: Debian 12 with its Python 3.11 and pip, trusting the
#     same extra CA certificates as this machine (/usr/local/share/ca-certificates, e.g. a proxy's), and
#     tagged steward-local/python:3.11-slim (made once; `docker rmi` it to make it again);
#   - torch==2.13.0's CPU wheel is taken from TORCH_WHEELS (default /opt/wheels), served on loopback;
#   - the build uses the host's network, so pip reaches PyPI (or the mirror pip.conf names).
# Settings: DEBIAN_MIRROR (default http://deb.debian.org/debian), TORCH_WHEELS. Needs root (debootstrap).
set -euo pipefail

offline=0
if [[ "${1:-}" == "--offline" ]]; then
    offline=1
    shift
fi
tag="${1:-steward:dev}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base=steward-local/python:3.11-slim

fail() {
    echo "build.sh: $*" >&2
    exit 1
}

docker info >/dev/null 2>&1 || fail "no Docker engine answers 'docker info': start dockerd (or Docker Desktop) first"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The context: exactly what the Dockerfile's COPY lines name (Dockerfile.dockerignore's allow-list).
tar -C "$root" --exclude=__pycache__ --exclude='*.pyc' -cf "$work/context.tar" \
    pyproject.toml README.md bot ingest knowledge policies digests.yaml deploy/docker/Dockerfile

build_args=()
if [[ "$offline" == 1 ]]; then
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || fail "--offline needs debootstrap (apt-get install debootstrap)"
        [[ "$(id -u)" == 0 ]] || fail "--offline makes its base image with debootstrap, which needs root"
        mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
        echo "build.sh: making $base from $mirror (debootstrap, about a minute)"
        debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
            bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
            || fail "debootstrap failed; its log: $(tail -5 "$work/debootstrap.log")"
        shopt -s nullglob
        extra=(/usr/local/share/ca-certificates/*.crt)
        shopt -u nullglob
        if ((${#extra[@]})); then
            cp "${extra[@]}" "$work/rootfs/usr/local/share/ca-certificates/"
            chroot "$work/rootfs" update-ca-certificates >/dev/null
        fi
        # As the official python:3.11-slim: `python` and `pip` on PATH, pip may install as root.
        rm -f "$work"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED
        ln -sf /usr/bin/python3 "$work/rootfs/usr/local/bin/python"
        ln -sf /usr/bin/pip3 "$work/rootfs/usr/local/bin/pip"
        rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin
        tar -C "$work/rootfs" -c . | docker import \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$base" >/dev/null
        rm -rf "$work/rootfs"
    fi
    wheels="${TORCH_WHEELS:-/opt/wheels}"
    compgen -G "$wheels/torch-2.13.0+cpu-*.whl" >/dev/null \
        || fail "no torch-2.13.0+cpu wheel in $wheels: set TORCH_WHEELS to the folder that holds it"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$wheels" >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" \
            2>/dev/null && break
        sleep 0.1
    done
    build_args=(--network host --build-arg "PYTHON_IMAGE=$base"
        --build-arg "TORCH_PIP_ARGS=--find-links http://127.0.0.1:$port/")
fi

# BuildKit needs the buildx plugin with Docker 23 and later; without it, the classic builder.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
docker build -f deploy/docker/Dockerfile -t "$tag" "${build_args[@]}" - <"$work/context.tar" \
    || fail "docker build failed (its output is above); where Docker Hub or download.pytorch.org cannot be reached, run: deploy/docker/build.sh --offline $tag"
echo "build.sh: built $tag"
