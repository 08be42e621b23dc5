#!/usr/bin/env bash
# btrfs send diffs against the naive diff (root: a btrfs image on a loop device, drop caches):
#   scripts/bench-btrfs-send.sh
# On a btrfs store in a fresh loop image: `export --regenerate` (send stream) and `export --naive`
# of
#   one    a child of the real base (DATA/base.tar) with one file changed,
#   layer  the real pair as a chain (DATA/layer.tar imported on the base; --regenerate, else the
#          export gives back the imported tar from its tar-split record and no diff is made),
#   synth  a child of the synthetic tree (SYNTH/base.tar, 211,163 entries) with one file changed,
#          when SYNTH_TAR names it (scripts/make-synth.py DIR, then `difftool tar DIR/base`),
# each pair of commands in one hyperfine call (warm; COLD=1 adds runs after dropping caches),
# REPEAT times, the load average printed before each call. One export of each kind runs first:
# the naive export's first read of the changed file moves its atime (relatime), so its layer's
# ctransid, and the send export's next run would make its kept snapshot again.
# Variables: DATA (/var/tmp/difftool-data), SYNTH_TAR (none), WORK (a new /var/tmp dir),
# RUNS (10), COLD_RUNS (3), COLD (1), REPEAT (1), IMAGE_GB (8). Writes hyperfine's JSON and
# Markdown to WORK (NAME-R.json, NAME-cold-R.json for repeat R).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/var/tmp/difftool-data} RUNS=${RUNS:-10} COLD_RUNS=${COLD_RUNS:-3} COLD=${COLD:-1} REPEAT=${REPEAT:-1}
WORK=${WORK:-$(mktemp -d /var/tmp/btrfs-send-bench.XXXXXX)}
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
swift build -c release --product difftool >/dev/null
T=$(swift build -c release --show-bin-path)/difftool

mkdir -p "$WORK/mnt"
truncate -s "${IMAGE_GB:-8}G" "$WORK/image"
mkfs.btrfs -q -f "$WORK/image" >/dev/null
DEV=$(losetup --find --show "$WORK/image")
mount "$DEV" "$WORK/mnt"
cleanup() { umount "$WORK/mnt" || umount -l "$WORK/mnt"; losetup -d "$DEV"; rm -f "$WORK/image"; }
trap cleanup EXIT
S="$T --driver btrfs --home $WORK/mnt/store"

# A child with one regular file of the parent changed (appended to: size and mtime move).
child_with_one_edit() { # PARENT CHILD
    $S create "$2" --parent "$1"
    local root; root=$($S mount "$2")
    local f; f=$(find "$root" -type f -size +0 -links 1 -print -quit)
    echo "edited by bench-btrfs-send" >> "$f"
    echo "$2: edited ${f#"$root"/}"
}

bench() { # NAME ID
    local a="$S export $2 --regenerate -o /dev/null -q" b="$S export $2 --naive -o /dev/null -q" r
    $a && $b
    for r in $(seq "$REPEAT"); do
        echo "== $1, repeat $r, load: $(cut -d' ' -f1-3 /proc/loadavg)"
        hyperfine -N --warmup 2 --runs "$RUNS" -n "$1 send" "$a" -n "$1 naive" "$b" \
            --export-json "$WORK/$1-$r.json" --export-markdown "$WORK/$1-$r.md"
        if [ "$COLD" = 1 ]; then
            echo "== $1 cold, repeat $r, load: $(cut -d' ' -f1-3 /proc/loadavg)"
            hyperfine -N --runs "$COLD_RUNS" --prepare 'sh -c "sync; echo 3 > /proc/sys/vm/drop_caches"' \
                -n "$1 send, cold" "$a" -n "$1 naive, cold" "$b" \
                --export-json "$WORK/$1-cold-$r.json" --export-markdown "$WORK/$1-cold-$r.md"
        fi
    done
}

$S import base -i "$DATA/base.tar" -q >/dev/null
child_with_one_edit base one
$S import layer --parent base -i "$DATA/layer.tar" -q >/dev/null
$S status | grep -i send
bench one one
bench layer layer
if [ -n "${SYNTH_TAR:-}" ]; then
    $S import synth -i "$SYNTH_TAR" -q >/dev/null
    child_with_one_edit synth synth-one
    bench synth synth-one
fi
