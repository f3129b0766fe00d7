"""One FA4 backward at (d, S, causal), bf16, B*S = 32k, H = 2048/d, for ncu."""
import os, sys, site, torch
site.addsitedir(os.environ["FA4_SITE"])
from flash_attn.cute import flash_attn_func
d, S, causal = (int(x) for x in sys.argv[1].split(","))
B, H = 32768 // S, 2048 // d
q, k, v = (torch.randn(B, S, H, d, device="cuda", dtype=torch.bfloat16).requires_grad_() for _ in range(3))
o = flash_attn_func(q, k, v, causal=bool(causal)); o = o[0] if isinstance(o, tuple) else o
g = torch.randn_like(o)
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2):
    torch.autograd.grad(o, (q, k, v), g, retain_graph=True)
torch.cuda.synchronize(); print("ok")
