#!/usr/bin/env bash
# Mutation check (outside CI: it builds and runs the whole suite once per mutant). Each mutant of
# scripts/mutants.txt — a one-line break of the walker, the change rules, the tar writer, the
# applier, the whiteout forms, the ID map, the store, a driver — is applied alone; the tests are
# built and the suite run with DIFFKIT_REQUIRE_KERNEL=1; a failing suite kills the mutant, a
# passing one lets it survive (a test is missing, or the mutant is equivalent). The file is
# restored after each mutant, and on exit or interrupt.
#
#   scripts/mutants.sh                 every mutant (a baseline run of the unmutated suite first)
#   scripts/mutants.sh ID [ID…]        only these
#   scripts/mutants.sh --list          the mutants, without running anything
#   scripts/mutants.sh --check         only check that each fragment occurs exactly once
#   options: --no-baseline, --timeout SECONDS (per build and per suite run; default 600)
#
# Builds go to their own scratch path (MUTANTS_SCRATCH, default .build-mutants) so the usual
# .build is left alone; each mutant's build and test output is kept in SCRATCH/mutant-logs/ID.log.
# Needs root (the kernel tests), python3 and a clean copy of the mutated files (run it from a
# checkout where nobody edits the sources meanwhile).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIST=scripts/mutants.txt
SCRATCH=${MUTANTS_SCRATCH:-.build-mutants}
TIMEOUT=600
BASELINE=1
MODE=run
IDS=()
while [ $# -gt 0 ]; do
    case $1 in
        --list) MODE=list ;;
        --check) MODE=check ;;
        --no-baseline) BASELINE=0 ;;
        --timeout) TIMEOUT=$2; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "mutants.sh: unknown option $1" >&2; exit 64 ;;
        *) IDS+=("$1") ;;
    esac
    shift
done

# The list parser and the one-line edit, in python3 (exact fragments, no regex escaping).
mutant_tool() {
    python3 - "$@" <<'PY'
import sys
cmd, path = sys.argv[1], sys.argv[2]
blocks, cur = [], {}
for raw in open(path, encoding="utf-8").read().split("\n"):
    if raw.startswith("#"):
        continue
    if raw.strip() == "":
        if cur: blocks.append(cur); cur = {}
        continue
    key, sep, value = raw.partition(":")
    if not sep or key not in ("id", "file", "from", "to", "desc"):
        sys.exit(f"mutants.txt: bad line: {raw!r}")
    cur[key] = value[1:] if value.startswith(" ") else value
if cur: blocks.append(cur)
ids = set()
for b in blocks:
    for k in ("id", "file", "from", "to", "desc"):
        if k not in b: sys.exit(f"mutants.txt: mutant {b.get('id', '?')} has no '{k}:'")
    if b["id"] in ids: sys.exit(f"mutants.txt: duplicate id {b['id']}")
    if b["from"] == b["to"] or b["from"] == "": sys.exit(f"mutants.txt: {b['id']}: empty or unchanged fragment")
    ids.add(b["id"])
if cmd == "list":
    for b in blocks: print(f"{b['id']}\t{b['file']}\t{b['desc']}")
elif cmd == "count":          # occurrences of the fragment: 1 is fine, anything else is stale
    b = next(b for b in blocks if b["id"] == sys.argv[3])
    try: text = open(b["file"], encoding="utf-8").read()
    except OSError: print(0); sys.exit()
    print(text.count(b["from"]))
elif cmd == "apply":
    b = next(b for b in blocks if b["id"] == sys.argv[3])
    text = open(b["file"], encoding="utf-8").read()
    if text.count(b["from"]) != 1: sys.exit(3)
    open(b["file"], "w", encoding="utf-8").write(text.replace(b["from"], b["to"]))
PY
}

mapfile -t ROWS < <(mutant_tool list "$LIST") || exit 1
[ ${#ROWS[@]} -gt 0 ] || { echo "mutants.sh: no mutants in $LIST" >&2; exit 1; }
declare -A FILE DESC
ORDER=()
for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r id file desc <<<"$row"
    FILE[$id]=$file; DESC[$id]=$desc; ORDER+=("$id")
done
if [ ${#IDS[@]} -gt 0 ]; then
    for id in "${IDS[@]}"; do [ -n "${FILE[$id]:-}" ] || { echo "mutants.sh: no mutant '$id' (see --list)" >&2; exit 64; }; done
    ORDER=("${IDS[@]}")
fi

if [ $MODE = list ]; then
    for id in "${ORDER[@]}"; do printf '%-36s %-45s %s\n' "$id" "${FILE[$id]}" "${DESC[$id]}"; done
    exit 0
fi

stale=0
for id in "${ORDER[@]}"; do
    n=$(mutant_tool count "$LIST" "$id")
    if [ "$n" != 1 ]; then
        echo "STALE $id: its fragment occurs $n times in ${FILE[$id]} (expected once): update scripts/mutants.txt"
        stale=$((stale + 1))
    fi
done
if [ $MODE = check ]; then
    echo "${#ORDER[@]} mutants, $stale stale"
    [ $stale = 0 ]; exit
fi

for f in $(printf '%s\n' "${ORDER[@]}" | while read -r id; do echo "${FILE[$id]}"; done | sort -u); do
    if ! git diff --quiet HEAD -- "$f"; then
        echo "mutants.sh: $f has uncommitted changes; run from a clean checkout" >&2
        exit 1
    fi
done

LOGS=$SCRATCH/mutant-logs
mkdir -p "$LOGS"
MUTATED=""
BACKUP=$(mktemp)
CHILD=""

restore() {
    if [ -n "$MUTATED" ]; then
        cat "$BACKUP" >"$MUTATED"
        if ! git diff --quiet HEAD -- "$MUTATED"; then
            echo "mutants.sh: $MUTATED was not restored (git diff is not empty)" >&2
            exit 2
        fi
        MUTATED=""
    fi
}
on_exit() {
    if [ -n "$CHILD" ]; then kill -- -"$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
    restore
    rm -f "$BACKUP"
}
trap on_exit EXIT
trap 'echo "mutants.sh: interrupted" >&2; exit 130' INT TERM

# Run a command in its own process group (so a timeout or an interrupt ends all of it), with a
# time limit; output appended to $1. Returns its status, 124 on timeout.
run_limited() {
    local log=$1; shift
    setsid "$@" >>"$log" 2>&1 &
    CHILD=$!
    local waited=0
    while kill -0 "$CHILD" 2>/dev/null; do
        if [ $waited -ge "$TIMEOUT" ]; then
            kill -- -"$CHILD" 2>/dev/null; sleep 2; kill -9 -- -"$CHILD" 2>/dev/null
            wait "$CHILD" 2>/dev/null; CHILD=""
            return 124
        fi
        sleep 1; waited=$((waited + 1))
    done
    wait "$CHILD"; local status=$?
    CHILD=""
    return $status
}

build() { run_limited "$1" swift build --build-tests --scratch-path "$SCRATCH"; }
suite() { DIFFKIT_REQUIRE_KERNEL=1 run_limited "$1" swift test --skip-build --scratch-path "$SCRATCH"; }
failed_tests() { grep -aoE '✘ Test [^ ]+ (failed|recorded an issue)' "$1" | awk '{print $3}' | sort -u | head -4 | paste -sd' ' -; }

if [ $BASELINE = 1 ]; then
    log=$LOGS/baseline.log; : >"$log"
    if ! build "$log"; then echo "baseline: the unmutated tree does not build (see $log)"; exit 1; fi
    if ! suite "$log"; then echo "baseline: the unmutated suite fails (see $log); no mutant can be judged"; exit 1; fi
    echo "baseline: the suite passes"
fi

killed=0; survived=0
for id in "${ORDER[@]}"; do
    f=${FILE[$id]}
    if [ "$(mutant_tool count "$LIST" "$id")" != 1 ]; then continue; fi   # reported stale above
    log=$LOGS/$id.log; : >"$log"
    cp "$f" "$BACKUP"
    MUTATED=$f
    mutant_tool apply "$LIST" "$id" || { echo "mutants.sh: could not apply $id" >&2; exit 1; }
    git diff --no-color HEAD -- "$f" >>"$log"
    start=$SECONDS
    if build "$log"; then
        suite "$log"; status=$?
        case $status in
            0) verdict="survived" ;;
            124) verdict="killed (timeout after ${TIMEOUT}s: hang)" ;;
            *) t=$(failed_tests "$log"); verdict="killed${t:+ by $t}"
               # No summary line: the test process died (a trap in the code or in a test).
               grep -aq 'Test run with' "$log" || verdict="$verdict (the suite crashed: $(grep -aom1 'Fatal error: .*' "$log" || echo "status $status"))" ;;
        esac
    else
        [ $? = 124 ] && verdict="killed (build timeout)" || verdict="killed (compile error)"
    fi
    restore
    if [ "$verdict" = survived ]; then survived=$((survived + 1)); else killed=$((killed + 1)); fi
    printf '%-36s %s  [%ss] — %s\n' "$id" "$verdict" $((SECONDS - start)) "${DESC[$id]}"
done
[ $stale = 0 ] || echo "$stale stale (not run; see above)"
echo "$killed killed, $survived survived"
[ $survived = 0 ] && [ $stale = 0 ]
