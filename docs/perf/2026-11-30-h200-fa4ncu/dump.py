import sys
sys.argv=sys.argv
exec(open("parse.py").read().split("fn=sys.argv[1]")[0])
fn,steps,out=sys.argv[1],float(sys.argv[2]),sys.argv[3]
for k in kernels(fn):
    if "bwd_ws" not in k["name"] and "Sm90" not in k["name"]: continue
    with open(out,"w") as f:
        for r in k["rows"]:
            n=num(r["Instructions Executed"])/steps; s=num(r["Warp Stall Sampling (All Samples)"])
            f.write("%s %7.2f %6d  %s\n"%(r["Address"][-5:],n,s,r["Source"].strip()))
