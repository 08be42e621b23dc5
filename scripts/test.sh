#!/usr/bin/env bash
# Run the test suite and account for its skips:
#
#   scripts/test.sh [SWIFT-TEST-ARGS…]   runs `swift test` (output also kept in $DIFFKIT_TEST_LOG,
#                                        default /tmp/diffkit-test.log), then checks it
#   scripts/test.sh --check LOG          checks the output of a run already made
#
# At the end it prints every skipped (or cancelled) test with its reason. It fails when the run did
# not pass, and, with DIFFKIT_REQUIRE_KERNEL=1, when any skip is not in Tests/ALLOWED_SKIPS (the
# tests refuse such a skip themselves; this also catches skips that do not go through
# `.requires(…)`). DIFFKIT_REQUIRE_QUOTA=1 takes the xfs-quota entries off the list.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--check" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --check LOG" >&2; exit 64; }
    log=$2
    status=0
else
    log=${DIFFKIT_TEST_LOG:-/tmp/diffkit-test.log}
    swift test "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
fi

# The list: "PATTERN NEED REASON…" per line.
patterns=() needs=()
while read -r pattern need _; do
    case $pattern in ''|'#'*) continue ;; esac
    [ "$need" = xfs-quota ] && [ "${DIFFKIT_REQUIRE_QUOTA:-}" = 1 ] && continue
    patterns+=("$pattern") needs+=("$need")
done < Tests/ALLOWED_SKIPS

allowed() { # KEY NEED
    local i
    for i in "${!patterns[@]}"; do
        # shellcheck disable=SC2053  # the pattern is a glob on purpose
        [[ ${needs[$i]} == "$2" && $1 == ${patterns[$i]} ]] && return 0
    done
    return 1
}

# Swift Testing's console lines: `➜ Test f() skipped: "REASON"`, `➜ Suite S skipped: "REASON"`,
# `➜ Test f() was cancelled after 0.1 seconds: "REASON"` (the reason is optional).
skip_re='^[^ ]* (Test|Suite) (.*) (skipped|was cancelled after [0-9.]+ seconds)(: "(.*)")?\.?$'
reason_re='^([^ ]+) needs ([^ :]+(:[^ :]+)?): '
skips=0 unlisted=0
report=()
while IFS= read -r line; do
    [[ $line =~ $skip_re ]] || continue
    kind=${BASH_REMATCH[1]} name=${BASH_REMATCH[2]} how=${BASH_REMATCH[3]} reason=${BASH_REMATCH[5]}
    skips=$((skips + 1))
    mark=""
    if [[ $reason =~ $reason_re ]] && allowed "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; then
        mark="listed"
    else
        unlisted=$((unlisted + 1))
        mark="NOT LISTED"
    fi
    [[ $how == skipped ]] || how=cancelled
    report+=("  $kind $name $how [$mark]: ${reason:-(no reason given)}")
done < "$log"

echo
echo "== skipped tests: $skips"
for r in "${report[@]}"; do echo "$r"; done

result=$(grep -E '^[^ ]* Test run with [0-9]+ tests? .* (passed|failed)' "$log" | tail -1)
fail=0
if [ "$status" -ne 0 ] || [[ $result != *" passed "* ]]; then
    echo "== FAIL: the run did not pass (swift test exit status $status): ${result:-no result line}"
    fail=1
fi
# A sanitizer's report (ThreadSanitizer under --sanitize=thread), from the test process or from a
# difftool it ran, fails the run even where the test itself passed.
reports=$(grep -c -E '^(WARNING|ERROR): [A-Za-z]+Sanitizer' "$log")
if [ "$reports" -gt 0 ]; then
    echo "== FAIL: $reports sanitizer report(s) in the output:"
    grep -E '^(WARNING|ERROR): [A-Za-z]+Sanitizer' "$log" | sort | uniq -c
    fail=1
fi
if [ "${DIFFKIT_REQUIRE_KERNEL:-}" = 1 ] && [ "$unlisted" -gt 0 ]; then
    echo "== FAIL: DIFFKIT_REQUIRE_KERNEL=1 and $unlisted skip(s) are not in Tests/ALLOWED_SKIPS"
    fail=1
fi
[ $fail -eq 0 ] && echo "== OK: ${result#* }"
exit $fail
