#!/usr/bin/env bash
# Builds one AFL++ target with cargo-afl (stable Rust) and fuzzes it.
#   fuzz/run.sh TARGET MINUTES   fuzz for MINUTES, then print the figures
#                                (exit 1 when it saved a crash)
#   fuzz/run.sh --cmin TARGET    minimise fuzz/out/TARGET's queue together
#                                with fuzz/corpus/TARGET into fuzz/corpus/TARGET
#                                (the MAX_KEPT files that cover the most)
# TARGET: frames | http | pacman_conf | sync_db (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(frames http pacman_conf sync_db)
usage() {
    echo "usage: $0 TARGET MINUTES | $0 --cmin TARGET  (TARGET: ${TARGETS[*]})" >&2
    exit 64
}
known() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

# cargo-afl and its AFL++ build: installed once per machine.
setup() {
    command -v cargo-afl >/dev/null || cargo install --locked cargo-afl
    if ! cargo afl config --build >/tmp/pacmesh-afl-config.log 2>&1 &&
        ! grep -q "already built" /tmp/pacmesh-afl-config.log; then
        cat /tmp/pacmesh-afl-config.log >&2
        exit 1
    fi
}

build() {
    cargo afl build --release --bin "$1"
}

# Fields of AFL++'s fuzzer_stats, one "name: value" per line.
stat() { sed -n "s/^$2 *: //p" "out/$1/default/fuzzer_stats"; }

fuzz() {
    local target=$1 minutes=$2 here dict=() sandbox
    here=$(pwd)
    [[ -f dict/$target.dict ]] && dict=(-x "$here/dict/$target.dict")
    mkdir -p out
    # The target runs in an empty dir of its own: a pacman.conf's relative
    # Include globs see nothing of this tree.
    sandbox=$(mktemp -d)
    # A shared, loaded machine: no CPU pinning or governor checks, no UI,
    # and a campaign over an existing out/ dir goes on where it stopped.
    (cd "$sandbox" && AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_AUTORESUME=1 \
        AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        cargo afl fuzz -i "$here/corpus/$target" -o "$here/out/$target" "${dict[@]}" \
        -t 2000 -V "$((minutes * 60))" "$here/target/release/$target") >"out/$target.log" 2>&1 || {
        tail -30 "out/$target.log" >&2
        rm -rf "$sandbox"
        exit 1
    }
    rm -rf "$sandbox"
    local crashes
    crashes=$(stat "$target" saved_crashes)
    echo "$target: $(stat "$target" execs_done) execs in $(stat "$target" run_time) s," \
        "$(stat "$target" corpus_count) paths, $crashes crashes, $(stat "$target" saved_hangs) hangs"
    if [[ $crashes != 0 ]]; then
        echo "crashing inputs: fuzz/out/$target/default/crashes/" >&2
        exit 1
    fi
}

# Numbered corpus files --cmin keeps per target; named ones (the seeds, and
# `bug-*`: inputs that found a bug) are always kept.
MAX_KEPT=64

# AFL++'s tools, from the AFL++ that `cargo afl config --build` built for
# this rustc. The shell afl-cmin: the Python one kept no file of a Rust target.
afl_tool() {
    local version
    version=$(rustc -V | cut -d' ' -f2)
    ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$version"-*/afl.rs-*/afl/bin/"$1" |
        tail -1
}

# The queue and the corpus, minimised by edges (afl-cmin -e), then the
# MAX_KEPT files that cover the most of them (greedy.py).
cmin() {
    local target=$1 work
    work=$(mktemp -d)
    mkdir "$work/all"
    cp "corpus/$target"/* "out/$target/default/queue"/id:* "$work/all"/
    "$(afl_tool afl-cmin.bash)" -e -i "$work/all" -o "$work/min" -t 2000 \
        -- "target/release/$target" >/dev/null 2>&1
    "$(afl_tool afl-showmap)" -e -i "$work/min" -o "$work/maps" -t 2000 \
        -- "target/release/$target" >/dev/null 2>&1
    python3 greedy.py "$work/maps" "$work/min" "$work/kept" "$MAX_KEPT"
    if [[ -z $(ls "$work/kept") ]]; then
        echo "nothing kept; corpus/$target left as it was" >&2
        rm -rf "$work"
        exit 1
    fi
    rm -f "corpus/$target"/[0-9]*
    cp "$work/kept"/* "corpus/$target"/
    rm -rf "$work"
    echo "$target: $(ls "corpus/$target" | wc -l) files, $(du -sb "corpus/$target" | cut -f1) bytes"
}

case "${1:-}" in
--cmin)
    known "${2:-}" || usage
    setup
    build "$2"
    cmin "$2"
    ;;
*)
    known "${1:-}" && [[ ${2:-} =~ ^[0-9]+$ ]] || usage
    setup
    build "$1"
    fuzz "$1" "$2"
    ;;
esac
