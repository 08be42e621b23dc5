#!/usr/bin/env bash
# Time difftool against the peers (moby's goref, containerd's ctrref) and the plain tools on the
# real root filesystem pair from shared/peers/make-data.sh, in one run (hyperfine, warm cache).
#   DATA=/var/tmp/difftool-data RUNS=15 scripts/bench.sh
# Needs hyperfine, bsdtar (libarchive-tools), GNU tar; peers are optional. Applies go to $SCR.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/var/tmp/difftool-data}
RUNS=${RUNS:-15}
SCR=${SCR:-/dev/shm/difftool-bench}
OUT=$(realpath -m "${OUT:-bench-out}")
swift build -c release >/dev/null
T=$(swift build -c release --show-bin-path)/difftool
G=$DATA/bin/goref
C=$DATA/bin/ctrref
mkdir -p "$OUT" "$SCR"
hf() { local name=$1; shift; hyperfine -N -w 2 -r "$RUNS" --export-json "$OUT/$name.json" "$@" >/dev/null; summary "$OUT/$name.json"; }
# Median, spread (IQR) and ratio to the first command, per command.
summary() {
    python3 - "$1" <<'PY'
import json, statistics, sys
rs = json.load(open(sys.argv[1]))["results"]
def q(t, f): t = sorted(t); return t[min(len(t) - 1, int(f * len(t)))]
base = statistics.median(rs[0]["times"])
for r in rs:
    m = statistics.median(r["times"])
    cmd = r["command"].replace("bash -c ", "")
    print(f"{m*1000:8.1f} ms  IQR {q(r['times'],.25)*1000:6.1f}-{q(r['times'],.75)*1000:6.1f}  x{m/base:5.2f} vs first   {cmd}")
PY
}
have() { [ -x "$1" ]; }
cd "$DATA"

cmds=("$T changes base new" "find new base -printf %s%T@")
have "$G" && cmds+=("$G changes new base")
have "$C" && cmds+=("$C changes new base")
hf changes "${cmds[@]}"

cmds=("bash -c '$T tar base | cat >/dev/null'" "bash -c 'bsdtar -cf - -C base . | cat >/dev/null'"
      "bash -c 'tar -cf - -C base . | cat >/dev/null'")
have "$G" && cmds+=("bash -c '$G tar base | cat >/dev/null'")
hf tar "${cmds[@]}"

cmds=("bash -c '$T diff base new | cat >/dev/null'")
have "$G" && cmds+=("bash -c '$G diff new base | cat >/dev/null'")
have "$C" && cmds+=("bash -c '$C diff new base | cat >/dev/null'")
hf diff "${cmds[@]}"

X=$SCR/x
cmds=("bash -c 'mkdir $X && $T apply $X -i base.tar'" "bash -c 'mkdir $X && tar -xpf base.tar -C $X'"
      "bash -c 'mkdir $X && bsdtar -xpf base.tar -C $X'")
have "$G" && cmds+=("bash -c 'mkdir $X && $G apply $X < base.tar'")
hyperfine -N -w 1 -r "$RUNS" --export-json "$OUT/apply.json" --prepare "rm -rf $X" "${cmds[@]}" >/dev/null
summary "$OUT/apply.json"
# overlay2: base.tar and layer.tar imported as a chain; the top layer exported natively (its diff
# dir) and naively (the mounted views compared), beside moby's native tar of the same upper.
# The store is on the data's filesystem ($O2HOME), as a real store would be.
O2=${O2HOME:-/var/tmp/difftool-bench-o2}
rm -rf "$O2"
O="--driver overlay2 --home $O2"
$T $O import base -i base.tar >/dev/null && $T $O import top --parent base -i layer.tar >/dev/null
cmds=("$T $O export top" "$T $O export top --naive")
have "$G" && cmds+=("$G tar $O2/overlay2/top/diff --overlay")
hf overlay2-export "${cmds[@]}"
rm -rf "$O2"

# btrfs against vfs, the same chain in both (vfs on the data's ext4, btrfs on a loop image beside
# it): importing the top layer (btrfs snapshots its parent, vfs copies it), then its changes and
# export (both naive; btrfs skips files whose inode and ctime the snapshot kept, unread).
BT=${BTRFS_BENCH:-/var/tmp/difftool-bench-btrfs}
umount "$BT/mnt" 2>/dev/null || true
rm -rf "$BT"; mkdir -p "$BT/mnt"
truncate -s 4G "$BT/img" && mkfs.btrfs -q -f "$BT/img" >/dev/null && mount -o loop "$BT/img" "$BT/mnt"
V="--driver vfs --home $BT/vfs"; BF="--driver btrfs --home $BT/mnt/store"
for s in "$V" "$BF"; do $T $s import base -i base.tar >/dev/null; $T $s import top --parent base -i layer.tar >/dev/null; done
hyperfine -N -w 1 -r "$RUNS" --export-json "$OUT/btrfs-import.json" \
    --prepare "$T $BF rm top" "$T $BF import top --parent base -i layer.tar" \
    --prepare "$T $V rm top" "$T $V import top --parent base -i layer.tar" >/dev/null
summary "$OUT/btrfs-import.json"
hf btrfs-changes "$T $BF changes top" "$T $V changes top"
hf btrfs-export "$T $BF export top" "$T $V export top"
umount "$BT/mnt"; rm -rf "$BT"

echo "== peak RSS (KiB)"
for c in "$T changes base new" "$T tar base" "$T diff base new"; do
    /usr/bin/time -f "%M  $c" $c > /dev/null
done
rm -rf "$X"; mkdir -p "$X"; /usr/bin/time -f "%M  $T apply (base.tar)" "$T" apply "$X" -i base.tar >/dev/null
rm -rf "$X"
