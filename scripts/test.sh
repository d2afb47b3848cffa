#!/usr/bin/env bash
# Runs pacmesh's whole test suite, first installing what it needs.
#
# The tests drive the real pacman, makepkg and repo-add, an nginx upstream
# on loopback, and (for the mesh) hosts in network namespaces, so this
# must run as root on Debian/Ubuntu (apt) or Arch (pacman).
set -euo pipefail
cd "$(dirname "$0")/.."

# curl, wget, aria2c and python3 are the real HTTP clients of tests/tests/clients.rs.
tools=(pacman pacman-conf makepkg repo-add bsdtar fakeroot nginx zstd ip nft iptables tidy
       systemd-analyze systemd-nspawn curl wget aria2c python3)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
# The metrics test parses with Prometheus' own Python client.
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || missing+=(python3-prometheus-client)

if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing test dependencies (missing: ${missing[*]})" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: run me as root (sudo) to install them" >&2
        exit 1
    fi
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # bsdtar (libarchive-tools) is needed by makepkg and repo-add but is
        # not a declared dependency of Debian's pacman packages.
        apt-get install -y -qq \
            pacman-package-manager makepkg libarchive-tools fakeroot \
            nginx-light zstd iproute2 nftables iptables systemd systemd-container \
            tidy python3 python3-prometheus-client curl wget aria2 \
            ca-certificates >/dev/null
    elif command -v pacman >/dev/null 2>&1; then
        pacman -Sy --needed --noconfirm base-devel libarchive nginx zstd iproute2 nftables \
            iptables systemd tidy python python-prometheus_client curl wget aria2
    else
        echo "test.sh: neither apt-get nor pacman found; install: ${missing[*]}" >&2
        exit 1
    fi
fi

cargo fmt --all -- --check
cargo build --workspace --bins
cargo clippy --workspace --all-targets -- -D warnings
# A test whose prerequisites are missing fails under CI=true; otherwise it
# returns early, and is named here at the end, with what it needed.
skipped="$(mktemp)"
trap 'rm -f "$skipped"' EXIT
PACMESH_SKIP_LOG="$skipped" cargo test --workspace
if [ -s "$skipped" ]; then
    echo "test.sh: $(wc -l <"$skipped") test(s) SKIPPED (set CI=true to make them fail):" >&2
    sed 's/^/  /' "$skipped" >&2
fi
