#!/usr/bin/env bash
# import-image --jobs: one layer at a time against several at once (root; overlay2 on tmpfs):
#   scripts/bench-image-jobs.sh
# The image: five gzip-compressed layers (gzip -6 -n, as pulled layers are) in an OCI layout —
# the real pair (DATA/base.tar, DATA/layer.tar) and three synthetic layers written by difftool's
# own `tar` (each about 40 MB: a few thousand files, text and random data, a few large ones).
# Each run imports it into a fresh overlay2 store on a tmpfs, `--jobs 1` and `--jobs N` in turn
# (the order alternating from run to run), warm (the blobs stay in the page cache); the wall time
# of each import is printed, then the median and minimum of each.
# Variables: DATA (/var/tmp/difftool-data), WORK (a new /var/tmp dir; the image is kept there and
# reused when WORK is given again), RUNS (7), JOBS (2), TMPFS_GB (4), NICE (none: e.g. -19 runs
# the imports at that niceness, to take a larger share of a machine other work keeps busy).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/var/tmp/difftool-data} RUNS=${RUNS:-7} JOBS=${JOBS:-2}
WORK=${WORK:-$(mktemp -d /var/tmp/image-jobs-bench.XXXXXX)}
swift build -c release --product difftool >/dev/null
T=$(swift build -c release --show-bin-path)/difftool

if [ ! -e "$WORK/oci/index.json" ]; then
    mkdir -p "$WORK/src"
    gzip -6 -n -c "$DATA/base.tar" > "$WORK/src/l1.tar.gz"
    gzip -6 -n -c "$DATA/layer.tar" > "$WORK/src/l2.tar.gz"
    for k in 3 4 5; do
        python3 - "$WORK/src/t$k" "$k" <<'PY'
import os, random, sys
root, k = sys.argv[1], int(sys.argv[2])
rng = random.Random(k)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
for d in range(40):
    path = os.path.join(root, "opt", f"synth{k}", f"d{d:02}")
    os.makedirs(path, exist_ok=True)
    for f in range(100):
        if f % 3 == 0:  # random bytes, as binaries and compressed assets are to gzip
            data = rng.randbytes(rng.randint(1, 12000))
        else:           # text
            data = b" ".join(rng.choice(words) for _ in range(rng.randint(10, 1500)))
        open(os.path.join(path, f"f{f:03}"), "wb").write(data)
for i in range(3):      # a few large files
    open(os.path.join(root, "opt", f"synth{k}", f"big{i}"), "wb").write(rng.randbytes(4 << 20))
PY
        "$T" tar "$WORK/src/t$k" -o "$WORK/src/l$k.tar"
        gzip -6 -n "$WORK/src/l$k.tar"
        rm -rf "$WORK/src/t$k"
    done
    python3 - "$WORK/oci" "$WORK"/src/l{1,2,3,4,5}.tar.gz <<'PY'
import gzip, hashlib, json, os, sys
out, blobs = sys.argv[1], sys.argv[2:]
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(out, "blobs", "sha256", d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
layers, diffs = [], []
for b in blobs:
    data = open(b, "rb").read()
    layers.append(dict(put(data), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
    diffs.append("sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest())
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(put(config), mediaType="application/vnd.oci.image.config.v1+json"), "layers": layers}).encode()
top = dict(put(manifest), mediaType="application/vnd.oci.image.manifest.v1+json")
json.dump({"schemaVersion": 2, "manifests": [top]}, open(os.path.join(out, "index.json"), "w"))
PY
    rm -rf "$WORK/src"
fi
echo "image: $WORK/oci ($(du -sh "$WORK/oci/blobs" | cut -f1) of blobs, 5 gzip layers)"

mkdir -p "$WORK/tmpfs"
mount -t tmpfs -o "size=${TMPFS_GB:-4}g" tmpfs "$WORK/tmpfs"
cleanup() { umount "$WORK/tmpfs" 2>/dev/null || umount -l "$WORK/tmpfs"; }
trap cleanup EXIT

run() { # JOBS → seconds
    local home="$WORK/tmpfs/store"
    rm -rf "$home"
    local t0 t1
    t0=$(date +%s.%N)
    ${NICE:+nice -n "$NICE"} "$T" --driver overlay2 --home "$home" import-image "$WORK/oci" --jobs "$1" -q >/dev/null
    t1=$(date +%s.%N)
    rm -rf "$home"
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

echo "cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run 1 >/dev/null  # warm the page cache
results=""
for r in $(seq 1 "$RUNS"); do
    if [ $((r % 2)) -eq 1 ]; then order="1 $JOBS"; else order="$JOBS 1"; fi
    for j in $order; do
        s=$(run "$j")
        echo "run $r --jobs $j: $s s"
        results+="$j $s"$'\n'
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$JOBS" <<PY
import statistics, sys
rows = [l.split() for l in """$results""".strip().split("\n")]
for j in ("1", sys.argv[1]):
    t = sorted(float(s) for k, s in rows if k == j)
    print(f"--jobs {j}: median {statistics.median(t):.3f} s, min {t[0]:.3f} s, max {t[-1]:.3f} s ({len(t)} runs)")
PY
