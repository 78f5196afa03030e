#!/usr/bin/env python3
"""repovault against git itself, side by side in one run.

    benches/vs-git.py REPO.git [--fork FORK.git] [--runs 3] [--bin target/release/repovault]

For a bare repository REPO.git it measures, alternating repovault and git runs
and taking the median of --runs (at least 3):

  first sync into an empty store     vs  git clone --mirror --no-local
  store bytes (every file)           vs  the repository's pack bytes (git count-objects -v)
  unchanged re-sync (file://)            (target: <= 50 ms per repository)
  re-sync after 20 new commits       vs  git bundle of those commits (bytes)
  restore --latest                   vs  git clone --mirror --no-local
  verify --read-data                 vs  git fsck --full
  peak RSS of sync and restore           (getrusage of the child)
  with --fork: bytes the fork adds to a store that holds REPO
  a copy lacking 20 blobs: the refused sync vs git fsck --connectivity-only,
    the length of its error line, and the store's bytes before and after

and prints one table of figures and ratios. Nothing outside a temporary
directory is written; REPO.git is only read (the 20 commits go to a copy).
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GIT_ENV = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")


def run(cmd, **kw):
    """Runs cmd; returns (seconds, None, stdout). Exits on failure."""
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=GIT_ENV, **kw)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr.decode(errors="replace")))
    return dt, None, p.stdout


def peak_rss(cmd, **kw):
    """Peak RSS (KiB) of one run of cmd, measured in a separate process (ru_maxrss of
    RUSAGE_CHILDREN is a maximum over all children so far, so each gets a fresh parent)."""
    code = ("import resource,subprocess,sys;"
            "subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,check=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", code] + cmd, stdout=subprocess.PIPE, env=GIT_ENV, check=True, **kw)
    return int(p.stdout.decode().strip())


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def store_bytes(store):
    """Every file of the store: packs, index, snapshot files, config (the lock files are empty)."""
    return du(store)


def run_failing(cmd):
    """Runs cmd, which must exit 1; returns (seconds, stdout + stderr)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=GIT_ENV)
    dt = time.perf_counter() - t
    if p.returncode != 1:
        sys.exit("expected exit 1, got %d: %s\n%s" % (p.returncode, " ".join(cmd), p.stdout.decode(errors="replace")))
    return dt, p.stdout.decode(errors="replace")


def copy_lacking_blobs(repo, dst, n):
    """A packed copy of repo (same refs) without n of its blobs (every 97th blob of rev-list's order)."""
    subprocess.run(["git", "init", "-q", "--bare", dst], check=True, env=GIT_ENV)
    listed = subprocess.run(["git", "-C", repo, "rev-list", "--objects", "--all"], capture_output=True, text=True, check=True, env=GIT_ENV).stdout.split("\n")
    ids = [l.split(" ")[0] for l in listed if l]
    kinds = subprocess.run(["git", "-C", repo, "cat-file", "--batch-check=%(objecttype)"], input="\n".join(ids) + "\n",
                           capture_output=True, text=True, check=True, env=GIT_ENV).stdout.split()
    blobs = [o for o, k in zip(ids, kinds) if k == "blob"]
    gone = set(blobs[7::97][:n])
    keep = "\n".join(o for o in ids if o not in gone) + "\n"
    subprocess.run(["git", "-C", repo, "pack-objects", "-q", "--window=10", "--depth=50",
                    os.path.join(dst, "objects", "pack", "pack")], input=keep, stdout=subprocess.DEVNULL,
                   text=True, check=True, env=GIT_ENV)
    refs = subprocess.run(["git", "-C", repo, "for-each-ref", "--format=%(objectname) %(refname)"], capture_output=True, text=True, check=True, env=GIT_ENV).stdout
    with open(os.path.join(dst, "packed-refs"), "w") as fh:
        fh.write(refs)
    head = subprocess.run(["git", "-C", repo, "symbolic-ref", "HEAD"], capture_output=True, text=True, env=GIT_ENV).stdout.strip()
    if head:
        subprocess.run(["git", "-C", dst, "symbolic-ref", "HEAD", head], check=True, env=GIT_ENV)
    return len(gone)


def pack_bytes(repo):
    out = subprocess.run(["git", "-C", repo, "count-objects", "-v"], capture_output=True, text=True, env=GIT_ENV, check=True).stdout
    kv = dict(line.split(": ") for line in out.splitlines())
    return int(kv["size-pack"]) * 1024 + int(kv["size"]) * 1024


def median(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--fork")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    runs = max(3, a.runs)
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(here)
    rv = a.bin or os.path.join(top, "target", "release", "repovault")
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=top, check=True)
    repo = os.path.abspath(a.repo)
    work = tempfile.mkdtemp(prefix="rv-vs-git-")
    rows = []
    try:
        def rvcmd(store, *args):
            return [rv, "--store", store, "-q"] + list(args)

        # 1. first sync vs git clone --mirror --no-local (alternating)
        t_sync, t_clone, stores = [], [], []
        for i in range(runs):
            st = os.path.join(work, "store%d" % i)
            cache = os.path.join(work, "cache%d" % i)
            run([rv, "--store", st, "init"])
            dt, _, _ = run(rvcmd(st, "sync", "file://" + repo, "--name", "bench", "--cache", cache))
            t_sync.append(dt)
            stores.append((st, cache))
            dst = os.path.join(work, "clone%d.git" % i)
            dt, _, _ = run(["git", "clone", "-q", "--mirror", "--no-local", repo, dst])
            t_clone.append(dt)
            shutil.rmtree(dst)
        st, cache = stores[0]
        for s, c in stores[1:]:
            shutil.rmtree(s)
            shutil.rmtree(c)
        rows.append(("first sync (s)", median(t_sync), "git clone --mirror --no-local", median(t_clone)))
        sb, pb = store_bytes(st), pack_bytes(repo)
        rows.append(("store bytes (every file)", sb, "git pack bytes", pb))

        # 2. unchanged re-sync
        t_unch = []
        for _ in range(runs):
            dt, _, _ = run(rvcmd(st, "sync", "file://" + repo, "--name", "bench", "--cache", cache))
            t_unch.append(dt)
        rows.append(("unchanged re-sync (s)", median(t_unch), "target", 0.050))

        # 3. 20 new commits in a copy of the repository
        copy = os.path.join(work, "copy.git")
        subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", repo, copy], check=True, env=GIT_ENV)
        wt = os.path.join(work, "wt")
        subprocess.run(["git", "clone", "-q", copy, wt], check=True, env=GIT_ENV)
        old = subprocess.run(["git", "-C", wt, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        files = subprocess.run(["git", "-C", wt, "ls-files"], capture_output=True, text=True, check=True).stdout.split()
        texts = [f for f in files if not f.endswith(".bin")][:20] or ["new.txt"]
        for n in range(20):
            f = os.path.join(wt, texts[n % len(texts)])
            with open(f, "a") as fh:
                fh.write("bench edit %d\n" % n)
            subprocess.run(["git", "-C", wt, "commit", "-qam", "bench %d" % n], check=True, env=GIT_ENV)
        subprocess.run(["git", "-C", wt, "push", "-q", "origin", "HEAD"], check=True, env=GIT_ENV)
        # the store must see the copy under the same name: re-point the store's repo at the copy
        st20 = os.path.join(work, "store20")
        shutil.copytree(st, st20)
        cache20 = os.path.join(work, "cache20")
        shutil.copytree(cache, cache20)
        before = store_bytes(st20)
        dt20, _, _ = run(rvcmd(st20, "sync", "file://" + copy, "--name", "bench", "--cache", cache20))
        added = store_bytes(st20) - before
        bundle = os.path.join(work, "b.bundle")
        subprocess.run(["git", "-C", copy, "bundle", "create", "-q", bundle, "%s..HEAD" % old], check=True, env=GIT_ENV)
        rows.append(("re-sync after 20 commits (s)", dt20, "", None))
        rows.append(("bytes added by 20 commits", added, "git bundle of them", os.path.getsize(bundle)))

        # 4. restore vs clone (alternating)
        t_rest, t_clone2 = [], []
        for i in range(runs):
            dst = os.path.join(work, "restore%d.git" % i)
            dt, _, _ = run(rvcmd(st, "restore", "--repo", "bench", "--latest", dst))
            t_rest.append(dt)
            shutil.rmtree(dst)
            dst = os.path.join(work, "clone%d.git" % i)
            dt, _, _ = run(["git", "clone", "-q", "--mirror", "--no-local", repo, dst])
            t_clone2.append(dt)
            shutil.rmtree(dst)
        rows.append(("restore --latest (s)", median(t_rest), "git clone --mirror --no-local", median(t_clone2)))

        # 5. verify --read-data vs git fsck --full
        t_ver, t_fsck = [], []
        for _ in range(runs):
            dt, _, _ = run(rvcmd(st, "verify", "--read-data"))
            t_ver.append(dt)
            dt, _, _ = run(["git", "-C", repo, "fsck", "--full", "--no-progress"])
            t_fsck.append(dt)
        rows.append(("verify --read-data (s)", median(t_ver), "git fsck --full", median(t_fsck)))

        # 6. peak RSS
        st_r = os.path.join(work, "store-rss")
        run([rv, "--store", st_r, "init"])
        rss_sync = peak_rss(rvcmd(st_r, "sync", "file://" + repo, "--name", "bench", "--cache", os.path.join(work, "cache-rss")))
        rss_rest = peak_rss(rvcmd(st_r, "restore", "--repo", "bench", "--latest", os.path.join(work, "rss.git")))
        rss_clone = peak_rss(["git", "clone", "-q", "--mirror", "--no-local", repo, os.path.join(work, "rssclone.git")])
        rows.append(("peak RSS sync (MiB)", rss_sync / 1024, "git clone (MiB)", rss_clone / 1024))
        rows.append(("peak RSS restore (MiB)", rss_rest / 1024, "", None))

        # 7. fork
        if a.fork:
            fork = os.path.abspath(a.fork)
            before = store_bytes(st)
            run(rvcmd(st, "sync", "file://" + fork, "--name", "bench-fork", "--cache", cache))
            rows.append(("bytes the fork adds", store_bytes(st) - before, "one repo's store bytes", sb))

        # 8. a copy lacking 20 blobs: refused, quickly, and the store unchanged
        broken = os.path.join(work, "broken.git")
        lost = copy_lacking_blobs(repo, broken, 20)
        t_ref, t_conn, grew, line_len = [], [], 0, 0
        for i in range(runs):
            st_b = os.path.join(work, "store-broken%d" % i)
            run([rv, "--store", st_b, "init"])
            before = store_bytes(st_b)
            dt, out = run_failing(rvcmd(st_b, "sync", "file://" + broken, "--name", "broken",
                                        "--cache", os.path.join(work, "cache-broken%d" % i)))
            t_ref.append(dt)
            grew = max(grew, store_bytes(st_b) - before)
            line_len = max(len(l) for l in out.splitlines() if "lacks" in l)
            p = subprocess.run(["git", "-C", broken, "fsck", "--connectivity-only", "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=GIT_ENV)
            t = time.perf_counter()
            subprocess.run(["git", "-C", broken, "fsck", "--connectivity-only", "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=GIT_ENV)
            t_conn.append(time.perf_counter() - t)
        rows.append(("refused sync, %d blobs lacking (s)" % lost, median(t_ref), "git fsck --connectivity-only", median(t_conn)))
        rows.append(("store bytes the refusal added", grew, "", None))
        rows.append(("its error line (characters)", line_len, "", None))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("repovault vs git: %s (%d runs, medians)" % (repo, runs))
    print("%-32s %14s   %-32s %14s %8s" % ("repovault", "value", "git / reference", "value", "ratio"))
    for name, v, ref, rv_ in rows:
        fmt = (lambda x: "%14.3f" % x) if isinstance(v, float) else (lambda x: "%14d" % x)
        if not rv_:
            ratio = "%8s" % "-"
        elif v / rv_ < 0.1:
            ratio = "%7.2f%%" % (100.0 * v / rv_)
        else:
            ratio = "%8.2fx" % (v / rv_)
        refs = ("%14.3f" % rv_ if isinstance(rv_, float) else "%14d" % rv_) if rv_ is not None else "%14s" % "-"
        print("%-32s %s   %-32s %s %s" % (name, fmt(v), ref, refs, ratio))


if __name__ == "__main__":
    main()
