import sys, re, glob, os, collections
d = sys.argv[1]
rows = collections.OrderedDict()
def key(cells): return "d%s S%s %s" % (cells[0], cells[1], "causal" if cells[4] == "yes" else "dense")
for f in sorted(glob.glob(os.path.join(d, "*_r*.txt"))):
    name = os.path.basename(f)[:-4]
    src, r = name.split("_")
    for line in open(f):
        m = re.match(r"(?:tuning (\S+)\s+)?\|(.*)\|\s*$", line.strip())
        if not m or "d (/dv)" in line: continue
        cells = [c.strip() for c in m.group(2).split("|")]
        if len(cells) < 10: continue
        var = "main" if src == "main" else "t" + (m.group(1) or "?")
        rows.setdefault(key(cells), collections.defaultdict(list))[var].append(float(cells[9]))
vars_ = sys.argv[2].split(",") if len(sys.argv) > 2 else ["main", "t0", "t256", "t128"]
base = sys.argv[3] if len(sys.argv) > 3 else "t128"
mean = lambda x: sum(x) / len(x) if x else float("nan")
print("| shape | " + " | ".join(vars_) + " | " + " | ".join("%s/%s" % (a, base) for a in vars_ if a != base) + " |")
print("|---|" + "---|" * (2 * len(vars_) - 1))
for k, v in rows.items():
    mm = mean(v[base])
    print("| %s | %s | %s |" % (k, " | ".join(" / ".join("%.1f" % x for x in v[a]) for a in vars_),
          " | ".join("%.3f" % (mean(v[a]) / mm) for a in vars_ if a != base)))
