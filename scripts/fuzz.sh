#!/usr/bin/env bash
# Fuzz the tar reader and the applier with libFuzzer (outside CI).
#   scripts/fuzz.sh [SECONDS per target, default 600] [TARGET ...]   (FuzzTarReader, FuzzApply)
# Seeds: fixtures/hostile and fixtures/fuzz; the growing corpus is kept in .build/fuzz-corpus,
# crashes in .build/fuzz-artifacts, logs in .build/fuzz-TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzTarReader FuzzApply)
for t in "${targets[@]}"; do
  DIFFKIT_FUZZ=1 swift build -c release --sanitize fuzzer --scratch-path .build/fuzz --product "$t" >/dev/null
done
for t in "${targets[@]}"; do
  mkdir -p ".build/fuzz-corpus/$t" .build/fuzz-artifacts
  echo "== $t for ${secs}s"
  status=0
  ".build/fuzz/release/$t" -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix=".build/fuzz-artifacts/$t-" \
    ".build/fuzz-corpus/$t" fixtures/hostile fixtures/fuzz >".build/fuzz-$t.log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added)|^#[0-9]+ *DONE|ERROR|SUMMARY" ".build/fuzz-$t.log" || true
  echo "corpus: $(ls ".build/fuzz-corpus/$t" | wc -l) inputs; crashes: $(ls .build/fuzz-artifacts | grep -c "^$t-" || true); exit $status"
done
