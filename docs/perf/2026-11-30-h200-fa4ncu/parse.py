import csv, sys, re, collections
def kernels(fn):
    out=[]; cur=None; hdr=None
    with open(fn) as f:
        for row in csv.reader(f):
            if not row: continue
            if row[0]=="Kernel Name": cur={"name":row[1],"rows":[]}; out.append(cur); hdr=None; continue
            if row[0]=="Address": hdr=row; continue
            if hdr and cur is not None: cur["rows"].append(dict(zip(hdr,row)))
    return out
def num(x):
    try: return float(x.replace(",",""))
    except: return 0.0
def op(src):
    s=src.strip()
    s=re.sub(r'^@!?U?P[T0-9]+\s+','',s)
    return s.split()[0] if s else "?"
fn=sys.argv[1]; steps=float(sys.argv[2])
for k in kernels(fn):
    if "bwd_ws" not in k["name"] and "Sm90" not in k["name"]: continue
    tot=0; samp=0; ops=collections.Counter(); sops=collections.Counter()
    base=collections.Counter()
    for r in k["rows"]:
        n=num(r["Instructions Executed"]); s=num(r["Warp Stall Sampling (All Samples)"])
        o=op(r["Source"]); b=o.split('.')[0]
        ops[o]+=n; base[b]+=n; sops[b]+=s; tot+=n; samp+=s
    print(k["name"][:90]); print("instructions total %.3g, per step %.0f (warp instr), samples %d"%(tot,tot/steps,samp))
    for b,n in base.most_common(45): print("  %-12s %8.1f /step  %5.1f%%  samples %5.1f%%"%(b,n/steps,100*n/tot,100*sops[b]/max(samp,1)))
