#!/usr/bin/env python3
"""On the GPU machine: torch's FlashAttention-2 (SDPA flash backend) causal prefill timings, the
baseline of our prefill attention kernel (tests/gpu/test_cuda_attention.cpp prints ours in the
same format). Shapes: (batch, tokens, query heads, KV heads, head_dim). FLOPs counted as ours:
4 d nh per visible (query, key) pair, causal = T (T + 1) / 2 pairs per head and sequence.
Prints one JSON line per shape."""
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [(1, 1024, 16, 8, 128), (1, 4096, 16, 8, 128), (8, 4096, 32, 8, 128)]


def bench(b, t, nh, nkv, d, reps=20):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, nh, t, d, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(b, nkv, t, d, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(b, nkv, t, d, device="cuda", dtype=torch.bfloat16, generator=g)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        def run():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = 1e30
        for _ in range(reps):
            e0.record()
            run()
            e1.record()
            e1.synchronize()
            best = min(best, e0.elapsed_time(e1))
    flops = 4 * d * nh * b * t * (t + 1) / 2
    return best, flops / (best * 1e-3) / 1e12


def main():
    name = torch.cuda.get_device_name()
    for s in SHAPES:
        ms, tflops = bench(*s)
        print(json.dumps({"card": name, "impl": "torch SDPA flash (FA2)", "batch": s[0], "tokens": s[1],
                          "heads": f"{s[2]}/{s[3]}", "d": s[4], "ms": round(ms, 4), "tflops": round(tflops, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
