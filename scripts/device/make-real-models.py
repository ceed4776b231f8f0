#!/usr/bin/env python3
"""On the GPU machine: real-size models with random weights, and transformers' logits.

Usage: make-real-models.py OUT_DIR [0.6b 1.7b llama-3.2-1b qwen2.5-0.5b ...]
For each size: OUT_DIR/qwen3-<size>/ (OUT_DIR/<name>/ for the Llama ones) holds the model (bf16 safetensors, the published config
with random weights from transformers' own initialisation, seed 0) and reference.safetensors:
prompt.<i> (int64 token ids), logits.<i> (transformers' bf16 forward on this GPU, sdpa
attention), logits_eager.<i> (the same with its eager attention) and logits_f32.<i> (its float32 forward of the same bf16 weights, TF32 off: the
exact answer a bf16 implementation approximates). It also prints how far transformers' bf16
forward is from its float32 one: the noise floor of any bf16 implementation; and how far its
two bf16 attention paths (eager and sdpa) are from each other: what "the same bf16 forward"
can mean between two correct implementations.
"""
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

PUBLISHED = {  # from the Hugging Face config.json of Qwen/Qwen3-*
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, tie_word_embeddings=True),
    "1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, tie_word_embeddings=True),
}
# Llama 3.2 1B's published config (meta-llama/Llama-3.2-1B): the real 128,256-token vocabulary,
# head_dim 64, and Llama 3's rope scaling at factor 32, whose rescaled frequencies act at every
# position (the prompts below are short; the low-frequency dimensions are divided by 32 anyway).
LLAMA = {
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                         hidden_act="silu", attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
                         bos_token_id=128000, eos_token_id=128001, torch_dtype="bfloat16"),
}
# Qwen2.5 0.5B's published config (Qwen/Qwen2.5-0.5B): q/k/v biases, 14 query heads over 2 KV
# heads (a group of 7: not a power of two), head_dim 64, tied embeddings.
QWEN2 = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, sliding_window=32768, max_window_layers=21,
                         use_sliding_window=False, hidden_act="silu", tie_word_embeddings=True,
                         bos_token_id=151643, eos_token_id=151643, torch_dtype="bfloat16"),
}
COMMON = dict(vocab_size=151936, head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0,
              rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, bos_token_id=151643,
              eos_token_id=151645, torch_dtype="bfloat16")
LENGTHS = [17, 64, 200, 333]


def main():
    out_root = Path(sys.argv[1])
    sizes = sys.argv[2:] or ["0.6b", "1.7b"]
    for size in sizes:
        t0 = time.time()
        if size in LLAMA:
            d = out_root / size
            cfg, Model = LlamaConfig(**LLAMA[size]), LlamaForCausalLM
        elif size in QWEN2:
            d = out_root / size
            cfg, Model = Qwen2Config(**QWEN2[size]), Qwen2ForCausalLM
        else:
            d = out_root / f"qwen3-{size}"
            cfg, Model = Qwen3Config(**PUBLISHED[size], **COMMON), Qwen3ForCausalLM
        d.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = Model(cfg)
        model = model.to(torch.bfloat16).eval()
        model.save_pretrained(d, safe_serialization=True)
        # Reload, as a user would: `.to(bfloat16)` above also rounds the rotary inv_freq buffer
        # to bf16 (an angle error growing with position: ~0.6 rad at position 333), which
        # from_pretrained does not do. The reference must be transformers as users run it.
        del model
        model = Model.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
        print(json.dumps({"model": str(d), "rotary_inv_freq_dtype": str(model.model.rotary_emb.inv_freq.dtype)}),
              flush=True)
        g = torch.Generator().manual_seed(7)
        prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=g) for n in LENGTHS]
        ref, bf16_logits = {}, []
        with torch.no_grad():
            for i, p in enumerate(prompts):
                logits = model(input_ids=p[None].cuda(), use_cache=False).logits[0]
                bf16_logits.append(logits.float())
                ref[f"prompt.{i}"] = p.to(torch.int64).contiguous()
                ref[f"logits.{i}"] = logits.to(torch.bfloat16).cpu().contiguous()
            # transformers against itself: the same bf16 weights through its eager attention.
            del model
            model = Model.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
            num = den = 0.0
            same = rows = 0
            for i, (p, b) in enumerate(zip(prompts, bf16_logits)):
                e = model(input_ids=p[None].cuda(), use_cache=False).logits[0]
                ref[f"logits_eager.{i}"] = e.to(torch.bfloat16).cpu().contiguous()
                e = e.float()
                num += (e - b).pow(2).sum().item()
                den += b.pow(2).sum().item()
                same += (e.argmax(-1) == b.argmax(-1)).sum().item()
                rows += e.shape[0]
            eager_vs_sdpa = {"hf_bf16_eager_vs_hf_bf16_sdpa_rel_err": (num / den) ** 0.5,
                             "hf_bf16_eager_vs_hf_bf16_sdpa_argmax_agree": same / rows}
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            del model
            model = Model.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa").cuda().eval()
            num = den = 0.0
            same = rows = 0
            for i, (p, b) in enumerate(zip(prompts, bf16_logits)):
                f = model(input_ids=p[None].cuda(), use_cache=False).logits[0].float()
                ref[f"logits_f32.{i}"] = f.cpu().contiguous()
                num += (f - b).pow(2).sum().item()
                den += f.pow(2).sum().item()
                same += (f.argmax(-1) == b.argmax(-1)).sum().item()
                rows += f.shape[0]
            save_file(ref, str(d / "reference.safetensors"))
        print(json.dumps({"model": str(d), "tokens": sum(LENGTHS),
                          "hf_f32_vs_hf_bf16_rel_err": (num / den) ** 0.5,
                          "hf_f32_vs_hf_bf16_argmax_agree": same / rows,
                          **eager_vs_sdpa,
                          "seconds": round(time.time() - t0, 1)}), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
