"""join.py - one record per shape: fa4cp (bench_attn JSON) beside FA4, cuDNN
and FA-2 (fa4_anchor.py JSON) of the same device call, and the matmul rate.
usage: python3 docs/perf/join.py DIR  ->  docs/perf/kernels-fwd.jsonl, kernels-bwd.jsonl
(DIR: the outputs of one measuring call: gpu.txt, matmul.json, fa4cp*.jsonl, anchor.jsonl)"""
import json
import os
import sys

d = sys.argv[1]
date = open(os.path.join(d, "gpu.txt")).read().split()[0]
mm = json.load(open(os.path.join(d, "matmul.json")))["matmul_bf16_tflops"]
ours = [json.loads(l) for f in ("fa4cp.jsonl", "fa4cp_hd.jsonl") for l in open(os.path.join(d, f)) if l.strip()]
anch = [json.loads(l) for l in open(os.path.join(d, "anchor.jsonl")) if l.strip()]


def key_ours(r):
    return ("varlen",) if r["varlen"] == 2 else (r["d"], r["dv"], r["s"], int(r["causal"]))


def key_anchor(a):
    return ("varlen",) if "varlen" in a else (a["d"], a.get("dv", a["d"]), a["S"], a["causal"])


amap = {key_anchor(a): a for a in anch if "d" in a or "varlen" in a}
out = {"fwd": [], "bwd": []}
for r in ours:
    a = amap.get(key_ours(r))
    if a is None:
        continue
    if r["varlen"] == 2:
        name = "FA4 varlen batch (GQA 32/8, causal)"
    else:
        dd = "d%d" % r["d"] if r["d"] == r["dv"] else "d%d/%d" % (r["d"], r["dv"])
        name = "%s S%d %s" % (dd, r["s"], "causal" if r["causal"] else "dense")
    for way in ("fwd", "bwd"):
        mine = r.get(way + "_tflops", 0)
        if not mine:
            continue
        rec = {"shape": name, "d": r["d"], "dv": r["dv"], "S": r["s"], "causal": int(r["causal"]), "B": r["B"],
               "H": r["H"], "Hk": r["Hk"], "gpu": "NVIDIA H200", "date": date, "matmul_bf16_tflops": mm,
               "fa4cp": mine}
        if way == "bwd" and r.get("bwd_det_tflops"):
            rec["fa4cp_det"] = r["bwd_det_tflops"]
        for k in ("fa4", "cudnn", "flash2"):
            if a.get(k + "_" + way) is not None:
                rec[k] = a[k + "_" + way]
        best = max(rec.get("fa4", 0), rec.get("cudnn", 0))
        rec["ratio_vs_best"] = round(mine / best, 3) if best else None
        rec["ratio_vs_fa4"] = round(mine / rec["fa4"], 3) if rec.get("fa4") else None
        if "fa4cp_det" in rec:
            rec["det_over_bwd"] = round(rec["fa4cp_det"] / mine, 3)
        rec["frac_matmul"] = round(mine / mm, 3)
        out[way].append(rec)
top = os.path.join(d, "..")
for way in ("fwd", "bwd"):
    with open(os.path.join(top, "kernels-%s.jsonl" % way), "w") as f:
        for rec in out[way]:
            f.write(json.dumps(rec) + "\n")
    print(way, len(out[way]), "records")
