#!/usr/bin/env python3
"""Figures of ID-mapped layer views (root; hyperfine):

    scripts/bench-idmap.py NAME=LAYER.tar [NAME=LAYER.tar ...]

For each layer tar, in an overlay2 store on the scratch directory: the tar is imported once as
`base` (unmapped, not timed) with an empty read-write layer `top` on it (a container's layer);
then, each as one hyperfine case,
  - view of base:  `difftool mount base --uid-map 0:100000:65536 --gid-map 0:100000:65536`
                   (an ID-mapped bind of the layer's directory),
  - view of top:   the same for `top` (an overlay of ID-mapped branches),
  - chown path:    `difftool import mapped -i LAYER.tar --uid-map … --gid-map …` (what a
                   mapped layer costs without ID-mapped mounts: every file written and chowned).
Each mount is timed alone: hyperfine's prepare step unmounts the previous one. The store of
each layer is removed at the end. Prints medians, the ratio chown ÷ view per layer, and the ratio
of the view times between the layers; writes OUT/idmap-NAME-CASE.json and OUT/idmap.json.

Variables: T (difftool; default: release build path from `swift build -c release
--show-bin-path`), SCR (scratch, default /dev/shm/difftool-idmap), OUT (default bench-out),
RUNS (timed runs of a view, 20), CHOWN_RUNS (timed chown imports, 3).
"""
import json, os, shlex, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
T = os.environ.get("T") or subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=os.path.dirname(HERE),
                                          check=True, capture_output=True, text=True).stdout.strip() + "/difftool"
SCR = os.environ.get("SCR", "/dev/shm/difftool-idmap")
OUT = os.path.realpath(os.environ.get("OUT", "bench-out"))
RUNS, CHOWN_RUNS = int(os.environ.get("RUNS", 20)), int(os.environ.get("CHOWN_RUNS", 3))
MAP = "--uid-map 0:100000:65536 --gid-map 0:100000:65536"


def sh(cmd):
    subprocess.run(["bash", "-c", cmd], check=True)


def timed(name, label, cmd, prepare, runs):
    path = f"{OUT}/idmap-{name}.json"
    subprocess.run(["hyperfine", "-N", "-r", str(runs), "-w", "1" if runs > 3 else "0", "--export-json", path,
                    "--prepare", f"bash -c {shlex.quote(prepare)}", "-n", label, f"bash -c {shlex.quote(cmd)}"],
                   check=True, stdout=subprocess.DEVNULL)
    t = json.load(open(path))["results"][0]["times"]
    return statistics.median(t)


def main():
    layers = [a.split("=", 1) for a in sys.argv[1:]]
    if not layers or any(len(l) != 2 for l in layers):
        sys.exit(__doc__)
    os.makedirs(OUT, exist_ok=True)
    results = {}
    for name, tar in layers:
        home = f"{SCR}/{name}"
        s = f"{T} --driver overlay2 --home {home}"
        sh(f"rm -rf {home} && mkdir -p {home} && {s} import base -i {tar} -q >/dev/null && {s} create top --parent base --rw")
        entries = int(subprocess.run(["bash", "-c", f"tar -tf {tar} | wc -l"], capture_output=True, text=True).stdout)
        r = {"tar": tar, "entries": entries, "bytes": os.path.getsize(tar)}
        for layer in ("base", "top"):
            # Unmount what the last run mounted (one reference; the first run finds nothing).
            prepare = f"{s} umount {layer} {MAP} 2>/dev/null; true"
            r[f"view-{layer}"] = timed(f"{name}-view-{layer}", f"mapped view of {layer}", f"{s} mount {layer} {MAP} >/dev/null",
                                       prepare, RUNS)
            sh(prepare)
        # For scale: the plain overlay mount of top (no map) through the same command.
        prepare = f"{s} umount top 2>/dev/null; true"
        r["plain-top"] = timed(f"{name}-plain-top", "plain mount of top", f"{s} mount top >/dev/null", prepare, RUNS)
        sh(prepare)
        r["chown"] = timed(f"{name}-chown", "import --uid-map (chown path)", f"{s} import mapped -i {tar} {MAP} -q >/dev/null",
                           f"{s} rm mapped 2>/dev/null; true", CHOWN_RUNS)
        sh(f"{s} rm mapped; {s} rm top; {s} rm base; rm -rf {home}")
        r["speedup"] = r["chown"] / r["view-base"]
        results[name] = r
        print(f"{name}: {entries} entries, {r['bytes'] / 1e9:.2f} GB; view of base {r['view-base'] * 1000:.1f} ms, "
              f"view of top {r['view-top'] * 1000:.1f} ms (plain mount of top {r['plain-top'] * 1000:.1f} ms), import --uid-map {r['chown']:.2f} s; "
              f"chown / view {r['speedup']:.0f}x", flush=True)
    if len(results) >= 2:
        for k in ("view-base", "view-top"):
            v = [r[k] for r in results.values()]
            print(f"{k}: largest / smallest across layers {max(v) / min(v):.2f}")
    json.dump(results, open(f"{OUT}/idmap.json", "w"), indent=1)


main()
