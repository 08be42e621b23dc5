#!/usr/bin/env bash
# The public boundary of DiffKit, Drivers and Images speaks swift-system: host paths are FilePath,
# descriptors FileDescriptor, errors of the system Errno (in SystemError). This lists every public
# declaration of Sources/DiffKit, Sources/Drivers and Sources/Images (lines that start with `public` or `open`, and
# the requirements of a public protocol) that mentions `[UInt8]` or `Int32`, and exits 1 when one is
# not in scripts/check-api.allowed (one declaration a line, as it reads with its indentation cut,
# `#` comments; each kept for a reason given there: layer-relative names, xattr bytes, times).
# Usage: scripts/check-api.sh [DIR…]
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(Sources/DiffKit Sources/Drivers Sources/Images Sources/EngineStores)
exec python3 - scripts/check-api.allowed "${dirs[@]}" <<'PY'
import os, re, sys
allowed = set()
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith('#'):
        allowed.add(line)
def code(s):
    s = re.sub(r'\\.', '', s); s = re.sub(r'"[^"]*"', '""', s)
    return re.sub(r'//.*', '', s).strip()
bad = 0
for d in sys.argv[2:]:
    for dirpath, _, files in sorted(os.walk(d)):
        for f in sorted(files):
            if not f.endswith('.swift'): continue
            p = os.path.join(dirpath, f)
            depth, proto = 0, None
            for n, raw in enumerate(open(p, encoding='utf-8', errors='replace'), 1):
                c = code(raw)
                decl = False
                if re.match(r'(public|open)[ \t(]', c) and not re.match(r'public\s+(import|extension)\s', c):
                    decl = True
                    if re.search(r'(^|\s)protocol\s+\w', c): proto = depth
                elif proto is not None and depth == proto + 1 and re.match(r'((static|mutating)\s+)*(func|var|init|subscript)[\s(<]', c):
                    decl = True
                if decl and re.search(r'\[UInt8\]|\bInt32\b', c) and c not in allowed:
                    bad += 1
                    print(f'{p}:{n}: {c}')
                depth += c.count('{') - c.count('}')
                if proto is not None and depth <= proto and '}' in c: proto = None
sys.exit(1 if bad else 0)
PY
