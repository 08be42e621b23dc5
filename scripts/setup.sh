#!/usr/bin/env bash
# Install what is missing (Debian packages), build difftool, and run a short demo of the main
# job on the default store (vfs, in ./demo-store): export a layer as the diff of two trees,
# import it on top of its parent, and show the changes. Run as root (layers keep owners).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libarchive-dev libisal-dev libbtrfs-dev libselinux1-dev libssl-dev pkg-config btrfs-progs xfsprogs attr
          gzip xz-utils bzip2 zstd
          # the real engines the tests start (Tests/TestSupport/Engines.swift): dockerd, the
          # distribution registry, skopeo, umoci, buildah
          docker.io docker-registry skopeo umoci buildah curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--deps-only" ] && exit 0

swift build -c release
bin=$(swift build -c release --show-bin-path)/difftool

demo=$(mktemp -d /tmp/difftool-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
mkdir -p "$demo/base/etc" "$demo/base/usr/bin"
echo "ID=demo" > "$demo/base/etc/os-release"
echo "hello" > "$demo/base/usr/bin/hello"
echo "old" > "$demo/base/etc/motd"
cp -a "$demo/base" "$demo/new"
rm "$demo/new/etc/motd"
echo "ID=demo2" > "$demo/new/etc/os-release"
mkdir -p "$demo/new/opt/app" && echo "app" > "$demo/new/opt/app/run"

store=./demo-store
rm -rf "$store"
echo "== difftool changes base new"
"$bin" changes "$demo/base" "$demo/new"
echo "== difftool tar base | difftool import base; difftool diff base new | difftool import top --parent base"
"$bin" tar "$demo/base" | "$bin" --home "$store" import base
"$bin" diff "$demo/base" "$demo/new" | "$bin" --home "$store" import top --parent base
echo "== difftool ls"
"$bin" --home "$store" ls
echo "== difftool changes top"
"$bin" --home "$store" changes top
echo "== difftool export top | tar -tv"
"$bin" --home "$store" export top | tar -tvf -
echo "demo done: the store is in $store; difftool is $bin"
