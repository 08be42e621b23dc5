#!/usr/bin/env bash
# Before and after, in one run: the release difftool of an earlier revision and of the working
# tree, timed side by side in the same hyperfine call for each case (so the machine's load, caches
# and clock affect both alike), on the real pair and, when present, the synthetic pair.
#
#   scripts/bench-compare.sh REV        # e.g. the commit a change started from
#
# Variables: DATA (the real pair: base/, new/, base.tar, layer.tar; default
# /var/tmp/difftool-data), SYNTH (synthetic pair from scripts/make-synth.py, default
# /var/tmp/difftool-synth; its base/ and new/ are used when there), SCR (tmpfs scratch),
# RUNS (10), SYNTH_RUNS (3), OUT (bench-out/compare). Writes OUT/TABLE.md: medians, and
# after ÷ before per case. Needs root (stores keep owners), hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 REV" >&2; exit 64; }
rev=$1
DATA=${DATA:-/var/tmp/difftool-data} SYNTH=${SYNTH:-/var/tmp/difftool-synth}
SCR=${SCR:-/dev/shm/difftool-compare} OUT=$(realpath -m "${OUT:-bench-out/compare}")
RUNS=${RUNS:-10} SYNTH_RUNS=${SYNTH_RUNS:-3}
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
[ -f "$DATA/layer.tar" ] || { echo "bench-compare: no real pair in $DATA (base/, new/, base.tar, layer.tar)" >&2; exit 1; }

# The two binaries: REV built in a worktree of its own, the working tree as it is.
old=/var/tmp/difftool-compare-$(git rev-parse --short "$rev")
if [ ! -x "$old/difftool" ]; then
    tree=$(mktemp -d /var/tmp/difftool-rev.XXXXXX)
    git worktree add -q --detach "$tree" "$rev"
    (cd "$tree" && swift build -c release >/dev/null && mkdir -p "$old" && cp "$(swift build -c release --show-bin-path)/difftool" "$old/")
    git worktree remove --force "$tree"
fi
swift build -c release >/dev/null
new=$(swift build -c release --show-bin-path)/difftool
B=$old/difftool A=$new
rm -rf "$SCR" "$OUT"; mkdir -p "$SCR" "$OUT"
trap 'rm -rf "$SCR"' EXIT

results=()
# case NAME RUNS PREPARE COMMAND-WITH-@T@: before and after in one hyperfine call.
case_() {
    local name=$1 runs=$2 prep=$3 cmd=$4
    local args=(hyperfine -N -w 1 -r "$runs" --export-json "$OUT/$name.json")
    # A prepare step per command, in the order of the commands, each with its own binary.
    [ -n "$prep" ] && args+=(--prepare "bash -c '${prep//@T@/$B}'" --prepare "bash -c '${prep//@T@/$A}'")
    args+=(-n before "bash -c 'set -o pipefail; ${cmd//@T@/$B}'" -n after "bash -c 'set -o pipefail; ${cmd//@T@/$A}'")
    "${args[@]}" >/dev/null
    results+=("$name")
}

d=$DATA
case_ changes-real "$RUNS" "" "@T@ changes $d/base $d/new >/dev/null"
case_ size-real "$RUNS" "" "@T@ size $d/base $d/new >/dev/null"
case_ diff-real "$RUNS" "" "@T@ diff $d/base $d/new | cat >/dev/null"
case_ tar-real "$RUNS" "" "@T@ tar $d/base | cat >/dev/null"
case_ apply-base-real "$RUNS" "rm -rf $SCR/a && mkdir $SCR/a" "@T@ apply $SCR/a -i $d/base.tar >/dev/null"
case_ apply-layer-real "$RUNS" "rm -rf $SCR/a && cp -a $d/base $SCR/a" "@T@ apply $SCR/a -i $d/layer.tar >/dev/null"
for drv in vfs overlay2; do
    case_ import-$drv-real "$RUNS" "rm -rf $SCR/s && @T@ --driver $drv --home $SCR/s import base -q -i $d/base.tar >/dev/null" \
        "@T@ --driver $drv --home $SCR/s import top --parent base -q -i $d/layer.tar >/dev/null; @T@ --driver $drv --home $SCR/s rm top"
done
# Export of an imported layer (byte-exact) and regenerated, from a store made once by each binary.
for who in before after; do
    bin=$B; [ $who = after ] && bin=$A
    $bin --driver overlay2 --home "$SCR/e-$who" import base -q -i "$d/base.tar" >/dev/null
    $bin --driver overlay2 --home "$SCR/e-$who" import top --parent base -q -i "$d/layer.tar" >/dev/null
done
hyperfine -N -w 1 -r "$RUNS" --export-json "$OUT/export-overlay2-real.json" \
    -n before "bash -c '$B --driver overlay2 --home $SCR/e-before export top -q | cat >/dev/null'" \
    -n after "bash -c '$A --driver overlay2 --home $SCR/e-after export top -q | cat >/dev/null'" >/dev/null
results+=(export-overlay2-real)
if [ -d "$SYNTH/base" ] && [ -d "$SYNTH/new" ]; then
    s=$SYNTH
    case_ changes-synth "$SYNTH_RUNS" "" "@T@ changes $s/base $s/new >/dev/null"
    case_ diff-synth "$SYNTH_RUNS" "" "@T@ diff $s/base $s/new | cat >/dev/null"
fi

python3 - "$OUT" "${results[@]}" <<'EOF' | tee "$OUT/TABLE.md"
import json, statistics, sys
out, names = sys.argv[1], sys.argv[2:]
print("| case | before (median) | after (median) | after ÷ before |")
print("|---|---|---|---|")
for n in names:
    b, a = (statistics.median(x["times"]) for x in json.load(open(f"{out}/{n}.json"))["results"])
    f = lambda t: f"{t * 1000:.1f} ms" if t < 10 else f"{t:.2f} s"
    print(f"| {n} | {f(b)} | {f(a)} | {a / b:.2f} |")
EOF
