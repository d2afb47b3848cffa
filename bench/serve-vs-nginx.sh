#!/usr/bin/env bash
# Serving benchmark: pacmeshd vs nginx (sendfile) on cache hits, loopback.
# See bench/README.md. Usage: bench/serve-vs-nginx.sh
#
# Environment knobs:
#   BENCH_DIR   work dir (files are generated once and reused) [/tmp/pacmesh-bench]
#   DURATION    seconds per load run [8]
#   ROUNDS      interleaved rounds [5]
#   CONNS       concurrencies for the big-file mix ["1 16 64"]
#   SEED        file-set seed [20261121]
#   PACMESH_LOG pacmeshd's log filter (default: the daemon's default, info)
#   NO_BUILD=1  skip the cargo build
#   PACMESH_MODE  pacmeshd's --mode: local, or mirror (a caching mirror's hit
#               path: the same files served in mirror mode) [local]
#   QUIET_WAIT  before each nginx/pacmeshd pair of runs, wait up to this many
#               seconds for the rest of the machine to go idle (other builds) [300]
#   PAIR_TRIES  a pair during which other processes used > 0.25 core is redone,
#               at most this many tries [3]
#   FLOOR=0     leave out the floor: `pacmesh-netprobe serve-files`, a bare
#               tokio sendfile server run beside the two (see bench/README.md) [1]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/pacmesh-bench}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-"1 16 64"}
SEED=${SEED:-20261121}
RESULTS_DIR="$REPO/bench/results"
PACMESHD="$REPO/target/release/pacmeshd"
NETPROBE="$REPO/target/release/pacmesh-netprobe"
FLOOR=${FLOOR:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
CLK_TCK=$(getconf CLK_TCK)
CACHE="$BENCH_DIR/cache"
NGINX_ROOT="$BENCH_DIR/cache-nginx"
RUN="$BENCH_DIR/run"          # per-run state, recreated every time
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- cleanup: only the processes this script started, by pid -------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [[ -n $pid ]] || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# --- tools ---------------------------------------------------------------
OHA=$(command -v oha || true)
[[ -z $OHA && -x $HOME/.cargo/bin/oha ]] && OHA=$HOME/.cargo/bin/oha
if [[ -z $OHA ]]; then
    log "installing oha (cargo install oha --locked)"
    cargo install oha --locked >&2
    OHA=$HOME/.cargo/bin/oha
fi
[[ -x $NGINX ]] || die "nginx not found at $NGINX (apt-get install nginx-light)"
command -v python3 >/dev/null || die "python3 needed"

# --- 1. build ------------------------------------------------------------
if [[ ${NO_BUILD:-0} != 1 ]]; then
    for attempt in 1 2 3 4 5; do
        log "cargo build --release (pacmeshd, pacmesh-netprobe; attempt $attempt)"
        if (cd "$REPO" && cargo build --release -p pacmeshd -p pacmesh-tests \
            --bin pacmeshd --bin pacmesh-netprobe >&2); then break; fi
        [[ $attempt == 5 ]] && die "pacmeshd does not build"
        log "build failed (someone mid-edit?); retrying in 60 s"
        sleep 60
    done
fi
[[ -x $PACMESHD ]] || die "no binary at $PACMESHD"
[[ $FLOOR == 0 || -x $NETPROBE ]] || die "no binary at $NETPROBE (or FLOOR=0)"

# --- 2. the file set (seeded, reused) ------------------------------------
gen_files() {
    python3 - "$CACHE" "$SEED" <<'PY'
import json, os, random, sys
cache, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed)
bases = ["linux", "firefox", "glibc", "gcc", "python", "llvm", "mesa", "qt6-base",
         "openssl", "systemd", "rust", "go", "perl", "vim", "git", "curl", "ffmpeg",
         "gtk4", "boost", "nodejs", "texlive-core", "libreoffice", "cuda", "jdk-openjdk"]
os.makedirs(cache, exist_ok=True)
files = []
def make(name, size):
    path = os.path.join(cache, name)
    with open(path + ".tmp", "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(r.randbytes(n))
            left -= n
    os.rename(path + ".tmp", path)
    files.append({"name": name, "size": size})
groups = [("s", 150, 100_000, 2_000_000), ("m", 40, 2_000_000, 20_000_000),
          ("l", 4, 60_000_000, 120_000_000)]
for tag, count, lo, hi in groups:
    for i in range(count):
        base = r.choice(bases)
        make(f"{base}-{tag}{i:03d}-1.0-1-x86_64.pkg.tar.zst", r.randint(lo, hi))
make("tiny-4k-1.0-1-any.pkg.tar.zst", 4096)
for i in range(10_000):
    with open(os.path.join(cache, f"dummy{i:05d}-1.0-1-any.pkg.tar.zst"), "wb") as f:
        f.write(b"\0")
json.dump({"seed": seed, "files": files}, open(os.path.join(cache, "..", "fileset.json"), "w"))
total = sum(f["size"] for f in files)
print(f"{len(files)} files, {total/1e6:.0f} MB, plus 10000 dummies", file=sys.stderr)
PY
}
MANIFEST="$BENCH_DIR/fileset.json"
if [[ -f $MANIFEST ]] && python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["seed"] != int(sys.argv[2]))' "$MANIFEST" "$SEED"; then
    log "reusing file set in $CACHE"
else
    log "generating file set in $CACHE (seed $SEED)"
    rm -rf "$CACHE" "$NGINX_ROOT" "$MANIFEST"
    gen_files
fi
# nginx serves hard links to the same inodes (same page cache) from a dir that
# pacmeshd does not watch: pacmeshd's inotify watch on its cache dir reports
# every open there, and nginx's opens would otherwise cost pacmeshd (and so
# steal from nginx) ~0.3 core during nginx's 4 KB runs.
rm -rf "$NGINX_ROOT.tmp"
if [[ ! -d $NGINX_ROOT ]]; then
    cp -al "$CACHE" "$NGINX_ROOT.tmp" && mv "$NGINX_ROOT.tmp" "$NGINX_ROOT"
fi
BIG_URLS_NAMES=$(python3 -c 'import json,sys; [print(f["name"]) for f in json.load(open(sys.argv[1]))["files"] if not f["name"].startswith("tiny-4k")]' "$MANIFEST")
TINY=tiny-4k-1.0-1-any.pkg.tar.zst
log "warming the page cache"
cat "$CACHE"/*-x86_64.pkg.tar.zst "$CACHE/$TINY" > /dev/null

# --- 3. servers ----------------------------------------------------------
rm -rf "$RUN"; mkdir -p "$RUN"/{nginx/logs,nginx/tmp,state,store}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port); PM_PORT=$(free_port); QUIC_PORT=$(free_port); FLOOR_PORT=$(free_port)

cat > "$RUN/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
master_process on;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    fastcgi_temp_path $RUN/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp/uwsgi;
    scgi_temp_path $RUN/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $NGINX_ROOT;
    }
}
EOF
"$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

printf '[options]\nCacheDir = %s\n' "$CACHE" > "$RUN/pacman.conf"
"$PACMESHD" --cache-dir "$CACHE" --http-listen "127.0.0.1:$PM_PORT" \
    --quic-listen "127.0.0.1:$QUIC_PORT" \
    --pacman-conf "$RUN/pacman.conf" --state-dir "$RUN/state" --store-dir "$RUN/store" \
    --mode "${PACMESH_MODE:-local}" --no-mdns 2>> "$RUN/pacmeshd.log" &
PM_PID=$!; PIDS+=("$PM_PID")
SERVERS=(nginx pacmeshd)
if [[ $FLOOR != 0 ]]; then
    # Serves nginx's hard links: pacmeshd's watch does not see its opens.
    PMH_LIFETIME_S=86400 "$NETPROBE" serve-files "127.0.0.1:$FLOOR_PORT" "$NGINX_ROOT" 2 \
        > "$RUN/floor.log" 2>&1 &
    FLOOR_PID=$!; PIDS+=("$FLOOR_PID"); SERVERS+=(floor)
fi
port_of() { case $1 in nginx) echo "$NGINX_PORT";; pacmeshd) echo "$PM_PORT";; floor) echo "$FLOOR_PORT";; esac; }
pid_of() { case $1 in nginx) echo "$NGINX_PID";; pacmeshd) echo "$PM_PID";; floor) echo "$FLOOR_PID";; esac; }

wait_up() { # url pid
    for _ in $(seq 300); do
        kill -0 "$2" 2>/dev/null || return 1
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    return 1
}
wait_up "http://127.0.0.1:$NGINX_PORT/$TINY" "$NGINX_PID" || die "nginx did not come up: $(cat "$RUN/nginx/logs/error.log")"
wait_up "http://127.0.0.1:$PM_PORT/$TINY" "$PM_PID" || die "pacmeshd did not come up: $(tail -5 "$RUN/pacmeshd.log")"
if [[ $FLOOR != 0 ]]; then
    wait_up "http://127.0.0.1:$FLOOR_PORT/$TINY" "$FLOOR_PID" || die "the floor did not come up: $(cat "$RUN/floor.log")"
fi
# The daemon writes its log in batches (up to 20 ms late): wait for the line.
for _ in $(seq 50); do grep -q 'cache index loaded' "$RUN/pacmeshd.log" && break; sleep 0.1; done
INDEX_LINE=$(grep -m1 'cache index loaded' "$RUN/pacmeshd.log" | sed 's/\x1b\[[0-9;]*m//g' || true)
INDEX_FILES=$(sed -n 's/.*files=\([0-9]*\).*/\1/p' <<<"$INDEX_LINE")
INDEX_MS=$(sed -n 's/.*ms=\([0-9]*\).*/\1/p' <<<"$INDEX_LINE")
log "nginx pid $NGINX_PID on :$NGINX_PORT; pacmeshd pid $PM_PID on :$PM_PORT; index files=$INDEX_FILES ms=$INDEX_MS${FLOOR_PID:+; floor pid $FLOOR_PID on :$FLOOR_PORT}"
# The daemon logs a line per request (about 1 GB over a whole run): the log
# is opened for appending and emptied after every run.
trim_log() { : > "$RUN/pacmeshd.log"; }
# Same bytes from both?
for name in $(head -3 <<<"$BIG_URLS_NAMES") $TINY; do
    a=$(curl -sf "http://127.0.0.1:$NGINX_PORT/$name" | md5sum)
    for srv in "${SERVERS[@]:1}"; do
        b=$(curl -sf "http://127.0.0.1:$(port_of "$srv")/$name" | md5sum)
        [[ $a == "$b" ]] || die "$srv and nginx disagree on $name"
    done
done

for srv in "${SERVERS[@]}"; do
    port=$(port_of "$srv")
    sed "s|^|http://127.0.0.1:$port/|" <<<"$BIG_URLS_NAMES" > "$RUN/urls-$srv.txt"
done

# --- 4/5. measurement ----------------------------------------------------
tree_pids() { # pid and all descendants
    local p=$1 c
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
}
tree_ticks() { # "utime stime" of the whole tree, in clock ticks
    local user=0 sys=0 p s
    for p in $(tree_pids "$1"); do
        s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        user=$((user + f[11])); sys=$((sys + f[12]))   # fields 14 and 15 of stat
    done
    echo "$user $sys"
}
tree_hwm_kib() { local total=0 p v; for p in $(tree_pids "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0); total=$((total + ${v:-0})); done; echo "$total"; }
wait_quiet() { # until the machine is idle for 2 s, at most QUIET_WAIT s
    local deadline=$(( $(date +%s) + ${QUIET_WAIT:-300} )) a b
    while :; do
        others_snap "$RUN/quiet.snap"; sleep 2; b=$(others_since "$RUN/quiet.snap")
        (( b * 100 / (2 * CLK_TCK) < 15 )) && return 0
        (( $(date +%s) >= deadline )) && { log "machine still busy ($(( b * 100 / (2 * CLK_TCK) ))% of a core); measuring anyway"; return 0; }
    done
}
sys_busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }

# CPU ticks (utime+stime+cutime+cstime) of every process outside this
# script's tree (servers and client are inside it) and not a kernel thread:
# what other work on the machine (someone's cargo build) is using.
cat > "$RUN/others.py" <<'PY'
import json, os, sys
root = int(sys.argv[1])
procs = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        # (ppid, own utime+stime, + reaped children's cutime+cstime)
        procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]), sum(int(x) for x in f[11:15]))
kids = {}
for pid, (ppid, _, _) in procs.items():
    kids.setdefault(ppid, []).append(pid)
mine, todo = set(), [root]
while todo:
    p = todo.pop()
    mine.add(p)
    todo += kids.get(p, [])
out = {pid: (own, total) for pid, (ppid, own, total) in procs.items()
       if pid not in mine and pid != 2 and ppid != 2}
if len(sys.argv) > 2:  # compare with an earlier snapshot: print the ticks used since
    before = {int(k): v for k, v in json.load(open(sys.argv[2])).items()}
    # A process seen both times: its own time and its reaped children's. A
    # new one: its own time only (its cutime may predate the window).
    print(sum(max(0, total - before[pid][1]) if pid in before else own
              for pid, (own, total) in out.items()))
else:
    json.dump(out, sys.stdout)
PY
others_snap() { python3 "$RUN/others.py" $$ > "$1"; }
others_since() { python3 "$RUN/others.py" $$ "$1"; }

RUNS="$RUN/runs.jsonl"; : > "$RUNS"
one_run() { # server pid test conns
    local srv=$1 pid=$2 test=$3 conns=$4 out="$RUN/oha.json" u0 s0 u1 s1 b0 b1 c0 c1 o args
    if [[ $test == tiny ]]; then
        args=("http://127.0.0.1:$(port_of "$srv")/$TINY")
    else
        args=(--urls-from-file "$RUN/urls-$srv.txt")
    fi
    others_snap "$RUN/run.snap"; read -r u0 s0 < <(tree_ticks "$pid"); b0=$(sys_busy_ticks); c0=$(date +%s.%N)
    local TIMEFORMAT='%U %S'
    { time "$OHA" --no-tui --output-format json -c "$conns" -z "${DURATION}s" \
        --wait-ongoing-requests-after-deadline "${args[@]}" > "$out"; } 2> "$RUN/oha.time"
    read -r u1 s1 < <(tree_ticks "$pid"); b1=$(sys_busy_ticks); c1=$(date +%s.%N); o=$(others_since "$RUN/run.snap")
    trim_log
    python3 - "$out" "$srv" "$test" "$conns" "$ROUND" "$((u1 - u0 + s1 - s0))" "$((b1 - b0))" "$CLK_TCK" \
        "$(cat "$RUN/oha.time")" "$c0" "$c1" "$(tree_hwm_kib "$pid")" "$o" "$((u1 - u0))" >> "$PAIR" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
srv, test, conns, rnd, ticks, busy, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
cu, cs = (float(x) for x in sys.argv[9].split()[-2:])
s = o["summary"]
secs = s["total"]
nbytes = s.get("totalData") or 0
codes = o.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k == "200")
bad = sum(v for k, v in codes.items() if k != "200") + sum(o.get("errorDistribution", {}).values())
cpu = ticks / hz
rec = dict(server=srv, test=test, conns=conns, round=rnd, secs=secs, bytes=nbytes,
           requests=ok, errors=bad, mb_s=nbytes / 1e6 / secs, req_s=ok / secs,
           server_cpu_s=cpu, cpu_s_per_gb=cpu / (nbytes / 1e9) if nbytes else None,
           client_cpu_s=cu + cs, machine_busy_s=busy / hz, wall_s=float(sys.argv[11]) - float(sys.argv[10]),
           tree_vmhwm_kib=int(sys.argv[12]))
# CPU used by processes outside this benchmark (other builds on the box).
rec["other_cpu_s"] = int(sys.argv[13]) / hz
# The server's user time (the rest of its CPU is the kernel's).
rec["server_user_s"] = int(sys.argv[14]) / hz
print(json.dumps(rec))
r = rec
print(f"  {srv:8} {test:5} c={conns:<3} {r['mb_s']:8.0f} MB/s {r['req_s']:8.0f} req/s  "
      f"server {cpu:5.2f} CPU-s" + (f" ({r['cpu_s_per_gb']:.3f}/GB)" if nbytes and test != 'tiny' else "")
      + f"  client {r['client_cpu_s']:5.2f}  other {r['other_cpu_s']:5.2f}  err {bad}", file=sys.stderr)
PY
}

# sanity: does oha know the flags we use?
"$OHA" --help | grep -q -- --urls-from-file || die "this oha has no --urls-from-file"

log "load: ${ROUNDS} rounds x (c=${CONNS// /,} big mix + c=64 4 KB) x ${#SERVERS[@]} servers (${SERVERS[*]}), ${DURATION}s each"
START=$(date +%s)
PAIR="$RUN/pair.jsonl"
# A pair (nginx and pacmeshd on one test) is redone, up to PAIR_TRIES times,
# when other processes used more than a quarter of a core during it.
noisy_pair() {
    python3 -c 'import json,sys; sys.exit(0 if any(json.loads(l)["other_cpu_s"] / json.loads(l)["secs"] > 0.25 for l in open(sys.argv[1])) else 1)' "$PAIR"
}
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    log "round $ROUND/$ROUNDS (loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
    # Each round starts with the next server: every one goes first as often.
    n=${#SERVERS[@]}; order=()
    for ((i = 0; i < n; i++)); do order+=("${SERVERS[(ROUND - 1 + i) % n]}"); done
    for test in $CONNS tiny; do
        for ((try = 1; ; try++)); do
            wait_quiet
            : > "$PAIR"
            for srv in "${order[@]}"; do
                pid=$(pid_of "$srv")
                kill -0 "$pid" 2>/dev/null || die "$srv died"
                if [[ $test == tiny ]]; then one_run "$srv" "$pid" tiny 64; else one_run "$srv" "$pid" big "$test"; fi
            done
            noisy_pair || break
            ((try >= ${PAIR_TRIES:-3})) && { log "  machine busy: keeping this noisy pair"; break; }
            log "  machine busy during this pair: redoing it"
        done
        cat "$PAIR" >> "$RUNS"
    done
done
PM_HWM_KIB=$(awk '/^VmHWM:/ {print $2}' /proc/"$PM_PID"/status)
NGINX_HWM_KIB=$(tree_hwm_kib "$NGINX_PID")
log "load done in $(( $(date +%s) - START )) s"

# --- 6. report -----------------------------------------------------------
mkdir -p "$RESULTS_DIR"
OUT_JSON="$RESULTS_DIR/serve-vs-nginx-$STAMP.json"
python3 - "$RUNS" "$OUT_JSON" <<PY
import json, statistics as st, sys, platform, subprocess
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(xs): xs = [x for x in xs if x is not None]; return st.median(xs) if xs else float("nan")
def pick(srv, test, conns): return {r["round"]: r for r in runs if r["server"] == srv and r["test"] == test and r["conns"] == conns}
def ratio(test, conns, key, of="pacmeshd", to="nginx"):
    n, p = pick(to, test, conns), pick(of, test, conns)
    return med([p[k][key] / n[k][key] for k in n if k in p and n[k][key]])
servers = "${SERVERS[*]}".split()
rows, summary = [], {}
print()
print("| conns | nginx MB/s | pacmeshd MB/s | ratio | nginx CPU-s/GB | pacmeshd CPU-s/GB | ratio |")
print("|---|---|---|---|---|---|---|")
for c in [int(x) for x in "$CONNS".split()]:
    n, p = pick("nginx", "big", c), pick("pacmeshd", "big", c)
    d = dict(nginx_mb_s=med([r["mb_s"] for r in n.values()]), pacmeshd_mb_s=med([r["mb_s"] for r in p.values()]),
             mb_s_ratio=ratio("big", c, "mb_s"),
             nginx_cpu_s_per_gb=med([r["cpu_s_per_gb"] for r in n.values()]),
             pacmeshd_cpu_s_per_gb=med([r["cpu_s_per_gb"] for r in p.values()]),
             cpu_ratio=ratio("big", c, "cpu_s_per_gb"))
    summary[f"big_c{c}"] = d
    print(f"| {c} | {d['nginx_mb_s']:.0f} | {d['pacmeshd_mb_s']:.0f} | {d['mb_s_ratio']:.2f}x | "
          f"{d['nginx_cpu_s_per_gb']:.3f} | {d['pacmeshd_cpu_s_per_gb']:.3f} | {d['cpu_ratio']:.2f}x |")
n, p = pick("nginx", "tiny", 64), pick("pacmeshd", "tiny", 64)
t = dict(nginx_req_s=med([r["req_s"] for r in n.values()]), pacmeshd_req_s=med([r["req_s"] for r in p.values()]),
         ratio=ratio("tiny", 64, "req_s"))
summary["tiny_4k_c64"] = t
summary["pacmeshd_vmhwm_mib"] = $PM_HWM_KIB / 1024
summary["nginx_tree_vmhwm_mib"] = $NGINX_HWM_KIB / 1024
summary["index_files"] = int("${INDEX_FILES:-0}" or 0)
summary["index_load_ms"] = int("${INDEX_MS:--1}")
errs = sum(r["errors"] for r in runs)
other = med([r["other_cpu_s"] / r["secs"] for r in runs])
print()
print(f"| 4 KB file, 64 conns | nginx {t['nginx_req_s']:.0f} req/s | pacmeshd {t['pacmeshd_req_s']:.0f} req/s | ratio {t['ratio']:.2f}x |")
print("|---|---|---|---|")
print()
print(f"- pacmeshd peak RSS (VmHWM after all runs incl. 64-conn): {summary['pacmeshd_vmhwm_mib']:.1f} MiB "
      f"(nginx master+workers: {summary['nginx_tree_vmhwm_mib']:.1f} MiB)")
print(f"- index load: files={summary['index_files']} ms={summary['index_load_ms']}")
big64 = {srv: med([r["server_user_s"] / (r["bytes"] / 1e9) for r in pick(srv, "big", 64).values() if r["bytes"]])
         for srv in servers}
summary["user_cpu_s_per_gb_c64"] = big64
print(f"- of the CPU per GB at 64 conns, user space: "
      + ", ".join(f"{srv} {big64[srv]:.3f}" for srv in servers) + " (the rest is the kernel's)")
if "floor" in servers:
    # The floor: a bare tokio sendfile server (pacmesh-netprobe serve-files).
    print()
    print("| floor (bare tokio sendfile server) | MB/s | CPU-s/GB | floor / nginx: MB/s | CPU/GB | pacmeshd / floor: MB/s | CPU/GB |")
    print("|---|---|---|---|---|---|---|")
    floor = {}
    for c in [int(x) for x in "$CONNS".split()]:
        f = pick("floor", "big", c)
        d = dict(floor_mb_s=med([r["mb_s"] for r in f.values()]),
                 floor_cpu_s_per_gb=med([r["cpu_s_per_gb"] for r in f.values()]),
                 floor_vs_nginx_mb_s=ratio("big", c, "mb_s", of="floor"),
                 floor_vs_nginx_cpu=ratio("big", c, "cpu_s_per_gb", of="floor"),
                 pacmeshd_vs_floor_mb_s=ratio("big", c, "mb_s", to="floor"),
                 pacmeshd_vs_floor_cpu=ratio("big", c, "cpu_s_per_gb", to="floor"))
        floor[f"big_c{c}"] = d
        print(f"| {c} conns | {d['floor_mb_s']:.0f} | {d['floor_cpu_s_per_gb']:.3f} | {d['floor_vs_nginx_mb_s']:.2f}x | "
              f"{d['floor_vs_nginx_cpu']:.2f}x | {d['pacmeshd_vs_floor_mb_s']:.2f}x | {d['pacmeshd_vs_floor_cpu']:.2f}x |")
    d = dict(floor_req_s=med([r["req_s"] for r in pick("floor", "tiny", 64).values()]),
             floor_vs_nginx=ratio("tiny", 64, "req_s", of="floor"),
             pacmeshd_vs_floor=ratio("tiny", 64, "req_s", to="floor"))
    floor["tiny_4k_c64"] = d
    print(f"| 4 KB file, 64 conns | {d['floor_req_s']:.0f} req/s | | {d['floor_vs_nginx']:.2f}x | | {d['pacmeshd_vs_floor']:.2f}x | |")
    summary["floor"] = floor
print(f"- non-2xx/errors: {errs}; median CPU used by other processes during runs: {other:.2f} cores")
if other > 0.25:
    print(f"- WARNING: other processes used {other:.2f} cores during the runs: figures are not comparable")
print(f"- targets (issue 13): MB/s >= 1.00x at 16/64 conns; CPU/GB <= 1.00x at 64; 4 KB req/s >= 0.90x; RSS <= 10 MiB; index < 1000 ms")
meta = dict(stamp="$STAMP", duration_s=$DURATION, rounds=$ROUNDS, seed=$SEED, clk_tck=$CLK_TCK,
            host=platform.node(), kernel=platform.release(), nproc=__import__("os").cpu_count(),
            nginx=subprocess.run(["$NGINX", "-v"], capture_output=True, text=True).stderr.strip(),
            oha=subprocess.run(["$OHA", "--version"], capture_output=True, text=True).stdout.strip(),
            index_log_line="""$INDEX_LINE""")
json.dump(dict(meta=meta, summary=summary, runs=runs), open(sys.argv[2], "w"), indent=1)
print(f"\nJSON: {sys.argv[2]}")
PY
