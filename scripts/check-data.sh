#!/usr/bin/env bash
# A driver on the real data pair in $DATA (a Debian root filesystem `base`, the same with a
# realistic second layer applied `new`, and their tars base.tar and layer.tar):
# import base.tar and a layer tar as a two-layer chain, check the top layer's view is `new`, and
# check the export of the top layer (native where the driver has one), applied onto a copy of
# base, reproduces `new`.
#   DATA=/var/tmp/difftool-data DRIVER=overlay2 scripts/check-data.sh     (vfs, overlay2, btrfs, aufs)
# btrfs gets a btrfs image on a loop device, made and removed here. aufs (no module here) shows
# the top branch's .wh. files instead of a view, and is then migrated to overlay2, whose merged
# view is checked.
# The layer is difftool's own diff of base and new; with LAYER=moby it is make-data's layer.tar
# (moby's naive diff), which misses what moby cannot see (an edit with equal size and mtime,
# user.* xattrs) — those differences are then listed, not failed on.
# A tar cannot carry sockets: `new`'s sockets (and their directories' mtimes) are the one
# allowed difference.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/var/tmp/difftool-data}
swift build -c release >/dev/null
T=$(swift build -c release --show-bin-path)/difftool
DRIVER=${DRIVER:-overlay2}
W=$(mktemp -d /var/tmp/difftool-check.XXXXXX)
HOME_DIR=$W/store
if [ "$DRIVER" = btrfs ]; then
    truncate -s 4G "$W/btrfs.img" && mkfs.btrfs -q -f "$W/btrfs.img" >/dev/null
    mkdir "$W/mnt" && mount -o loop "$W/btrfs.img" "$W/mnt" && HOME_DIR=$W/mnt/store
fi
S="--driver $DRIVER --home $HOME_DIR"
cleanup() { "$T" $S umount top >/dev/null 2>&1 || true; umount "$W/mnt" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

if [ "${LAYER:-ours}" = moby ]; then layer=$DATA/layer.tar; else layer=$W/layer.tar; "$T" diff "$DATA/base" "$DATA/new" -o "$layer" 2>/dev/null; fi
"$T" $S import base -i "$DATA/base.tar" >/dev/null
"$T" $S import top --parent base -i "$layer" >/dev/null

# What may differ: each socket of new (gone) and the directories above it.
allowed=$(cd "$DATA/new" && find . -type s | sed 's|^\.||' | while read -r s; do
    echo "D $s"; d=$(dirname "$s"); while [ "$d" != / ]; do echo "C $d"; d=$(dirname "$d"); done; done | sort -u)
check() {  # $1: what, $2: tree to compare with new
    local extra
    extra=$("$T" changes "$DATA/new" "$2" | sort | comm -23 - <(echo "$allowed"))
    if [ -z "$extra" ]; then echo "ok: $1 equals new (sockets aside)"; return 0; fi
    echo "DIFFERENT: $1 vs new:"; echo "$extra" | head -20
    [ "${LAYER:-ours}" = moby ]
}
if [ "$DRIVER" = aufs ]; then
    echo "aufs: $(find "$HOME_DIR/aufs/diff/top" -name '.wh.*' | wc -l) whiteouts kept as .wh. files in the top layer's branch"
else
    merged=$("$T" $S mount top)
    check "top layer of the $DRIVER chain" "$merged"
    [ "$DRIVER" != btrfs ] || echo "btrfs subvolume list: $(btrfs subvolume list "$W/mnt" | awk '{print $NF}' | tr '\n' ' ')"
    "$T" $S umount top
fi

"$T" $S export top -o "$W/native.tar"
echo "export: $(tar -tf "$W/native.tar" | wc -l) entries, $(tar -tvf "$W/native.tar" | grep -c '\.wh\.') whiteouts"
cp -a "$DATA/base" "$W/copy"
"$T" apply "$W/copy" -i "$W/native.tar" >/dev/null
check "the export applied onto a copy of base" "$W/copy"

if [ "$DRIVER" = aufs ]; then
    "$T" migrate --from aufs --from-home "$HOME_DIR" --to overlay2 --to-home "$W/migrated"
    merged=$("$T" --driver overlay2 --home "$W/migrated" mount top)
    check "merged view of the store migrated to overlay2" "$merged"
    "$T" --driver overlay2 --home "$W/migrated" umount top
fi
