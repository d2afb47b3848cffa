#!/usr/bin/env bash
# Writes daemon/symbol-order.txt: every function a release pacmeshd runs
# while it starts and serves cache hits, as the linker names them. The
# release link (daemon/build.rs) places these functions side by side at
# the front of the binary's code, so the few pages they fill are all the
# code a serving daemon keeps resident (bench/README.md, "Where the memory
# goes"). A function missing from the list still works; it only sits
# where the compiler put it.
#
# The names carry hashes that change with the compiler and with the
# versions of the crates in Cargo.lock, so run this again after either
# changes (the build warns when the compiler differs from the one named
# in the file). Needs valgrind and curl. Usage: bench/symbol-order.sh
#
# The run: pacmeshd under callgrind (which lists every function that ran,
# however briefly) with a small cache dir, then requests the way pacman and
# other clients make them: hits of small and large files, kept-alive and
# in parallel, HEAD, ranges, conditionals, misses answered by a redirect to
# a loopback mirror that is never contacted, and pacmesh's own pages.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$REPO/daemon/symbol-order.txt"
PACMESHD="$REPO/target/release/pacmeshd"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v valgrind >/dev/null || die "valgrind needed (apt-get install valgrind)"
command -v curl >/dev/null || die "curl needed"

WORK=$(mktemp -d /tmp/pacmesh-symbol-order.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill -KILL "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "building pacmeshd (release)"
(cd "$REPO" && cargo build --release -p pacmeshd --bin pacmeshd >&2)

# The cache: small packages with signatures, one of 4 KiB, a few large.
CACHE="$WORK/cache"
mkdir -p "$CACHE"
for i in $(seq -w 1 60); do
    head -c $((i * 1000)) /dev/urandom > "$CACHE/small$i-1.0-1-x86_64.pkg.tar.zst"
    head -c 566 /dev/urandom > "$CACHE/small$i-1.0-1-x86_64.pkg.tar.zst.sig"
done
head -c 4096 /dev/urandom > "$CACHE/tiny-4k-1.0-1-any.pkg.tar.zst"
for i in 1 2 3; do
    head -c $((i * 8 * 1024 * 1024)) /dev/urandom > "$CACHE/large$i-1.0-1-x86_64.pkg.tar.zst"
done
# A repo whose mirror is a closed loopback port: misses are redirected
# there, and nothing ever connects to it.
printf '[options]\nCacheDir = %s\n\n[core]\nServer = http://127.0.0.1:9/core/os/$arch\n' \
    "$CACHE" > "$WORK/pacman.conf"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(port)
QUIC_PORT=$(port)
BASE="http://127.0.0.1:$HTTP_PORT"

log "starting pacmeshd under callgrind"
valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --callgrind-out-file="$WORK/callgrind.out" \
    "$PACMESHD" --cache-dir "$CACHE" --http-listen "127.0.0.1:$HTTP_PORT" \
    --quic-listen "127.0.0.1:$QUIC_PORT" --pacman-conf "$WORK/pacman.conf" \
    --state-dir "$WORK/state" --store-dir "$WORK/store" --no-mdns \
    2> "$WORK/pacmeshd.log" &
PID=$!
up=
for _ in $(seq 600); do
    kill -0 "$PID" 2>/dev/null || die "pacmeshd exited: $(tail -5 "$WORK/pacmeshd.log")"
    if curl -sf -o /dev/null "$BASE/_pacmesh/status"; then up=1; break; fi
    sleep 0.2
done
[[ -n $up ]] || die "pacmeshd did not answer within 120 s"

log "requests"
urls=()
for f in "$CACHE"/*; do urls+=("$BASE/$(basename "$f")"); done
for _ in 1 2 3; do
    # Kept alive, one after another; then in parallel.
    curl -sf "${urls[@]}" > /dev/null
    curl -sf --no-progress-meter --parallel --parallel-max 16 "${urls[@]}" > /dev/null
done
tiny="$BASE/tiny-4k-1.0-1-any.pkg.tar.zst"
for _ in $(seq 200); do echo "url = \"$tiny\""; echo "output = /dev/null"; done > "$WORK/tiny.curl"
curl -s --no-progress-meter --parallel --parallel-max 32 -K "$WORK/tiny.curl"
curl -sf -I "$tiny" > /dev/null
curl -sf -r 100-199 "$tiny" > /dev/null
curl -sf -r -100 "$tiny" > /dev/null
curl -s -r 99999- "$tiny" > /dev/null
curl -sf -z "$tiny" -H 'If-Modified-Since: Tue, 01 Dec 2099 00:00:00 GMT' "$tiny" > /dev/null
curl -sf --http1.0 "$tiny" > /dev/null
curl -s "$BASE/core/os/x86_64/missing-1.0-1-any.pkg.tar.zst" > /dev/null
curl -s "$BASE/core/os/x86_64/core.db" > /dev/null
curl -s "$BASE/nothing-here" > /dev/null
curl -s "$BASE/..%2fetc%2fpasswd" > /dev/null
for page in status metrics ""; do curl -sf "$BASE/_pacmesh/$page" > /dev/null; done

log "stopping pacmeshd"
kill -INT "$PID"
wait "$PID" || true
PID=

{
    echo "# The functions pacmeshd runs while it starts and serves cache hits, put"
    echo "# first in the binary's code by the release link (daemon/build.rs)."
    echo "# Written by bench/symbol-order.sh; do not edit. Made with:"
    echo "# $("${RUSTC:-rustc}" -V)"
    grep -oE '^c?fn=\([0-9]+\) _(ZN|R)[^ ]*' "$WORK/callgrind.out" | cut -d' ' -f2 | sort -u
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $(grep -vc '^#' "$OUT") functions to $OUT"
