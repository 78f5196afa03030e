#!/usr/bin/env python3
"""Format 3 design measurement: recompresses a format 2 store's chunk payloads in blocks.

    python3 benches/blocks.py STORE   (needs the zstandard package: pip install zstandard)
"""
import sqlite3, sys, zstandard, os
store=sys.argv[1]
c=sqlite3.connect(os.path.join(store,'index.sqlite'))
packs={pid:(name,kind) for pid,name,kind in c.execute("select id,name,kind from packs")}
rows=c.execute("select c.pack,c.offset,c.stored_len,c.raw_len,c.base is not null,o.kind from chunks c join objects o on o.chunk=c.id order by c.pack,c.offset").fetchall()
files={}
payloads={1:[],2:[]}
stored={1:0,2:0}
dctx=zstandard.ZstdDecompressor()
for pack,off,sl,rl,isdelta,okind in rows:
    name,kind=packs[pack]
    f=files.get(pack) or open(os.path.join(store,'packs',name+'.pack'),'rb'); files[pack]=f
    f.seek(off); b=f.read(sl)
    stored[kind]+=sl
    p=dctx.decompress(b)
    payloads[kind].append((okind,isdelta,p))
tot={k:sum(os.path.getsize(os.path.join(store,'packs',n+'.pack')) for n,kk in packs.values() if kk==k) for k in (1,2)}
print("pack files bytes by kind (1 tree,2 data):",tot, " chunk bytes:",stored)
for kind in (1,2):
    ps=payloads[kind]
    raw=sum(len(p) for _,_,p in ps)
    print(f"kind {kind}: {len(ps)} objects, payload (deltas/full) {raw} bytes, per-object zstd frames {stored[kind]}")
    for level in (3,9,19):
        for bs in (16<<10, 64<<10, 256<<10, 1<<20):
            cctx=zstandard.ZstdCompressor(level=level)
            out=0; buf=bytearray()
            for _,_,p in ps:
                buf+=p
                if len(buf)>=bs:
                    out+=len(cctx.compress(bytes(buf))); buf=bytearray()
            if buf: out+=len(cctx.compress(bytes(buf)))
            print(f"   level {level:2d} blocks {bs>>10:5d} KiB: {out} ({out/stored[kind]:.2f}x of frames)")
