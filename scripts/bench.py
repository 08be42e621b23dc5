#!/usr/bin/env python3
"""The benchmark suite: difftool beside moby (goref), containerd (ctrref) and the plain tools, in
one run, on the real root filesystem pair (make-data.sh) and the seeded synthetic pair
(make-synth.py). Run it through scripts/bench.sh, which builds, makes the data and sets:

  T       difftool (release)          DATA   real pair: base/ new/ base.tar layer.tar
  SYNTH   synthetic pair (same shape; its tars are made here with difftool)
  SCR     scratch on tmpfs: applies, stores (the btrfs store on a loop image there)
  OUT     results: one hyperfine JSON per case, results.json, TABLE.md
  RUNS / SYNTH_RUNS / MILLION_RUNS   timed runs per command (warm; 10, 3, 3); COLD_RUNS for cold-cache runs
  SETS    which sets: real synth (default both), million (the 1.05M-entry pair in MILLION, made
          outside CI: about 11 GB);  COLD=0 skips cold-cache runs
  CASES   only these cases (names as in TABLE.md, e.g. "changes size diff"); default all

Every case is one hyperfine invocation (-N; pipelines run under bash -c) so its commands share
the machine's state; the first command is difftool's, and ratios are difftool ÷ the other. Peak
RSS is each command once more under GNU time. Cold cache: `sync; echo 3 >drop_caches` before
every run (the data sit on disk; the scratch on tmpfs is never dropped).
"""
import json, os, shlex, statistics, subprocess, sys

T, OUT, SCR = os.environ["T"], os.environ["OUT"], os.environ["SCR"]
RUNS, SYNTH_RUNS = int(os.environ.get("RUNS", 10)), int(os.environ.get("SYNTH_RUNS", 3))
COLD_RUNS, COLD = int(os.environ.get("COLD_RUNS", 3)), os.environ.get("COLD", "1") != "0"
SETS = os.environ.get("SETS", "real synth").split()
CASES = os.environ.get("CASES", "").split()
DATA, SYNTH, MILLION = os.environ["DATA"], os.environ["SYNTH"], os.environ.get("MILLION", "")
G, C = f"{DATA}/bin/goref", f"{DATA}/bin/ctrref"
DROP = "sync && echo 3 > /proc/sys/vm/drop_caches"
results = []


def sh(cmd):
    subprocess.run(["bash", "-c", cmd], check=True)


def quiet(cmd):
    return f"{cmd} >/dev/null"


def case(dataset, name, rows, prepare=None, runs=RUNS, cold=False, warmup=1):
    """rows: (label, shell command); rows without their tool installed are left out."""
    if CASES and name not in CASES:
        return
    rows = [(l, c) for l, c in rows if not c.startswith((G, C)) or os.access(c.split()[0], os.X_OK)]
    for cache in (["warm", "cold"] if cold and COLD else ["warm"]):
        prep = prepare if cache == "warm" else (f"{DROP} && {prepare}" if prepare else DROP)
        n = runs if cache == "warm" else min(runs, COLD_RUNS)
        path = f"{OUT}/{dataset}-{name}-{cache}.json"
        args = ["hyperfine", "-N", "-r", str(n), "-w", str(warmup if cache == "warm" else 0),
                "--export-json", path]
        if prep:
            args += ["--prepare", f"bash -c {shlex.quote(prep)}"]
        for label, cmd in rows:
            args += ["-n", label, f"bash -c {shlex.quote('set -o pipefail; ' + cmd)}"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        rs = json.load(open(path))["results"]
        for (label, cmd), r in zip(rows, rs):
            t = sorted(r["times"])
            q = lambda f: t[min(len(t) - 1, int(f * len(t)))]
            entry = dict(dataset=dataset, case=name, cache=cache, label=label, command=cmd,
                         median=statistics.median(t), q1=q(.25), q3=q(.75), runs=len(t), ours=cmd.startswith(T))
            if cache == "warm":
                entry["rss_kib"] = rss(cmd, prepare)
            results.append(entry)
            print(f"{dataset:5} {cache:4} {name:18} {label:28} {entry['median']*1000:9.1f} ms"
                  f"  IQR {entry['q1']*1000:.1f}-{entry['q3']*1000:.1f}"
                  + (f"  {entry['rss_kib']/1024:.1f} MiB" if "rss_kib" in entry else ""), flush=True)
        json.dump(results, open(f"{OUT}/results.json", "w"), indent=1)


def rss(cmd, prepare):
    """Peak RSS (KiB) of the command's largest process (GNU time folds in waited children)."""
    if prepare:
        sh(prepare)
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "bash", "-c", quiet(cmd) + " 2>/dev/null"],
                       stderr=subprocess.PIPE, text=True)
    return int(p.stderr.strip().splitlines()[-1])


def directory_cases(ds, d, runs):
    X = f"{SCR}/x"
    empty = f"rm -rf {X} && mkdir {X}"
    copy = f"rm -rf {X} && cp -a {d}/base {X}"
    case(ds, "changes", [
        ("difftool changes", f"{T} changes {d}/base {d}/new"),
        ("lstat walk (find)", f"find {d}/base {d}/new -printf '%s%T@'"),
        ("moby", f"{G} changes {d}/new {d}/base"),
        ("containerd", f"{C} changes {d}/new {d}/base")], runs=runs, cold=True)
    case(ds, "size", [
        ("difftool size", f"{T} size {d}/base {d}/new"),
        ("moby", f"{G} size {d}/new {d}/base"),
        ("containerd", f"{C} size {d}/new {d}/base")], runs=runs)
    case(ds, "diff", [
        ("difftool diff", f"{T} diff {d}/base {d}/new | cat"),
        ("moby", f"{G} diff {d}/new {d}/base | cat"),
        ("containerd", f"{C} diff {d}/new {d}/base | cat")], runs=runs, cold=True)
    case(ds, "tar", [
        ("difftool tar", f"{T} tar {d}/base | cat"),
        ("bsdtar", f"bsdtar -cf - -C {d}/base . | cat"),
        ("GNU tar", f"tar -cf - -C {d}/base . | cat"),
        ("moby", f"{G} tar {d}/base | cat"),
        ("containerd", f"{C} tar {d}/base | cat")], runs=runs, cold=True)
    case(ds, "apply-empty", [
        ("difftool apply", f"{T} apply {X} -i {d}/base.tar"),
        ("GNU tar", f"tar -xpf {d}/base.tar -C {X}"),
        ("bsdtar", f"bsdtar -xpf {d}/base.tar -C {X}"),
        ("cp -a (of base)", f"cp -a {d}/base/. {X}"),
        ("moby", f"{G} apply {X} < {d}/base.tar"),
        ("containerd", f"{C} apply {X} < {d}/base.tar")], prepare=empty, runs=runs, cold=True)
    case(ds, "apply-layer", [
        ("difftool apply", f"{T} apply {X} -i {d}/layer.tar"),
        ("GNU tar --overwrite", f"tar --overwrite --recursive-unlink -xpf {d}/layer.tar -C {X}"),
        ("moby", f"{G} apply {X} < {d}/layer.tar"),
        ("containerd", f"{C} apply {X} < {d}/layer.tar")], prepare=copy, runs=runs)
    case(ds, "apply-overlay", [
        ("difftool apply --whiteouts overlay", f"{T} apply {X} --whiteouts overlay -i {d}/layer.tar"),
        ("moby", f"{G} apply {X} --overlay < {d}/layer.tar"),
        ("containerd", f"{C} apply {X} --overlay < {d}/layer.tar")], prepare=empty, runs=runs)
    sh(f"rm -rf {X}")


def speed_cases(ds, d, runs):
    """Where users wait: an export with its digests beside openssl's SHA-256 of the same tar; the
    byte-exact re-export of an imported, unchanged layer beside cat of the original tar; the apply
    of the gzip'd tar beside the plain one (and the decompressors alone)."""
    home = f"{SCR}/{ds}-speed"
    s = store("overlay2", home)
    sh(f"rm -rf {home} && {s} import base -i {d}/base.tar -q >/dev/null")
    case(ds, "export-digest", [
        ("difftool export --regenerate (digests)", f"{s} export base --regenerate -q -o /dev/null"),
        ("openssl dgst -sha256", f"openssl dgst -sha256 {d}/base.tar"),
        ("difftool export --regenerate --no-digest", f"{s} export base --regenerate --no-digest -q -o /dev/null")], runs=runs)
    case(ds, "export-exact", [
        ("difftool export (byte-exact, digests)", f"{s} export base -q -o /dev/null"),
        ("cat of the original tar", f"cat {d}/base.tar > /dev/null")], runs=runs)
    gz, X = f"{SCR}/{ds}-base.tar.gz", f"{SCR}/x"
    sh(f"gzip -6 -n -c {d}/base.tar > {gz}")
    case(ds, "apply-gzip", [
        ("difftool apply base.tar.gz", f"{T} apply {X} -i {gz}"),
        ("difftool apply base.tar", f"{T} apply {X} -i {d}/base.tar"),
        ("gzip -dc", f"gzip -dc {gz} > /dev/null"),
        ("pigz -dc", f"pigz -dc {gz} > /dev/null")], prepare=f"rm -rf {X} && mkdir {X}", runs=runs)
    sh(f"rm -rf {home} {gz} {X}")


def million_cases(d):
    """The 1.05M-entry pair (make-synth.py --files 900000 --big ""): time and peak RSS of the
    commands that walk both trees, once each (their memory must not grow with the tree)."""
    runs = int(os.environ.get("MILLION_RUNS", 3))
    case("million", "changes", [("difftool changes", f"{T} changes {d}/base {d}/new"),
                                ("lstat walk (find)", f"find {d}/base {d}/new -printf '%s%T@'"),
                                ("moby", f"{G} changes {d}/new {d}/base")], runs=runs, warmup=0)
    case("million", "size", [("difftool size", f"{T} size {d}/base {d}/new")], runs=runs, warmup=0)
    case("million", "diff", [("difftool diff", f"{T} diff {d}/base {d}/new | cat")], runs=runs, warmup=0)


def store(driver, home):
    return f"{T} --driver {driver} --home {home}"


def driver_cases(ds, d, runs, drivers):
    """Each driver's store holds base (base.tar) and top (layer.tar)."""
    stores = {}
    for drv in drivers:
        home = f"{SCR}/btrfs/store" if drv == "btrfs" else f"{SCR}/{ds}-{drv}"
        s = store(drv, home)
        sh(f"{s} rm top 2>/dev/null; {s} rm base 2>/dev/null; true")
        sh(f"{s} import base -i {d}/base.tar -q >/dev/null && {s} import top --parent base -i {d}/layer.tar -q >/dev/null")
        stores[drv] = (s, home)
    for drv, (s, _) in stores.items():      # one case each: the prepare removes that store's top
        case(ds, f"import-{drv}", [(f"{drv}: import top", f"{s} import top --parent base -i {d}/layer.tar -q")],
             prepare=f"{s} rm top", runs=runs)
    case(ds, "export", [(f"{drv}: export top", f"{s} export top -q | cat") for drv, (s, _) in stores.items()], runs=runs)
    case(ds, "store-changes", [(f"{drv}: changes top", f"{s} changes top") for drv, (s, _) in stores.items()], runs=runs)
    if "overlay2" in stores:
        s, home = stores["overlay2"]
        case(ds, "overlay2-export", [
            ("overlay2 export (native)", f"{s} export top --no-digest -q | cat"),
            ("overlay2 export --naive", f"{s} export top --naive --no-digest -q | cat"),
            ("moby tar of the upper", f"{G} tar {home}/overlay2/top/diff --overlay | cat")], runs=runs)
    return stores


# A layer made through the mount of a store with redirect_dir and metacopy: layer.tar applied onto
# the merged view, then directories renamed and files chmodded there (the upper then holds
# redirects and metadata-only copy-ups, which the native export reads through the mount). The
# edits name paths of the real pair (a Debian root filesystem), so the case runs on it only.
REDIRECT_EDITS = ("mv usr/share/doc usr/share/doc.moved && mv etc/apt etc/apt.moved && "
                  "mv usr/lib/x86_64-linux-gnu/perl-base usr/perl-base.moved && "
                  "chmod 700 usr/bin/[a-d]* && chown 1:1 usr/lib/x86_64-linux-gnu/lib[a-c]*")


def overlay2_redirect_case(ds, d, runs):
    home = f"{SCR}/{ds}-overlay2-redirect"
    s = store("overlay2", home) + " --storage-opt overlay2.mountopt=redirect_dir=on,metacopy=on"
    sh(f"rm -rf {home} && {s} import base -i {d}/base.tar -q >/dev/null && {s} create top --parent base --rw && "
       f"m=$({s} mount top) && {T} apply \"$m\" -i {d}/layer.tar >/dev/null && (cd \"$m\" && {REDIRECT_EDITS}) && {s} umount top")
    case(ds, "overlay2-redirect-export", [
        ("overlay2 redirect_dir+metacopy export (native)", f"{s} export top --no-digest -q | cat"),
        ("overlay2 redirect_dir+metacopy export --naive", f"{s} export top --naive --no-digest -q | cat")], runs=runs)
    sh(f"rm -rf {home}")


def btrfs_up():
    sh(f"umount {SCR}/btrfs/store 2>/dev/null; rm -rf {SCR}/btrfs; mkdir -p {SCR}/btrfs/store && "
       f"truncate -s 8G {SCR}/btrfs/img && mkfs.btrfs -q -f {SCR}/btrfs/img >/dev/null && "
       f"mount -o loop {SCR}/btrfs/img {SCR}/btrfs/store")


def main():
    os.makedirs(SCR, exist_ok=True)
    if "real" in SETS:
        directory_cases("real", DATA, RUNS)
        speed_cases("real", DATA, RUNS)
        btrfs_up()
        driver_cases("real", DATA, RUNS, ["vfs", "overlay2", "btrfs", "aufs"])
        overlay2_redirect_case("real", DATA, RUNS)
        sh(f"umount {SCR}/btrfs/store; rm -rf {SCR}/btrfs")
    if "synth" in SETS:
        directory_cases("synth", SYNTH, SYNTH_RUNS)
        driver_cases("synth", SYNTH, SYNTH_RUNS, ["overlay2"])
        # native export is proportional to the upper: the real layer on the synthetic base
        s = store("overlay2", f"{SCR}/synth-overlay2")
        sh(f"{s} rm small 2>/dev/null; {s} import small --parent base -i {DATA}/layer.tar -q >/dev/null")
        rows = [("real layer over the synthetic base", f"{s} export small --no-digest -q | cat")]
        if "real" in SETS:
            r = store("overlay2", f"{SCR}/real-overlay2")
            rows.append(("real layer over the real base", f"{r} export top --no-digest -q | cat"))
        rows.append(("--naive, over the synthetic base", f"{s} export small --naive --no-digest -q | cat"))
        case("synth", "native-proportional", rows, runs=SYNTH_RUNS)
    if "million" in SETS:
        million_cases(MILLION)
    for ds in ("real", "synth"):
        for drv in ("vfs", "overlay2", "aufs"):
            sh(f"rm -rf {SCR}/{ds}-{drv}")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "bench-table.py"), OUT], check=True)


main()
