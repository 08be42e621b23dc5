#!/usr/bin/env bash
# The benchmark suite, one command (root: drop caches, loop-mounted btrfs, overlay mounts):
#   scripts/bench.sh
# Variables: DATA (the real pair: a Debian root filesystem base/ and base.tar, the same with a
# realistic second layer new/ and layer.tar; default /var/tmp/difftool-data; the
# peers goref/ctrref are taken from $DATA/bin when there), SYNTH (synthetic pair, made here by
# scripts/make-synth.py, default /var/tmp/difftool-synth), SCR (tmpfs scratch, /dev/shm/...),
# OUT (bench-out), RUNS (10), SYNTH_RUNS (3), COLD_RUNS (3), COLD=0, SETS="real synth".
# Needs hyperfine, bsdtar (libarchive-tools), GNU tar, GNU time, python3. Writes TABLE.md to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATA=${DATA:-/var/tmp/difftool-data} SYNTH=${SYNTH:-/var/tmp/difftool-synth}
export SCR=${SCR:-/dev/shm/difftool-bench} OUT=$(realpath -m "${OUT:-bench-out}") SETS=${SETS:-real synth}
for t in hyperfine bsdtar /usr/bin/time; do
    command -v $t >/dev/null || apt-get install -y -qq hyperfine libarchive-tools time >/dev/null
done
swift build -c release >/dev/null
export T=$(swift build -c release --show-bin-path)/difftool
if [[ " $SETS " == *" real "* ]] && ! [ -f "$DATA/layer.tar" ]; then
    echo "bench: no real data in $DATA; it needs base/, new/, base.tar and layer.tar" >&2; exit 1
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
