#!/usr/bin/env bash
# The kernel-backed tests (drivers, overlay, btrfs, conformance, xfs quotas) under each kernel of
# the matrix, as root on Debian 12:
#   host    the running kernel;
#   6.1     Debian 12's own kernel (linux-image-amd64), booted with QEMU through virtme-ng in
#           software emulation. It has CONFIG_XFS_QUOTA and no lowerdir+, so the xfs quota
#           enforcement, the 128-lower relative-path fallback and the depth limit without
#           lowerdir+ run there; DIFFKIT_REQUIRE_KERNEL=1 and DIFFKIT_REQUIRE_QUOTA=1 in the guest.
# Usage: scripts/kernel-matrix.sh [host] [6.1]   (both by default)
# The test binary is built on the host and run in the guest, which sees the host's filesystem
# read-only. The kernel package, its modules and virtme-ng are kept in $DIFFKIT_KERNEL_CACHE
# (/opt/diffkit-kernels), so a second run downloads nothing. Prints passed/failed/skipped per
# kernel; exits non-zero on any failure, on a run that did not finish, and when a test that must
# run under a kernel was skipped or missing (a skip never counts as a pass).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(host 6.1)
cache=${DIFFKIT_KERNEL_CACHE:-/opt/diffkit-kernels}
filter=${DIFFKIT_MATRIX_FILTER:-'Overlay2Tests|OverlayTests|BtrfsTests|BtrfsSendTests|Conformance|VFSOptionsTests|AufsTests|XFSQuotaTests|IDMappedMountTests|Overlay2RedirectTests'}
virtme_ng=virtme-ng==1.42
guest_timeout=${DIFFKIT_GUEST_TIMEOUT:-1200}
# Tests that must have run (not skipped, not missing) under a kernel, beyond "no failures".
must_run_host='Overlay2Tests.depthLimit() BtrfsTests.quota() BtrfsSendTests.randomTreesMatchTheNaiveDiff() VFS.deepLayerRead() Overlay2.deepLayerRead() Btrfs.deepLayerRead()'
must_run_61='Overlay2Tests.depthLimit() Overlay2Tests.projectQuotaOnXFS() Overlay2Tests.projectQuotaEnforcedOnXFS()
BtrfsTests.quota() BtrfsSendTests.randomTreesMatchTheNaiveDiff() VFS.deepLayerRead() Overlay2.deepLayerRead() Btrfs.deepLayerRead()
XFSQuotaTests.limitsHoldWhenTheStoreIsOpenedAgain() XFSQuotaTests.limitsThroughTheCommand()'

[ "$(id -u)" = 0 ] || { echo "kernel-matrix: run as root (loop devices, mounts)" >&2; exit 2; }
start=$(date +%s)
say() { echo "== kernel-matrix [$(( $(date +%s) - start ))s]: $*"; }

# --- what it needs -------------------------------------------------------------------------------
./scripts/setup.sh --deps-only
need=(python3)
for k in "${kernels[@]}"; do
    [ "$k" = host ] || need+=(qemu-system-x86 kmod busybox-static python3-venv python3-pip)
done
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

say "building the tests"
swift build --build-tests
bin=$(swift build --show-bin-path)
mkdir -p "$cache"
# The binaries the guest runs, outside /var/tmp (a tmpfs in the guest) and outside /tmp (the
# guest gets its own tmpfs there): the test bundle finds difftool beside it.
stage="$cache/run"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/out"
cp "$bin/DiffKitPackageTests.xctest" "$bin/difftool" "$stage/bin/"
# The guest sees neither /tmp nor /var/tmp of the host, where a checkout may be: the list of
# allowed skips goes beside the binaries.
cp Tests/ALLOWED_SKIPS "$stage/ALLOWED_SKIPS"

# --- one kernel ----------------------------------------------------------------------------------
# Debian's kernel package, unpacked (nothing goes into /boot) with depmod run on its modules.
debian_kernel() { # → the kernel image path on stdout
    local meta=linux-image-amd64 pkg ver dir
    pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
    if [ -z "$pkg" ]; then apt-get update -q >&2; pkg=$(apt-cache depends "$meta" | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1); fi
    [ -n "$pkg" ] || { echo "kernel-matrix: cannot resolve $meta" >&2; return 1; }
    ver=${pkg#linux-image-}
    dir="$cache/$pkg"
    if [ ! -e "$dir/.ready" ]; then
        say "downloading $pkg" >&2
        rm -rf "$dir" && mkdir -p "$dir/deb"
        (cd "$dir/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
        dpkg-deb -x "$dir"/deb/*.deb "$dir"
        rm -rf "$dir/deb"
        depmod -b "$dir" "$ver"
        touch "$dir/.ready"
    fi
    echo "$dir/boot/vmlinuz-$ver"
}

venv="$cache/venv"
virtme() {
    if ! "$venv/bin/vng" --version >/dev/null 2>&1; then
        say "installing $virtme_ng into $venv"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q "$virtme_ng"
    fi
}

run_host() {
    local out="$stage/out/host"
    mkdir -p "$out"
    uname -r > "$out/kernel"
    say "host $(uname -r): running the kernel-backed tests"
    set +e
    DIFFKIT_ALLOWED_SKIPS="$stage/ALLOWED_SKIPS" DIFFKIT_REQUIRE_KERNEL=1 "$stage/bin/DiffKitPackageTests.xctest" --testing-library swift-testing \
        --filter "$filter" --xunit-output "$out/results.xml" > "$out/log" 2>&1
    echo $? > "$out/rc"
    set -e
}

run_guest() { # $1: name, $2: kernel image
    local name=$1 image=$2 out="$stage/out/$1"
    mkdir -p "$out"
    cat > "$stage/guest-$name.sh" <<EOF
#!/bin/sh
# Runs inside the guest: the modules the tests need, its own /tmp (the tests make their stores
# and loop images there) on ext4 as on the host (tmpfs in 6.1 has no user.* xattrs), then the
# tests with kernel features required.
out=$out
uname -r > \$out/kernel
for m in loop overlay xfs btrfs ext4; do modprobe \$m || echo "modprobe \$m failed" >> \$out/log; done
mkdir -p /run/scratch
mount -t tmpfs -o size=2500m tmpfs /run/scratch
truncate -s 2400M /run/scratch/tmp.img
mkfs.ext4 -q -F /run/scratch/tmp.img
mount -o loop /run/scratch/tmp.img /tmp
chmod 1777 /tmp
cd $repo 2>/dev/null || cd /
DIFFKIT_ALLOWED_SKIPS=$stage/ALLOWED_SKIPS DIFFKIT_REQUIRE_KERNEL=1 DIFFKIT_REQUIRE_QUOTA=1 $stage/bin/DiffKitPackageTests.xctest --testing-library swift-testing \\
    --filter '$filter' --xunit-output \$out/results.xml >> \$out/log 2>&1
echo \$? > \$out/rc
EOF
    chmod +x "$stage/guest-$name.sh"
    say "$name: booting $image (QEMU, software emulation) and running the kernel-backed tests"
    local t0=$(date +%s)
    set +e
    (cd "$stage" && PATH="$venv/bin:$PATH" timeout "$guest_timeout" vng --run "$image" --disable-kvm --force-9p \
        --cpus 2 --memory 3500M --rwdir "$out" --exec "$stage/guest-$name.sh" > "$out/console" 2>&1)
    local vrc=$?
    set -e
    say "$name: guest done in $(( $(date +%s) - t0 ))s (vng exit $vrc)"
}

for k in "${kernels[@]}"; do
    case "$k" in
        host) run_host ;;
        6.1) virtme; image=$(debian_kernel); run_guest 6.1 "$image" ;;
        *) echo "kernel-matrix: unknown kernel $k (host or 6.1)" >&2; exit 2 ;;
    esac
done

# --- summary -------------------------------------------------------------------------------------
say "summary"
status=0
for k in "${kernels[@]}"; do
    case "$k" in host) must=$must_run_host ;; 6.1) must=$must_run_61 ;; esac
    python3 - "$stage/out/$k" "$k" "$must" <<'EOF' || status=1
import sys, os, xml.etree.ElementTree as ET
out, name, must = sys.argv[1], sys.argv[2], sys.argv[3].split()
def read(f):
    try: return open(os.path.join(out, f)).read().strip()
    except OSError: return ""
kernel, rc = read("kernel") or "?", read("rc")
bad = []
results = {}
try:
    for case in ET.parse(os.path.join(out, "results.xml")).iter("testcase"):
        test = case.get("classname", "").split(".")[-1] + "." + case.get("name", "")
        results[test] = "failed" if case.find("failure") is not None or case.find("error") is not None \
            else "skipped" if case.find("skipped") is not None else "passed"
except (OSError, ET.ParseError) as e:
    bad.append(f"no test results ({e.__class__.__name__})")
if rc != "0": bad.append(f"the test run exited {rc or 'without finishing'}")
counts = {s: sum(1 for v in results.values() if v == s) for s in ("passed", "failed", "skipped")}
for t in must:
    if results.get(t) != "passed": bad.append(f"{t} must run here and is {results.get(t, 'missing')}")
print(f"{name:5} kernel {kernel}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
      + ("" if bad or counts["failed"] else "  OK"))
for t, s in sorted(results.items()):
    if s != "passed": print(f"      {s}: {t}")
for line in read("log").splitlines():
    if "diffkit-quota-figure:" in line: print("      " + line.split("diffkit-quota-figure:", 1)[1].strip())
issues = [l for l in read("log").splitlines() if "recorded an issue" in l]
for l in issues[:15]: print("      " + l.strip())
if len(issues) > 15: print(f"      ... {len(issues) - 15} more issues")
for b in bad: print(f"      FAIL: {b}")
if bad or counts["failed"]:
    print(f"      log: {os.path.join(out, 'log')}" + (f", console: {os.path.join(out, 'console')}" if name != "host" else ""))
    sys.exit(1)
EOF
done
say "done in $(( $(date +%s) - start ))s"
exit $status
