#!/usr/bin/env bash
# Writes daemon/symbol-order.txt: every function a release pacmeshd runs
# while it starts and serves cache hits, then those it runs in the mesh,
# then those of a caching mirror, as the linker names them. The release link (daemon/build.rs) places
# these functions side by side at the front of the binary's code, in that
# order, so the few pages they fill are all the code a daemon keeps
# resident (bench/README.md, "Where the memory goes"). A function missing
# from the list still works; it only sits where the compiler put it.
#
# The names carry hashes that change with the compiler, with the versions
# of the crates in Cargo.lock and, for the 1 in 10 that ThinLTO renames
# (`.llvm.<n>`), with the code itself: run this again after a compiler or
# Cargo.lock change (the build warns of both) and now and then as the
# code changes. Needs valgrind (callgrind, callgrind_control), curl and
# python3. Usage: bench/symbol-order.sh (KEEP_WORK=1 keeps the work dir
# and the daemons' logs).
#
# The run: pacmeshd (A) under callgrind (which lists every function that
# ran, however briefly) with a small cache dir, then requests the way
# pacman and other clients make them: hits of small and large files,
# kept-alive and in parallel, HEAD, ranges, conditionals, misses answered
# by a redirect to a loopback mirror that is never contacted, and
# pacmesh's own pages. Then a second daemon (B), also under callgrind,
# with A as its static peer over loopback QUIC: it links, takes A's
# digest and fetches packages from A for its own clients, so the mesh's
# code (links, digests, transfers, verification) is listed too. Last a
# caching mirror (C, `--mode mirror`) whose upstream is Python's
# http.server on loopback with a database of three packages: the
# database proxied, misses fetched, verified and kept, then hits from
# its store, so mirror mode's code is listed after the mesh's.
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
PID_B=
PID_C=
PID_UP=
cleanup() {
    for pid in $PID $PID_B $PID_C $PID_UP; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$OUT.tmp"
    [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
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

# A free loopback port of `kind` (tcp for HTTP, udp for QUIC).
port() {
    python3 - "$1" <<'PY'
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}
# Writes DB, a sync database (gzip tar of desc files) listing the packages
# NAME-1.0-1-x86_64.pkg.tar.zst of DIR with their sizes and SHA-256.
db() {
    python3 - "$@" <<'PY'
import hashlib, io, os, sys, tarfile
out, folder, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with tarfile.open(out, "w:gz") as db:
    for name in names:
        filename = f"{name}-1.0-1-x86_64.pkg.tar.zst"
        data = open(os.path.join(folder, filename), "rb").read()
        desc = (f"%FILENAME%\n{filename}\n\n%NAME%\n{name}\n\n%VERSION%\n1.0-1\n\n"
                f"%CSIZE%\n{len(data)}\n\n%SHA256SUM%\n{hashlib.sha256(data).hexdigest()}\n\n")
        info = tarfile.TarInfo(f"{name}-1.0-1/desc")
        info.size = len(desc)
        db.addfile(info, io.BytesIO(desc.encode()))
PY
}

HTTP_PORT=$(port tcp)
QUIC_PORT=$(port udp)
BASE="http://127.0.0.1:$HTTP_PORT"

# Starts pacmeshd NAME under callgrind with the remaining flags; sets PID.
start() {
    local name=$1
    shift
    valgrind --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$WORK/callgrind-$name.out" \
        "$PACMESHD" --state-dir "$WORK/state-$name" --store-dir "$WORK/store-$name" \
        --no-mdns "$@" 2> "$WORK/pacmeshd-$name.log" &
    PID=$!
}

# Waits until `curl URL` succeeds and prints what it got, for pacmeshd
# NAME (PID), at most 120 s.
wait_for() {
    local name=$1 pid=$2 url=$3
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || die "pacmeshd $name exited: $(tail -5 "$WORK/pacmeshd-$name.log")"
        if curl -sf "$url"; then return 0; fi
        sleep 0.2
    done
    die "pacmeshd $name: no answer from $url within 120 s"
}

log "starting pacmeshd A under callgrind"
start a --cache-dir "$CACHE" --http-listen "127.0.0.1:$HTTP_PORT" \
    --quic-listen "127.0.0.1:$QUIC_PORT" --pacman-conf "$WORK/pacman.conf"
PID_A=$PID
wait_for a "$PID_A" "$BASE/_pacmesh/status" > /dev/null

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

# What A ran so far (start-up and hits) is the first part of the list:
# the code every daemon keeps resident, packed apart from the mesh's.
callgrind_control --dump=hits "$PID_A" > /dev/null

log "starting pacmeshd B under callgrind, A its static peer"
mkdir -p "$WORK/cache-b" "$WORK/db-b/sync"
printf '[options]\nCacheDir = %s\nDBPath = %s\n\n[core]\nServer = http://127.0.0.1:9/core/os/$arch\n' \
    "$WORK/cache-b" "$WORK/db-b" > "$WORK/pacman-b.conf"
# B's sync database lists two of A's packages with their SHA-256, so B
# verifies what A sends as in real use (the others arrive unverified).
db "$WORK/db-b/sync/core.db" "$CACHE" large2 small02
HTTP_B=$(port tcp)
QUIC_B=$(port udp)
[[ $QUIC_B != "$QUIC_PORT" ]] || QUIC_B=$(port udp)
BASE_B="http://127.0.0.1:$HTTP_B"
start b --cache-dir "$WORK/cache-b" --http-listen "127.0.0.1:$HTTP_B" \
    --quic-listen "127.0.0.1:$QUIC_B" --pacman-conf "$WORK/pacman-b.conf" \
    --peer "127.0.0.1:$QUIC_PORT"
PID_B=$PID
PID=$PID_A
linked=
for _ in $(seq 600); do
    status=$(wait_for b "$PID_B" "$BASE_B/_pacmesh/status")
    # B's status names its own node id once and each linked peer's again.
    if [[ $(grep -o '"node_id"' <<< "$status" | wc -l) -ge 2 ]]; then linked=1; break; fi
    sleep 0.2
done
[[ -n $linked ]] || die "B did not link to A within 120 s"
log "B fetches from A"
for name in large2 large1 small02 small01 small30; do
    # From A, or (A slowed down by callgrind and given up on) redirected
    # to the closed mirror: either way the code ran.
    curl -s -o /dev/null "$BASE_B/core/os/x86_64/$name-1.0-1-x86_64.pkg.tar.zst"
done
grep -q 'source="peer"' "$WORK/pacmeshd-b.log" ||
    die "B took nothing verified from A: $(grep done "$WORK/pacmeshd-b.log" | tail -5)"
curl -sf -o /dev/null "$BASE_B/_pacmesh/status"

log "starting an upstream and pacmeshd C under callgrind, a caching mirror of it"
UP_DIR="$WORK/upstream/core/os/x86_64"
mkdir -p "$WORK/cache-c" "$UP_DIR"
for name in small03 small04 large3; do cp "$CACHE/$name-1.0-1-x86_64.pkg.tar.zst" "$UP_DIR/"; done
db "$UP_DIR/core.db" "$UP_DIR" small03 small04 large3
UP_PORT=$(port tcp)
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/upstream" "$UP_PORT" \
    > "$WORK/upstream.log" 2>&1 &
PID_UP=$!
wait_for upstream "$PID_UP" "http://127.0.0.1:$UP_PORT/core/os/x86_64/core.db" > /dev/null
printf '[options]\nCacheDir = %s\n' "$WORK/cache-c" > "$WORK/pacman-c.conf"
printf '[[mirror.repo]]\nname = "core"\nservers = ["http://127.0.0.1:%s/$repo/os/$arch"]\n' \
    "$UP_PORT" > "$WORK/pacmeshd-c.toml"
HTTP_C=$(port tcp)
QUIC_C=$(port udp)
BASE_C="http://127.0.0.1:$HTTP_C"
start c --mode mirror --config "$WORK/pacmeshd-c.toml" --cache-dir "$WORK/cache-c" \
    --http-listen "127.0.0.1:$HTTP_C" --quic-listen "127.0.0.1:$QUIC_C" \
    --pacman-conf "$WORK/pacman-c.conf"
PID_C=$PID
PID=$PID_A
wait_for c "$PID_C" "$BASE_C/_pacmesh/status" > /dev/null
log "C fetches from the upstream, then serves from its store"
# The database first, as `pacman -Sy` does: C verifies packages by it.
curl -sf -o /dev/null "$BASE_C/core/os/x86_64/core.db"
for _ in 1 2; do
    for name in small03 small04 large3; do
        curl -sf -o /dev/null "$BASE_C/core/os/x86_64/$name-1.0-1-x86_64.pkg.tar.zst" ||
            die "C did not serve $name: $(tail -5 "$WORK/pacmeshd-c.log")"
    done
done
curl -sf -o /dev/null -z "$UP_DIR/core.db" "$BASE_C/core/os/x86_64/core.db"
curl -sf -o /dev/null "$BASE_C/_pacmesh/status"
grep -q 'source="local"' "$WORK/pacmeshd-c.log" ||
    die "C served nothing from its store: $(grep done "$WORK/pacmeshd-c.log" | tail -5)"

log "stopping the daemons"
kill -INT "$PID_C" "$PID_B" "$PID_A"
kill "$PID_UP"
PID_UP=
running() { kill -0 "$PID_A" 2>/dev/null || kill -0 "$PID_B" 2>/dev/null || kill -0 "$PID_C" 2>/dev/null; }
for _ in $(seq 600); do
    running || break
    sleep 0.2
done
running && die "a daemon did not stop within 120 s of SIGINT"
PID=
PID_B=
PID_C=
# A daemon killed before its end leaves its final dump empty.
for out in "$WORK"/callgrind-{a,b,c}.out; do
    grep -q '^totals:' "$out" || die "callgrind did not finish $out"
done

{
    echo "# The functions pacmeshd runs while it starts and serves cache hits, then"
    echo "# those it runs in the mesh, then those of a caching mirror: put first"
    echo "# in the binary's code, in this order, by the release link"
    echo "# (daemon/build.rs)."
    echo "# Written by bench/symbol-order.sh; do not edit. Made for (the build"
    echo "# compares):"
    echo "# rustc: $("${RUSTC:-rustc}" -V)"
    echo "# target: $("${RUSTC:-rustc}" -vV | sed -n 's/^host: //p')"
    echo "# Cargo.lock: $(python3 - "$REPO/Cargo.lock" <<'PY'
import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print(f"{h:016x}")
PY
)"
    # callgrind marks a recursive call's cost as `name'2`: the same symbol.
    names() {
        cat "$@" | grep -oE '^c?fn=\([0-9]+\) _(ZN|R)[^ ]*' | cut -d' ' -f2 |
            sed "s/'[0-9]*$//" | sort -u
    }
    hits=("$WORK"/callgrind-a.out.[0-9]*)
    [[ -f ${hits[0]} ]] || die "callgrind wrote no dump of A's hits"
    names "${hits[@]}"
    echo "# The mesh: what A and B ran while B fetched from A."
    comm -13 <(names "${hits[@]}") <(names "$WORK"/callgrind-{a,b}.out)
    echo "# A caching mirror: what C ran, fetching from its upstream and serving its store."
    comm -13 <(names "${hits[@]}" "$WORK"/callgrind-{a,b}.out) <(names "$WORK"/callgrind-c.out)
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $(grep -vc '^#' "$OUT") functions to $OUT"
