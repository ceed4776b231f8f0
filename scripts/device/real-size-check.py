#!/usr/bin/env python3
"""On the GPU machine: compare our CPU forward of a real-size random Qwen3-0.6B with transformers.

Usage: real-size-check.py MODEL_DIR NANOVLLM_BINARY. transformers runs in float32 on the
bf16 weights (on the GPU, TF32 off), which is what our CPU backend computes.
"""
import subprocess
import sys

import numpy as np
import torch
from transformers import Qwen3ForCausalLM

model_dir, binary = sys.argv[1], sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
g = torch.Generator().manual_seed(7)
prompt = torch.randint(0, 151936, (48,), generator=g).tolist()
model = Qwen3ForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").cuda().eval()
with torch.no_grad():
    ref = model(input_ids=torch.tensor([prompt]).cuda(), use_cache=False).logits[0].float().cpu().numpy()
out = subprocess.run([binary, "predict", "--model", model_dir, "--tokens", ",".join(map(str, prompt)),
                      "--logits-out", "/tmp/ours.f32"], capture_output=True, text=True)
print(out.stdout, out.stderr)
ours = np.fromfile("/tmp/ours.f32", dtype=np.float32).reshape(ref.shape)
rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
same = (ours.argmax(-1) == ref.argmax(-1)).mean()
print(f"real-size Qwen3-0.6B, {len(prompt)} tokens: rel error {rel:.3e}, argmax agreement {same * 100:.1f}%")
sys.exit(0 if rel < 1e-4 and same == 1.0 else 1)
