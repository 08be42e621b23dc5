#!/usr/bin/env bash
# The documentation, checked so it cannot rot:
#  1. every public declaration of the library modules has a /// comment (scripts/check-docs.sh);
#  2. DocC builds the documentation of every library module (the /// comments and the catalogs
#     Sources/DiffKit/DiffKit.docc, Sources/Drivers/Drivers.docc and Sources/Images/Images.docc) with warnings as errors, so
#     a link to a symbol or article that does not exist fails; archives in
#     .build/plugins/Swift-DocC/outputs/MODULE.doccarchive;
#  3. the Swift code blocks of the articles are type-checked against the modules just built.
# Needs `docc` from the toolchain and the swift-docc-plugin package (Package.swift).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== /// on every public declaration"
scripts/check-docs.sh --count

echo "== DocC, warnings as errors"
modules=(DiffKitSystem DiffKitArchive DiffKitJSON DiffKit Drivers Images EngineStores)
targets=()
for m in "${modules[@]}"; do targets+=(--target "$m"); done
swift package --disable-sandbox generate-documentation "${targets[@]}" --warnings-as-errors

echo "== the articles' Swift code, type-checked"
bin=$(swift build --show-bin-path)
scratch=$(mktemp -d /tmp/diffkit-docs.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# Each code block becomes a function body (or stays at top level when it declares a type or a
# function); names the snippets leave to the reader (upper, fd, name, out) are parameters.
python3 - "$scratch/samples.swift" Sources/*/*.docc/*.md <<'PY'
import re, sys
out = ["import DiffKit", "import DiffKitArchive", "import DiffKitSystem", "import Drivers", "import Images", "import EngineStores", "import Glibc", "import SystemPackage", ""]
for n, (path, block) in enumerate((p, b) for p in sys.argv[2:] for b in re.findall(r"```swift\n(.*?)```", open(p).read(), re.S)):
    lines = [l for l in block.rstrip().split("\n") if not l.startswith("import ")]
    out.append(f"// {path}")
    if any(re.match(r"(public )?(final class|class|struct|enum|func) ", l) for l in lines):
        out += lines
    else:
        out.append(f"func sample{n}(upper: FilePath, fd: FileDescriptor, name: String, out: FileDescriptor) throws {{")
        out += ["    " + l for l in lines]
        out.append("}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
flags=(-I "$bin/Modules")
for m in "$bin"/CDiffKitSystem.build/module.modulemap "$bin"/CDiffKitArchive.build/module.modulemap \
         "$bin"/CDriverSystem.build/module.modulemap Sources/CArchive/module.modulemap \
         Sources/CCrypto/module.modulemap Sources/CSELinux/module.modulemap \
         .build/checkouts/swift-system/Sources/CSystem/include/module.modulemap; do
    flags+=(-Xcc "-fmodule-map-file=$m")
done
for d in Sources/C*/include; do flags+=(-Xcc "-I$d"); done
swiftc -typecheck -swift-version 6 -suppress-warnings "${flags[@]}" "$scratch/samples.swift"
echo "documentation: ok"
