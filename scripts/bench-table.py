#!/usr/bin/env python3
"""TABLE.md from a bench run's results.json:  scripts/bench-table.py OUT"""
import json, sys

out = sys.argv[1]
rs = json.load(open(f"{out}/results.json"))
CASES = [("changes", "change list of new against base"), ("size", "DiffSize"),
         ("diff", "naive diff export (tar through a pipe)"), ("tar", "full export of base (through a pipe)"),
         ("apply-empty", "apply base.tar into an empty dir"), ("apply-layer", "apply layer.tar onto a copy of base"),
         ("apply-overlay", "apply layer.tar as an overlay upper (empty dir)"),
         ("export-digest", "store export of base, regenerated, with its digests"),
         ("export-exact", "store export of base, byte-exact (imported, unchanged), with its digests"),
         ("apply-gzip", "apply base.tar.gz (gzip -6) into an empty dir")]


def ms(t):
    return f"{t * 1000:.0f} ms" if t >= 10 else f"{t * 1000:.1f} ms"


def get(ds, case, cache, label=None):
    for r in rs:
        if r["dataset"] == ds and r["case"] == case and r["cache"] == cache and (label is None or r["label"] == label):
            return r


def rows(ds, case, cache):
    return [r for r in rs if r["dataset"] == ds and r["case"] == case and r["cache"] == cache]


lines = []
w = lines.append
for ds in ("real", "synth", "million"):
    for cache in ("warm", "cold"):
        present = [(c, d) for c, d in CASES if rows(ds, c, cache)]
        if not present:
            continue
        w(f"\n### {ds} data, {cache} cache\n")
        w("| operation | difftool (median, IQR) | plain tools: median · difftool÷tool | moby | containerd | difftool peak RSS |")
        w("|---|---|---|---|---|---|")
        for c, desc in present:
            group = rows(ds, c, cache)
            ours = group[0]
            def cell(r):
                return f"{ms(r['median'])} · **{ours['median'] / r['median']:.2f}**"
            plain = "; ".join(f"{r['label']} {cell(r)}" for r in group[1:] if r["label"] not in ("moby", "containerd"))
            moby = next((cell(r) for r in group if r["label"] == "moby"), "—")
            ctr = next((cell(r) for r in group if r["label"] == "containerd"), "—")
            warm = get(ds, c, "warm", ours["label"])
            mem = f"{warm['rss_kib'] / 1024:.1f} MiB" if warm and "rss_kib" in warm else ""
            w(f"| {desc} | {ms(ours['median'])} ({ms(ours['q1'])}–{ms(ours['q3'])}) | {plain or '—'} | {moby} | {ctr} | {mem} |")
    drv = [r for r in rs if r["dataset"] == ds and r["cache"] == "warm" and ":" in r["label"]]
    if drv:
        w(f"\n### {ds} data, stores (warm; store on tmpfs, the btrfs one on a loop image there)\n")
        w("| driver | import top (layer.tar onto base) | export top | changes top | peak RSS (import / export) |")
        w("|---|---|---|---|---|")
        for d in dict.fromkeys(r["label"].split(":")[0] for r in drv):
            f = lambda what: next((r for r in drv if r["label"] == f"{d}: {what}"), None)
            cells = [f"{ms(x['median'])} ({ms(x['q1'])}–{ms(x['q3'])})" if x else "—" for x in (f("import top"), f("export top"), f("changes top"))]
            mem = " / ".join(f"{x['rss_kib'] / 1024:.1f}" for x in (f("import top"), f("export top")) if x)
            w(f"| {d} | " + " | ".join(cells) + f" | {mem} MiB |")
    for c in ("overlay2-export", "native-proportional"):
        group = rows(ds, c, "warm")
        if group:
            w(f"\n{ds} data, {c}: " + "; ".join(f"{r['label']} {ms(r['median'])} ({ms(r['q1'])}–{ms(r['q3'])})" for r in group))

w("\n### Targets\n")
w("| target | measured | met |")
w("|---|---|---|")
def target(name, value, ok):
    w(f"| {name} | {value} | {'yes' if ok else '**no**'} |")
for ds in ("real", "synth"):
    for cache in ("warm", "cold"):
        a, b = get(ds, "changes", cache, "difftool changes"), get(ds, "changes", cache, "lstat walk (find)")
        if a and b:
            target(f"changes ≤ 1.5× a bare lstat walk ({ds}, {cache})", f"{a['median'] / b['median']:.2f}×", a["median"] <= 1.5 * b["median"])
        a, b = get(ds, "tar", cache, "difftool tar"), get(ds, "tar", cache, "bsdtar")
        if a and b:
            target(f"full export ≤ 1.0× bsdtar ({ds}, {cache})", f"{a['median'] / b['median']:.2f}×", a["median"] <= b["median"])
        a, b, m = (get(ds, "apply-empty", cache, l) for l in ("difftool apply", "GNU tar", "moby"))
        if a and b:
            target(f"apply into an empty dir ≤ 1.0× GNU tar ({ds}, {cache})", f"{a['median'] / b['median']:.2f}×", a["median"] <= b["median"])
        if a and m:
            target(f"apply ≥ 2× faster than moby ({ds}, {cache})", f"{m['median'] / a['median']:.2f}× faster", m["median"] >= 2 * a["median"])
a, b = get("real", "export-digest", "warm", "difftool export --regenerate (digests)"), get("real", "export-digest", "warm", "openssl dgst -sha256")
if a and b:
    target("export with digests ≤ 1.15× openssl dgst -sha256 of the same tar", f"{a['median'] / b['median']:.2f}×", a["median"] <= 1.15 * b["median"])
a, b = get("real", "export-exact", "warm", "difftool export (byte-exact, digests)"), get("real", "export-exact", "warm", "cat of the original tar")
if a and b:
    target("byte-exact re-export ≤ 4× cat of the original tar", f"{a['median'] / b['median']:.2f}×", a["median"] <= 4 * b["median"])
a, b = get("real", "apply-gzip", "warm", "difftool apply base.tar.gz"), get("real", "apply-gzip", "warm", "difftool apply base.tar")
if a and b:
    target("apply of base.tar.gz ≤ 1.3× the apply of base.tar", f"{a['median'] / b['median']:.2f}×", a["median"] <= 1.3 * b["median"])
for ds in ("synth", "million"):
    for c in ("changes", "size", "diff"):
        r = get(ds, c, "warm", f"difftool {c}")
        if r and "rss_kib" in r:
            target(f"peak RSS of {c} ≤ 32 MiB ({ds})", f"{r['rss_kib'] / 1024:.1f} MiB", r["rss_kib"] <= 32 * 1024)
p = rows("synth", "native-proportional", "warm")
if len(p) >= 2:
    small, big = p[1], p[0]
    target("native overlay export ∝ the upper (same upper over 6.7k vs 210k lower entries)",
           f"{ms(small['median'])} vs {ms(big['median'])}", big["median"] <= 1.25 * small["median"])
mem = [r for r in rs if "rss_kib" in r and r["ours"]]
if mem:
    top = max(mem, key=lambda r: r["rss_kib"])
    target("peak RSS ≤ 32 MiB (every difftool command, the synthetic base.tar > 1 GiB)",
           f"max {top['rss_kib'] / 1024:.1f} MiB ({top['dataset']} {top['case']}: {top['label']})", top["rss_kib"] <= 32 * 1024)
open(f"{out}/TABLE.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
