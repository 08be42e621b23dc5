#!/usr/bin/env bash
# The benchmark suite, one command (root: drop caches, loop-mounted btrfs, overlay mounts):
#   scripts/bench.sh
# Variables: DATA (the real pair: a Debian root filesystem base/ and base.tar, the same with a
# realistic second layer new/ and layer.tar; made here by scripts/make-data.sh (debootstrap) when
# missing; default /var/tmp/difftool-data; the optional peers goref/ctrref are taken from
# $DATA/bin when there), SYNTH (synthetic pair, made here by scripts/make-synth.py, default
# /var/tmp/difftool-synth), MILLION (the 1.05M-entry pair for SETS=million, made here by
# make-synth.py --files 900000 --big "", default /var/tmp/difftool-million, about 11 GB),
# SCR (tmpfs scratch, /dev/shm/...), OUT (bench-out), RUNS (10), SYNTH_RUNS (3), COLD_RUNS (3),
# COLD=0, SETS="real synth" (add million for the big pair), CASES (only these cases, e.g.
# CASES="changes size diff").
# Needs hyperfine, bsdtar (libarchive-tools), GNU tar, GNU time, pigz, openssl, python3 (installed
# when missing). Writes TABLE.md to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-/var/tmp/difftool-data} SYNTH=${SYNTH:-/var/tmp/difftool-synth} MILLION=${MILLION:-/var/tmp/difftool-million}
export SCR=${SCR:-/dev/shm/difftool-bench} OUT=$(realpath -m "${OUT:-bench-out}") SETS=${SETS:-real synth}
for t in hyperfine bsdtar /usr/bin/time pigz openssl; do
    command -v $t >/dev/null || apt-get install -y -qq hyperfine libarchive-tools time pigz openssl >/dev/null
done
swift build -c release >/dev/null
export T=$(swift build -c release --show-bin-path)/difftool
if [[ " $SETS " == *" real "* ]] && ! [ -f "$DATA/layer.tar" ]; then
    scripts/make-data.sh "$DATA"
fi
if [[ " $SETS " == *" million "* ]]; then
    python3 scripts/make-synth.py "$MILLION" --files 900000 --big ""
fi
if [[ " $SETS " == *" synth "* ]]; then
    python3 scripts/make-synth.py "$SYNTH"
    if ! [ "$SYNTH/layer.tar" -nt "$SYNTH/.done" ]; then
        "$T" tar "$SYNTH/base" > "$SYNTH/base.tar"
        "$T" diff "$SYNTH/base" "$SYNTH/new" > "$SYNTH/layer.tar"
    fi
fi
mkdir -p "$OUT" "$SCR"
python3 scripts/bench.py
rm -rf "$SCR"
