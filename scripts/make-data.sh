#!/usr/bin/env bash
# The real pair the benchmarks run on, made from Debian packages on this machine:
#
#   scripts/make-data.sh [DATA]        # default DATA=/var/tmp/difftool-data; root
#
#   DATA/base/      a Debian root filesystem: debootstrap --variant=minbase (SUITE, default bookworm)
#   DATA/new/       a copy of base with a realistic second layer made in it: packages installed by
#                   the image's own dpkg (PKGS, default "file libcap2-bin python3-minimal"), a user
#                   added, docs and man pages deleted, modes, owners and mtimes changed, types
#                   swapped both ways, directories re-created, a same-size edit with its old mtime
#                   put back, and an application tree with every kind of entry (hardlinks, symlinks,
#                   a fifo, a socket, a device, a file capability, a user xattr, long and non-ASCII
#                   names, 16 MiB of random bytes)
#   DATA/base.tar   difftool tar of base;  DATA/layer.tar  difftool diff of base and new
#
# Each step is skipped when its output exists (FORCE=1 redoes all). The mirror is MIRROR, else the
# first one this machine's apt sources name for SUITE. Needs debootstrap, apt-get, setcap, setfattr
# and python3 (installed when missing) and a release difftool (built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath -m "${1:-${DATA:-/var/tmp/difftool-data}}")
SUITE=${SUITE:-bookworm}
PKGS=${PKGS:-file libcap2-bin python3-minimal}
say() { printf 'make-data: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (debootstrap, chroot, devices, owners)"; exit 1; }
[ -n "${FORCE:-}" ] && rm -rf "$DATA/base" "$DATA/new" "$DATA/debs" "$DATA/base.tar" "$DATA/layer.tar"
mkdir -p "$DATA"
for t in debootstrap setcap setfattr python3; do
    command -v $t >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap libcap2-bin attr python3-minimal >/dev/null
done

mirror() {
    [ -n "${MIRROR:-}" ] && { echo "$MIRROR"; return; }
    # deb822 sources (URIs/Suites stanzas), then one-line ones; security archives are not mirrors.
    local m
    m=$(awk -v s="$SUITE" '/^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s && u !~ /security/) {print u; exit}}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    [ -z "$m" ] && m=$(awk -v s="$SUITE" '$1=="deb" {i=2; if ($i ~ /^\[/) {while ($i !~ /\]$/) i++; i++}
        if ($(i+1)==s && $i !~ /security/) {print $i; exit}}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

if ! [ -d "$DATA/base" ]; then
    say "base: debootstrap --variant=minbase $SUITE from $(mirror)"
    rm -rf "$DATA/base.partial"
    debootstrap --variant=minbase "$SUITE" "$DATA/base.partial" "$(mirror)" > "$DATA/debootstrap.log" 2>&1 ||
        { tail -n 20 "$DATA/debootstrap.log" >&2; exit 1; }
    rm -f "$DATA/base.partial"/var/cache/apt/archives/*.deb   # a base layer does not carry the download cache
    mv "$DATA/base.partial" "$DATA/base"
fi

if ! [ -f "$DATA/debs/ORDER" ]; then
    # What PKGS need beyond base's own dpkg status, in apt's install order.
    plan() { apt-get -s -o Dir::State::status="$DATA/base/var/lib/dpkg/status" --no-install-recommends install $PKGS 2>/dev/null |
             awk '/^Inst /{print $2}'; }
    [ -n "$(plan)" ] || apt-get update -qq
    names=$(plan)
    [ -n "$names" ] || { say "cannot resolve $PKGS against base"; exit 1; }
    rm -rf "$DATA/debs"; mkdir -p "$DATA/debs"
    say "debs: $names"
    (cd "$DATA/debs" && apt-get download -q $names >/dev/null)
    echo $names | tr ' ' '\n' > "$DATA/debs/ORDER"
fi

# The second layer's changes, made in the tree $1.
changes() {
    local R=$1
    mkdir -p "$R/tmp/debs" && cp "$DATA"/debs/*.deb "$DATA/debs/ORDER" "$R/tmp/debs/"
    chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'set -e; for p in $(cat /tmp/debs/ORDER); do dpkg -i /tmp/debs/${p}_*.deb; done' > "$DATA/dpkg.log" 2>&1
    rm -rf "$R/tmp/debs"
    chroot "$R" /usr/sbin/useradd -m -u 1000 -s /bin/bash app
    rm -rf "$R"/usr/share/doc/* "$R/usr/share/man"                       # subtrees deleted
    rm -f "$R/etc/issue.net" "$R/usr/bin/pinky" "$R/usr/sbin/rmt" "$R/dev/console"
    chmod 0600 "$R/etc/debconf.conf"; chmod 0750 "$R/etc/security"; chmod u+s "$R/usr/bin/file"
    chown 1000:1000 "$R/var/log/apt"; chown -h 1000:1000 "$R/etc/rmt"
    touch -m -d '2021-06-01 00:00:00' "$R/etc/debian_version"
    rm -f "$R/etc/motd" && mkdir "$R/etc/motd" && echo welcome > "$R/etc/motd/10-welcome"      # file -> dir
    rm -rf "$R/etc/logrotate.d" && echo "include /etc/logrotate.conf.d" > "$R/etc/logrotate.d" # dir -> file
    rm -rf "$R/etc/apt/apt.conf.d" && mkdir "$R/etc/apt/apt.conf.d" &&
        printf 'APT::Install-Recommends "false";\n' > "$R/etc/apt/apt.conf.d/99norecommends"
    echo 'alias ll="ls -l"' >> "$R/etc/bash.bashrc"
    # A same-size edit whose old mtime is put back: only a content compare sees it.
    touch -r "$R/etc/host.conf" "$R/tmp/.ref" && sed -i 's/multi on/multi no/' "$R/etc/host.conf" &&
        touch -r "$R/tmp/.ref" "$R/etc/host.conf" && rm -f "$R/tmp/.ref"
    local A=$R/opt/app
    mkdir -p "$A/bin" "$A/etc" "$A/run" "$A/dev" "$A/data"
    cp "$R/usr/bin/env" "$A/bin/tool" && ln "$A/bin/tool" "$A/bin/tool-hl" && ln "$R/usr/bin/gunzip" "$A/bin/gunzip-hl"
    ln -s /usr/bin/python3 "$R/usr/local/bin/py"; ln -s ../etc/config.ini "$A/bin/config"
    ln -sfn /usr/share/zoneinfo/Europe/Paris "$R/etc/localtime"
    printf '[main]\nport = 8080\n' > "$A/etc/config.ini" && setfattr -n user.comment -v "bench" "$A/etc/config.ini"
    mkfifo "$A/run/ctl.fifo"
    python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$A/run/app.sock"
    cp "$R/usr/bin/true" "$A/bin/bind-helper" && setcap cap_net_bind_service=+ep "$A/bin/bind-helper"
    mknod "$A/dev/null" c 1 3
    : > "$A/data/empty"
    local deep="$A/data/$(printf 'long-directory-name-%02d/' 1 2 3 4 5 6)"
    mkdir -p "$deep" && echo deep > "$deep/$(printf 'f%.0s' $(seq 1 120)).txt"
    echo utf8 > "$A/data/données ünïcödé – файл.txt"
    head -c 16777216 /dev/urandom > "$A/data/blob.bin"
    cp -a "$R/usr/share/zoneinfo/Europe" "$A/data/zoneinfo-europe"
}

if ! [ -d "$DATA/new" ]; then
    say "new: a copy of base, then the layer's changes"
    rm -rf "$DATA/new.partial"
    cp -a "$DATA/base" "$DATA/new.partial"
    changes "$DATA/new.partial"
    mv "$DATA/new.partial" "$DATA/new"
fi

if ! [ -f "$DATA/layer.tar" ]; then
    T=$(swift build -c release --show-bin-path)/difftool
    [ -x "$T" ] || swift build -c release >/dev/null
    "$T" tar "$DATA/base" -o "$DATA/base.tar.partial" && mv "$DATA/base.tar.partial" "$DATA/base.tar"
    "$T" diff "$DATA/base" "$DATA/new" -o "$DATA/layer.tar.partial" && mv "$DATA/layer.tar.partial" "$DATA/layer.tar"
fi
say "$DATA: base $(find "$DATA/base" | wc -l) entries, new $(find "$DATA/new" | wc -l); base.tar $(stat -c %s "$DATA/base.tar") bytes, layer.tar $(stat -c %s "$DATA/layer.tar") bytes"
