#!/usr/bin/env bash
# Lists every public or open declaration of the library modules that has no `///` comment right
# above it (attribute lines such as `@discardableResult` may stand between), and exits 1 if there
# is one. Declarations counted: lines that start with `public` or `open` (imports and extensions
# left out), the requirements of a public protocol, and the cases of a public enum.
# Usage: scripts/check-docs.sh [--count] [DIR…]   (default: the five library modules)
#   --count also prints how many declarations were checked.
set -euo pipefail
cd "$(dirname "$0")/.."

count=0
if [ "${1:-}" = "--count" ]; then count=1; shift; fi
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(Sources/DiffKitSystem Sources/DiffKitArchive Sources/DiffKitJSON Sources/DiffKit Sources/Drivers Sources/Images Sources/EngineStores)

mapfile -d '' files < <(find "${dirs[@]}" -name '*.swift' -print0 | sort -z)
exec awk -v count="$count" '
function strip(s) {                       # the line without string literals and // comments
    gsub(/\\./, "", s); gsub(/"[^"]*"/, "\"\"", s); sub(/\/\/.*/, "", s); return s
}
function report(kind) {
    checked++
    if (!documented) { missing++; printf "%s:%d: %s\n", FILENAME, FNR, trimmed }
}
FNR == 1 { depth = 0; ndecl = 0; prev = ""; inblock = 0 }
{
    line = $0
    trimmed = line; sub(/^[ \t]+/, "", trimmed); sub(/[ \t]+$/, "", trimmed)
    documented = (prev ~ /^\/\/\// || prev ~ /\*\/$/)
    code = strip(trimmed)
    if (code ~ /^(public|open)[ \t(]/ && code !~ /^public[ \t]+(import|extension)[ \t]/) {
        report()
        if (code ~ /(^|[ \t])(protocol|enum)[ \t]+[A-Za-z_]/) {
            kind = (code ~ /(^|[ \t])protocol[ \t]/) ? "protocol" : "enum"
            ndecl++; declDepth[ndecl] = depth; declKind[ndecl] = kind
        }
    } else if (ndecl > 0 && depth == declDepth[ndecl] + 1) {
        if (declKind[ndecl] == "protocol" && code ~ /^((static|mutating|nonmutating)[ \t]+)*(func|var|init|subscript|associatedtype)[ \t(<]/) report()
        if (declKind[ndecl] == "enum" && code ~ /^(indirect[ \t]+)?case[ \t]+[A-Za-z_`]/) report()
    }
    opens = gsub(/\{/, "{", code); closes = gsub(/\}/, "}", code)
    depth += opens - closes
    while (ndecl > 0 && depth <= declDepth[ndecl] && closes > 0) ndecl--
    # attribute lines and the inside of a /** */ block keep the comment above them in view
    if (trimmed !~ /^@[A-Za-z_]+(\(.*\))?$/ ) prev = trimmed
}
END {
    if (count) printf "%d public declarations checked, %d without a /// comment\n", checked, missing > "/dev/stderr"
    exit missing > 0 ? 1 : 0
}' "${files[@]}"
