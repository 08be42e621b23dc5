#!/usr/bin/env bash
# Build and run Examples/: a package that depends on DiffKit by path and uses only its public
# API (apply, diff with digests, a store import and export, a cancelled apply). Run as root.
# Exits non-zero when the build or any example fails.
set -euo pipefail
cd "$(dirname "$0")/../Examples"
swift build
"$(swift build --show-bin-path)/diffkit-examples"
