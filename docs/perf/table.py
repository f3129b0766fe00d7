"""usage: python3 docs/perf/table.py docs/perf -> the kernel table of docs/performance.md from
docs/perf/kernels-{fwd,bwd}.jsonl"""
import json, os, sys
top = sys.argv[1]
fw = {r["shape"]: r for r in map(json.loads, open(os.path.join(top, "kernels-fwd.jsonl")))}
bw = {r["shape"]: r for r in map(json.loads, open(os.path.join(top, "kernels-bwd.jsonl")))}
f = lambda x: "-" if x is None else ("%.1f" % x)
g = lambda x: "-" if x is None else ("%.2f" % x)
print("| shape | fa4cp fwd | FA4 fwd | cuDNN fwd | FA2 fwd | fwd / best | fwd / FA4 | fa4cp bwd | det bwd | FA4 bwd | cuDNN bwd | FA2 bwd | bwd / best | bwd / FA4 | det / bwd |")
print("|---|" + "---|" * 15)
for k in fw:
    a, b = fw[k], bw.get(k, {})
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        k, f(a.get("fa4cp")), f(a.get("fa4")), f(a.get("cudnn")), f(a.get("flash2")), g(a.get("ratio_vs_best")),
        g(a.get("ratio_vs_fa4")), f(b.get("fa4cp")), f(b.get("fa4cp_det")), f(b.get("fa4")), f(b.get("cudnn")),
        f(b.get("flash2")), g(b.get("ratio_vs_best")), g(b.get("ratio_vs_fa4")), g(b.get("det_over_bwd"))))
