#!/usr/bin/env python3
"""Deterministic generator of realistic git repositories for benchmarks.

    benches/gen-repo.py OUT.git [--seed 1] [--commits 3000] [--files 300]
                        [--binaries 3] [--binary-mib 3] [--fork FORK.git --fork-commits 30]

Builds a bare repository with `git fast-import` from a seed: thousands of
commits over hundreds of text files where each commit edits a few lines of a
few files, some renames, merges of short side branches, annotated tags, a few
binary files of several MiB edited in place, then `git repack -adf` so the
pack is deltified the way a real server's is. With --fork, a second bare
repository shares all of that history and adds its own commits (to measure
deduplication across repositories). The same arguments always give the same
object ids.
"""
import argparse
import os
import random
import subprocess
import sys

WORDS = ("fn let mut struct impl pub use match return self Some None Ok Err "
         "value index store pack chunk object tree commit blob tag read write "
         "error result option vec map iter into from clone len push").split()


def text_line(rng):
    n = rng.randint(3, 12)
    indent = "    " * rng.randint(0, 3)
    return indent + " ".join(rng.choice(WORDS) for _ in range(n)) + (";" if rng.random() < 0.6 else "")


class Stream:
    def __init__(self, proc):
        self.out = proc.stdin
        self.mark = 0

    def next_mark(self):
        self.mark += 1
        return self.mark

    def blob(self, data):
        m = self.next_mark()
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (m, len(data)))
        self.out.write(data)
        self.out.write(b"\n")
        return m

    def commit(self, ref, when, msg, parent, merge, changes):
        m = self.next_mark()
        msg = msg.encode()
        ident = b"Gen Erator <gen@example.com> %d +0000" % when
        self.out.write(b"commit %s\nmark :%d\nauthor %s\ncommitter %s\ndata %d\n%s\n"
                       % (ref.encode(), m, ident, ident, len(msg), msg))
        if parent:
            self.out.write(b"from :%d\n" % parent)
        if merge:
            self.out.write(b"merge :%d\n" % merge)
        for c in changes:
            self.out.write(c)
        self.out.write(b"\n")
        return m

    def tag(self, name, when, target, msg):
        msg = msg.encode()
        self.out.write(b"tag %s\nfrom :%d\ntagger Gen Erator <gen@example.com> %d +0000\ndata %d\n%s\n"
                       % (name.encode(), target, when, len(msg), msg))


def generate(out, seed, commits, nfiles, nbin, bin_mib, fork=None, fork_commits=0):
    rng = random.Random(seed)
    subprocess.run(["git", "init", "-q", "--bare", out], check=True)
    proc = subprocess.Popen(["git", "-C", out, "fast-import", "--quiet", "--done"], stdin=subprocess.PIPE)
    s = Stream(proc)
    when = 1_600_000_000
    files = {}
    dirs = ["src", "src/store", "src/sync", "docs", "tests", "benches", "lib/a", "lib/b"]
    for i in range(nfiles):
        path = "%s/file_%04d.%s" % (rng.choice(dirs), i, rng.choice(["rs", "md", "txt", "toml"]))
        files[path] = [text_line(rng) for _ in range(rng.randint(30, 250))]
    binaries = {}
    for i in range(nbin):
        size = bin_mib * (1 << 20) + rng.randint(0, 1 << 19)
        binaries["assets/blob_%d.bin" % i] = bytearray(rng.randbytes(size))

    def full_tree():
        ch = []
        for p, lines in files.items():
            m = s.blob(("\n".join(lines) + "\n").encode())
            ch.append(b"M 100644 :%d %s\n" % (m, p.encode()))
        for p, data in binaries.items():
            m = s.blob(bytes(data))
            ch.append(b"M 100644 :%d %s\n" % (m, p.encode()))
        return ch

    head = s.commit("refs/heads/main", when, "initial import", None, None, full_tree())
    side_open = None
    for c in range(1, commits):
        when += rng.randint(60, 7200)
        changes = []
        for path in rng.sample(sorted(files), k=min(len(files), rng.randint(1, 3))):
            lines = files[path]
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                i = rng.randrange(len(lines) or 1)
                if op < 0.5 and lines:
                    lines[i] = text_line(rng)
                elif op < 0.8:
                    lines.insert(i, text_line(rng))
                elif len(lines) > 5:
                    del lines[i]
            m = s.blob(("\n".join(lines) + "\n").encode())
            changes.append(b"M 100644 :%d %s\n" % (m, path.encode()))
        if c % 97 == 0:
            old = rng.choice(sorted(files))
            new = "%s/renamed_%d_%s" % (rng.choice(dirs), c, old.rsplit("/", 1)[1])
            files[new] = files.pop(old)
            changes = [ch for ch in changes if not ch.endswith(b" " + old.encode() + b"\n")]
            changes.append(b"D %s\n" % old.encode())
            m = s.blob(("\n".join(files[new]) + "\n").encode())
            changes.append(b"M 100644 :%d %s\n" % (m, new.encode()))
        if binaries and c % 150 == 0:
            p = rng.choice(sorted(binaries))
            data = binaries[p]
            for _ in range(3):
                off = rng.randrange(len(data) - 64)
                data[off:off + 64] = rng.randbytes(64)
            m = s.blob(bytes(data))
            changes.append(b"M 100644 :%d %s\n" % (m, p.encode()))
        if side_open is None and c % 101 == 0:
            # a side branch of two commits, merged a few commits later
            side = s.commit("refs/heads/feature-%d" % c, when, "feature %d" % c, head, None, changes)
            when += 60
            side = s.commit("refs/heads/feature-%d" % c, when, "feature %d part 2" % c, side, None, [])
            side_open = (side, c)
            continue
        if side_open and c - side_open[1] >= 3:
            head = s.commit("refs/heads/main", when, "merge feature %d" % side_open[1], head, side_open[0], changes)
            side_open = None
        else:
            head = s.commit("refs/heads/main", when, "change %d" % c, head, None, changes)
        if c % 250 == 0:
            s.tag("v0.%d" % (c // 250), when, head, "release 0.%d" % (c // 250))
    s.out.write(b"done\n")
    s.out.close()
    if proc.wait() != 0:
        sys.exit("git fast-import failed")
    subprocess.run(["git", "-C", out, "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    subprocess.run(["git", "-C", out, "repack", "-adfq", "--depth=50", "--window=10"], check=True)
    subprocess.run(["git", "-C", out, "prune-packed"], check=True)

    if fork:
        subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", out, fork], check=True)
        proc = subprocess.Popen(["git", "-C", fork, "fast-import", "--quiet", "--done"], stdin=subprocess.PIPE)
        s2 = Stream(proc)
        tip = subprocess.run(["git", "-C", fork, "rev-parse", "refs/heads/main"], capture_output=True, text=True, check=True).stdout.strip()
        parent_line = b"from %s\n" % tip.encode()
        for c in range(fork_commits):
            when += rng.randint(60, 7200)
            path = rng.choice(sorted(files))
            files[path][rng.randrange(len(files[path]))] = text_line(rng)
            m = s2.blob(("\n".join(files[path]) + "\n").encode())
            msg = ("fork change %d" % c).encode()
            ident = b"Fork Er <fork@example.com> %d +0000" % when
            s2.out.write(b"commit refs/heads/main\nmark :%d\nauthor %s\ncommitter %s\ndata %d\n%s\n"
                         % (s2.next_mark(), ident, ident, len(msg), msg))
            if c == 0:
                s2.out.write(parent_line)
            s2.out.write(b"M 100644 :%d %s\n\n" % (m, path.encode()))
        s2.out.write(b"done\n")
        s2.out.close()
        if proc.wait() != 0:
            sys.exit("git fast-import (fork) failed")
        subprocess.run(["git", "-C", fork, "repack", "-adfq", "--depth=50", "--window=10"], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--commits", type=int, default=3000)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--binaries", type=int, default=3)
    ap.add_argument("--binary-mib", type=int, default=3)
    ap.add_argument("--fork")
    ap.add_argument("--fork-commits", type=int, default=30)
    a = ap.parse_args()
    if os.path.exists(a.out):
        sys.exit("%s exists: choose a new path" % a.out)
    generate(a.out, a.seed, a.commits, a.files, a.binaries, a.binary_mib, a.fork, a.fork_commits)


if __name__ == "__main__":
    main()
