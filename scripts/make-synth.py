#!/usr/bin/env python3
"""Seeded synthetic layer pair for the benchmark suite (scripts/bench.sh).

    scripts/make-synth.py OUT [--seed N] [--files N] [--big 160M,256M,320M]

makes, when OUT/.done does not already name the same parameters:
  OUT/base   a tree of >= 200,000 entries: a random directory tree (fan-out and depth vary), one
             directory 48 levels deep, one holding 20,000 files; regular files with a log-normal
             size mix (median 2 KiB, capped at 8 MiB) plus a few files of hundreds of MiB; hardlink
             groups of 2-5 names; relative, absolute and dangling symlinks; fifos; empty
             directories; user.* xattrs and security.capability; several modes and owners;
             mtimes with nanoseconds (a tenth in whole seconds, as tar extraction leaves them).
  OUT/new    a copy of base with a layer's worth of changes: adds (in old and new directories),
             deletes (files, symlinks, whole subtrees), content edits (some keep their size),
             type changes (file->dir, file->symlink, dir->file, symlink->file), chmods, chowns,
             xattr changes, a renamed subtree, hardlinks added and broken.
  FIGURES.txt counts of both trees.
Everything -- names, sizes, contents, modes, owners, times -- follows from the seed, so two runs
make the same trees (inode numbers aside). The tars are made by bench.sh with difftool.
Needs root (chown, security.capability). Writes about 2 GB.
"""
import argparse, os, random, shutil, stat, struct, subprocess, sys

T0 = 1_700_000_000          # base mtimes are T0 + up to a year
T1 = T0 + 400 * 86400       # the layer's mtimes
POOL = 1 << 24              # contents are slices of a seeded 16 MiB pool, each made unique


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.pool = random.Random(seed ^ 0x5EED).randbytes(POOL)
        self.serial = 0

    def content(self, size):
        self.serial += 1
        head = b"%d\n" % self.serial
        if size <= len(head):
            return head[:size]
        off = self.r.randrange(POOL - min(size, POOL) + 1)
        body = self.pool[off:off + size - len(head)]
        return head + body if len(body) == size - len(head) else None

    def write(self, path, size):
        with open(path, "wb") as f:
            data = self.content(size)
            if data is not None:
                f.write(data)
                return
            f.write(b"%d\n" % self.serial)       # large: the pool again and again, shifted
            left, k = size - f.tell(), 0
            while left > 0:
                off = (k * 7919 * 4096 + self.serial) % (POOL // 2)
                chunk = self.pool[off:off + min(left, POOL // 2)]
                f.write(chunk)
                left -= len(chunk)
                k += 1

    def size(self):
        r = self.r.random()
        if r < 0.02:
            return 0
        return min(int(self.r.lognormvariate(7.6, 1.5)), 8 << 20)   # e^7.6 ~ 2 KiB

    def mtime(self, base):
        s = base + self.r.randrange(365 * 86400)
        ns = 0 if self.r.random() < 0.1 else self.r.randrange(1, 10**9)
        return s * 10**9 + ns

    def meta(self, path, mode, base=T0, owner=None):
        uid, gid = owner or self.r.choices([(0, 0), (1000, 1000), (33, 33), (0, 42)], [85, 8, 5, 2])[0]
        os.chown(path, uid, gid, follow_symlinks=False)
        if not os.path.islink(path):
            os.chmod(path, mode)
        t = self.mtime(base)
        os.utime(path, ns=(t, t), follow_symlinks=False)


def name(r, k):
    stems = ["lib", "bin", "share", "doc", "conf", "data", "cache", "node", "pkg", "src", "x", "mod"]
    return f"{r.choice(stems)}{k}" + r.choice(["", ".so", ".h", ".py", ".txt", ".json", ".gz", ""])


def make_base(g, root, nfiles, bigs):
    r = g.r
    os.makedirs(root)
    dirs = [""]
    top = ["usr", "var", "opt", "srv", "home", "etc", "lib"]
    for t in top:
        os.mkdir(os.path.join(root, t)); dirs.append(t)
    ndirs = nfiles // 13
    for k in range(ndirs):                                  # random tree, biased to recent dirs
        parent = dirs[-1 - min(len(dirs) - 1, int(r.expovariate(1 / 300)))] if r.random() < 0.7 else r.choice(dirs[1:])
        if parent.count("/") >= 14:
            parent = r.choice(top)
        d = f"{parent}/d{k}" if parent else f"d{k}"
        os.mkdir(os.path.join(root, d)); dirs.append(d)
    deep = "opt/deep"
    os.mkdir(os.path.join(root, deep))
    for k in range(48):
        deep += f"/level{k}"
        os.mkdir(os.path.join(root, deep)); dirs.append(deep)
    wide = "var/cache/wide"
    os.makedirs(os.path.join(root, wide)); dirs += ["var/cache", wide]
    files = []
    for k in range(nfiles):
        d = wide if k < min(20000, nfiles // 9) else r.choice(dirs)
        p = f"{d}/{name(r, k)}" if d else name(r, k)
        if os.path.lexists(os.path.join(root, p)):
            continue
        g.write(os.path.join(root, p), g.size())
        g.meta(os.path.join(root, p), r.choices([0o644, 0o755, 0o600, 0o444, 0o4755], [70, 20, 6, 3, 1])[0])
        files.append(p)
    for k, size in enumerate(bigs):
        p = f"srv/blob{k}.img"
        g.write(os.path.join(root, p), size); g.meta(os.path.join(root, p), 0o644); files.append(p)
    for k in range(nfiles // 55):                          # hardlink groups
        src = r.choice(files)
        for j in range(r.randint(1, 4)):
            p = f"{r.choice(dirs)}/hl{k}_{j}".lstrip("/")
            if not os.path.lexists(os.path.join(root, p)):
                os.link(os.path.join(root, src), os.path.join(root, p))
    for k in range(nfiles // 20):                          # symlinks
        p = f"{r.choice(dirs)}/ln{k}".lstrip("/")
        kind = r.random()
        target = ("/" + r.choice(files) if kind < 0.3 else
                  os.path.relpath(r.choice(files), os.path.dirname(p) or ".") if kind < 0.9 else f"missing{k}")
        os.symlink(target, os.path.join(root, p))
        g.meta(os.path.join(root, p), 0o777)
    for k in range(20):
        p = f"{r.choice(dirs)}/fifo{k}".lstrip("/")
        os.mkfifo(os.path.join(root, p)); g.meta(os.path.join(root, p), 0o600)
    for k in range(nfiles // 50):                          # xattrs
        p = os.path.join(root, r.choice(files))
        os.setxattr(p, f"user.k{k % 7}", b"v%d" % k)
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)   # cap_net_bind_service, effective
    for p in r.sample(files, 30):
        os.setxattr(os.path.join(root, p), "security.capability", cap)
    for d in reversed(dirs[1:]):                            # dir metadata last, deepest first
        g.meta(os.path.join(root, d), r.choices([0o755, 0o700, 0o1777, 0o750], [90, 5, 2, 3])[0])
    return dirs, files


def make_new(g, base, root, dirs, files, nfiles):
    r = g.r
    subprocess.run(["cp", "-a", base, root], check=True)
    at = lambda p: os.path.join(root, p)
    alive = [p for p in files if os.path.lexists(at(p))]
    r.shuffle(alive)
    take = lambda n: [alive.pop() for _ in range(min(n, len(alive)))]
    pick = lambda pop, n: r.sample(pop, min(n, len(pop)))
    n = lambda count: max(1, count * nfiles // 180000)     # the counts below are for 180,000 files
    # a renamed subtree: the largest directory (not at the top) with at most 2.5 % of the files below it
    counts = {}
    for p in files:
        parts = p.split("/")
        for i in range(1, len(parts)):
            counts["/".join(parts[:i])] = counts.get("/".join(parts[:i]), 0) + 1
    moved = max((d for d, c in counts.items() if c <= nfiles // 40 and "/" in d and not d.startswith(("var/cache", "opt/deep"))), key=counts.get)
    os.rename(at(moved), at(moved + ".renamed"))
    alive = [p for p in alive if not p.startswith(moved + "/")]
    for d in pick([d for d in dirs if d.count("/") >= 3 and not moved.startswith(d) and not d.startswith(moved)], n(60)):
        shutil.rmtree(at(d), ignore_errors=True)           # deleted subtrees
    alive = [p for p in alive if os.path.lexists(at(p))]
    for p in take(n(4000)):                                   # deleted files
        os.unlink(at(p))
    for p in take(n(3000)):                                   # content edits
        size = os.lstat(at(p)).st_size if r.random() < 0.3 else g.size()
        mode = stat.S_IMODE(os.lstat(at(p)).st_mode)
        os.unlink(at(p)); g.write(at(p), size); g.meta(at(p), mode, T1)
    for p in take(n(2000)):                                   # chmod
        os.chmod(at(p), 0o600 if os.lstat(at(p)).st_mode & 0o44 else 0o644)
    for p in take(n(500)):                                    # chown
        os.chown(at(p), 1001, 1001)
    for p in take(n(200)):                                    # xattr added
        os.setxattr(at(p), "user.layer", b"yes")
    for p in take(n(200)):                                    # file -> dir
        os.unlink(at(p)); os.mkdir(at(p)); g.write(at(p) + "/inside", g.size()); g.meta(at(p) + "/inside", 0o644, T1)
        g.meta(at(p), 0o755, T1)
    for p in take(n(200)):                                    # file -> symlink
        os.unlink(at(p)); os.symlink("/etc/hostname", at(p)); g.meta(at(p), 0o777, T1)
    for d in r.sample([d for d in dirs if os.path.isdir(at(d)) and d.count("/") >= 4 and not moved.startswith(d)], n(100)):
        if os.path.isdir(at(d)):                            # dir -> file
            shutil.rmtree(at(d)); g.write(at(d), g.size()); g.meta(at(d), 0o644, T1)
    links = [os.path.join(dp, f)[len(root) + 1:] for dp, _, fs in os.walk(root) for f in fs if f.startswith("ln")]
    for p in pick(sorted(links), n(100)):  # symlink -> file
        os.unlink(at(p)); g.write(at(p), g.size()); g.meta(at(p), 0o644, T1)
    alive = [p for p in alive if os.path.isfile(at(p)) and not os.path.islink(at(p))]
    for p in take(n(100)):                                    # hardlinks added
        os.link(at(p), at(p + ".hl"))
    newdirs = []
    parents = [d for d in dirs[:2000] if os.path.isdir(at(d))]
    for k in range(n(300)):                                   # new directories
        parent = r.choice(parents)
        d = f"{parent}/new{k}".lstrip("/")
        os.mkdir(at(d)); newdirs.append(d)
    for k in range(n(5000)):                                  # added files
        d = r.choice(newdirs) if r.random() < 0.6 else r.choice(dirs)
        if not os.path.isdir(at(d)) or os.path.islink(at(d)):
            continue
        p = f"{d}/added{k}".lstrip("/")
        g.write(at(p), g.size()); g.meta(at(p), 0o644, T1)
    for d in newdirs:
        g.meta(at(d), 0o755, T1)
    late = (T1 + 366 * 86400) * 10**9                      # directories the changes touched: seeded too
    for dp in sorted(dp for dp, _, _ in os.walk(root)):
        st = os.lstat(dp)
        if st.st_mtime_ns > late:
            g.meta(dp, stat.S_IMODE(st.st_mode), T1, owner=(st.st_uid, st.st_gid))


def figures(root):
    n = {"files": 0, "dirs": 0, "symlinks": 0, "other": 0, "hardlinks": 0, "xattrs": 0, "bytes": 0}
    for dp, ds, fs in os.walk(root):
        n["dirs"] += sum(not os.path.islink(os.path.join(dp, d)) for d in ds)
        for f in fs + [d for d in ds if os.path.islink(os.path.join(dp, d))]:
            st = os.lstat(os.path.join(dp, f))
            if stat.S_ISREG(st.st_mode):
                n["files"] += 1; n["bytes"] += st.st_size; n["hardlinks"] += st.st_nlink > 1
                n["xattrs"] += bool(os.listxattr(os.path.join(dp, f), follow_symlinks=False))
            elif stat.S_ISLNK(st.st_mode):
                n["symlinks"] += 1
            else:
                n["other"] += 1
    n["entries"] = n["files"] + n["dirs"] + n["symlinks"] + n["other"]
    return " ".join(f"{k}={v}" for k, v in n.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--files", type=int, default=180000)
    ap.add_argument("--big", default="160M,256M,320M")
    a = ap.parse_args()
    key = f"seed={a.seed} files={a.files} big={a.big} v=1\n"
    done = os.path.join(a.out, ".done")
    if os.path.exists(done) and open(done).read() == key:
        return
    if os.geteuid() != 0:
        sys.exit("make-synth.py: needs root (chown, security.capability)")
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    g = Gen(a.seed)
    base, new = os.path.join(a.out, "base"), os.path.join(a.out, "new")
    dirs, files = make_base(g, base, a.files, [parse_size(s) for s in a.big.split(",") if s])
    make_new(g, base, new, dirs, files, a.files)
    with open(os.path.join(a.out, "FIGURES.txt"), "w") as f:
        f.write(f"# make-synth.py {key}base {figures(base)}\nnew  {figures(new)}\n")
    open(done, "w").write(key)


if __name__ == "__main__":
    main()
