#!/usr/bin/env python3
"""Trains nanovllm's built-in model, models/nanovllm-tiny: a Qwen3 of a few million parameters
with its own byte-level BPE tokenizer, on the Python source code of the machine it runs on.

Runs on the GPU machine (torch, transformers, tokenizers, numpy; see ../shared/DEVICE.md), never
in CI:

    python3 scripts/device/train-builtin-model.py $OUT/tiny --minutes 4

Steps, each printed (and logged to OUT_DIR/train.log):
  1. corpus: the .py files of the Python standard library and of every site-packages folder
     (test folders, generated data tables, files over 1 MB, non-UTF-8 files and exact duplicates
     left out), the standard library first, then each package up to a cap so that no one
     package dominates; ordered by the hash of each file's path, and split by that hash: about
     1% of the files are held out.
  2. tokenizer: byte-level BPE (the `tokenizers` library: ByteLevel pre-tokenizer without a
     prefix space, ByteLevel decoder, no normalizer or post-processor), 4,096 tokens with
     <|endoftext|> as id 0, trained on the training files; every file is then encoded, and files
     are joined with <|endoftext|>.
  3. model: transformers' Qwen3ForCausalLM (float32 weights, bf16 autocast, AdamW, warmup then
     cosine decay over the wall-clock budget, random 512-token windows), trained for --minutes;
     torch.compile when it works, eager otherwise.
  4. save: the Hugging Face folder in bfloat16 (config.json, generation_config.json,
     model.safetensors, tokenizer.json, tokenizer_config.json).
  5. reference: the saved bf16 weights loaded back in float32 on the CPU (eager attention, the
     arithmetic nanovllm's CPU backend does): the mean next-token cross-entropy of fixed held-out
     sequences, and transformers' greedy completions of a few prompts.

Output (7 files, each under 16 MiB, so that the device tool returns them all):
  OUT_DIR/model/*          -> models/nanovllm-tiny/
  OUT_DIR/reference.json   -> tests/fixtures/builtin/reference.json (held-out sequences and
                              losses, greedy samples, the training summary, versions)
  OUT_DIR/train.log           the whole log (the numbers for models/README.md)
The last line printed is `SUMMARY {json}`.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import site
import sys
import sysconfig
import time

import numpy as np
import torch
import torch.nn.functional as F

EOT = "<|endoftext|>"
MIB = 1 << 20
RETURN_LIMIT = 16 * MIB      # the device tool returns files of at most 16 MiB
FOLDER_LIMIT = 30 * 1000**2  # the model folder must stay under 30 MB
PROMPTS = ["def fibonacci(n):", "import os\n", "class Stack:", "def is_prime(n):\n",
           "for i in range(10):", "    def __init__(self, "]
# Folders of tests, vendored copies, or other roots (each site-packages folder is walked on its own).
SKIP_DIRS = {"test", "tests", "testing", "idle_test", "__pycache__", "site-packages", "dist-packages",
             "node_modules", "_vendor"}
SKIP_STDLIB = {"encodings", "pydoc_data", "ensurepip", "turtledemo"}
T0 = time.time()


class Tee:
    """Everything printed also goes to OUT_DIR/train.log."""

    def __init__(self, path):
        self.file = open(path, "w", encoding="utf-8")
        self.stdout = sys.stdout

    def write(self, s):
        self.stdout.write(s)
        self.file.write(s)
        self.stdout.flush()
        self.file.flush()

    def flush(self):
        self.stdout.flush()
        self.file.flush()


def log(*args):
    print(f"[{time.time() - T0:7.1f}s]", *args, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Corpus


def source_roots():
    """(label, folder) for the standard library and each site-packages folder, without repeats."""
    paths = sysconfig.get_paths()
    stdlib = os.path.realpath(paths["stdlib"])
    roots, seen = [("stdlib", stdlib)], {stdlib}
    candidates = [paths.get("purelib"), paths.get("platlib")]
    try:
        candidates += site.getsitepackages()
    except AttributeError:  # some virtualenvs' site module
        pass
    try:
        candidates.append(site.getusersitepackages())
    except AttributeError:
        pass
    for p in candidates:
        if p and os.path.isdir(p) and os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            roots.append(("site", os.path.realpath(p)))
    return roots


def reject_reason(raw, max_bytes):
    """Why a file is left out (None: kept), and its text."""
    if len(raw) > max_bytes:
        return "over 1 MB", None
    if len(raw) < 64:
        return "under 64 bytes", None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8", None
    text = text.replace("\r\n", "\n")
    if "\x00" in text:
        return "NUL bytes", None
    if EOT in text:  # it would be read as the document separator
        return "contains " + EOT, None
    lines = text.split("\n")
    if max(len(l) for l in lines) > 1000 or len(text) / len(lines) > 100:
        return "generated (long lines)", None
    return None, text


def list_sources():
    """(key, group, path, relpath, size) of every candidate .py file, sorted by key: the SHA-256 of
    its path inside its root (deterministic, and needs no file read)."""
    files = []
    for kind, root in source_roots():
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            top = None if rel_dir == "." else rel_dir.split(os.sep)[0]
            dirnames[:] = sorted(
                d for d in dirnames
                if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith((".dist-info", ".egg-info"))
                and not (kind == "stdlib" and rel_dir == "." and d in SKIP_STDLIB))
            for name in sorted(filenames):
                if not name.endswith(".py") or name.endswith("_pb2.py"):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    size = os.path.getsize(path)
                except OSError:
                    continue
                rel = os.path.relpath(path, root)
                group = "stdlib" if kind == "stdlib" else (top if top is not None else name[:-3])
                files.append((hashlib.sha256(rel.encode("utf-8", "replace")).hexdigest(), group, path, rel, size))
    files.sort()
    return files


def select_and_split(files, args):
    """The standard library first, then the packages, each taken in key order under its cap
    (--stdlib-mb, --package-mb) until the total cap (--corpus-mb); files are read only when
    they could fit, and left out when reject_reason says so or their text was already taken.
    Returns the training and held-out files (about --heldout-percent of them, chosen by key), in
    key order (a mix of packages), the bytes taken from each group, and what was skipped."""
    used, total, taken, chosen, skipped = {}, 0, set(), [], {}
    total_cap = int(args.corpus_mb * 1e6)
    for stdlib_pass in (True, False):
        for key, group, path, rel, size in files:
            if (group == "stdlib") != stdlib_pass:
                continue
            cap = int((args.stdlib_mb if stdlib_pass else args.package_mb) * 1e6)
            if used.get(group, 0) + size > cap or total + size > total_cap:
                continue
            try:
                with open(path, "rb") as f:
                    raw = f.read(args.max_file_bytes + 1)
            except OSError:
                skipped["unreadable"] = skipped.get("unreadable", 0) + 1
                continue
            why, text = reject_reason(raw, args.max_file_bytes)
            if why is None:
                sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
                why = "duplicate" if sha in taken else None
            if why:
                skipped[why] = skipped.get(why, 0) + 1
                continue
            taken.add(sha)
            nbytes = len(text.encode("utf-8"))
            used[group] = used.get(group, 0) + nbytes
            total += nbytes
            chosen.append({"key": key, "sha": sha, "group": group, "path": rel, "text": text, "bytes": nbytes})
    chosen.sort(key=lambda d: d["key"])
    heldout = [d for d in chosen if int(d["key"][:8], 16) % 100 < args.heldout_percent]
    train = [d for d in chosen if int(d["key"][:8], 16) % 100 >= args.heldout_percent]
    return train, heldout, used, skipped


# ---------------------------------------------------------------------------------------------
# 2. Tokenizer


def train_tokenizer(train_docs, args):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts, size = [], 0
    for d in train_docs:
        if size >= args.tokenizer_mb * 1e6:
            break
        texts.append(d["text"])
        size += d["bytes"]
    tok.train_from_iterator(texts, trainer, length=len(texts))
    return tok, size


def write_tokenizer(tok, model_dir, max_len):
    tok.save(os.path.join(model_dir, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
              "pad_token": EOT, "unk_token": None, "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "model_max_length": max_len}
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def encode_docs(tok, docs, chunk=2000):
    """Token ids of each document (numpy int32), with the library's multithreaded batch encode."""
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    out = []
    for i in range(0, len(docs), chunk):
        for e in encode([d["text"] for d in docs[i:i + chunk]]):
            out.append(np.asarray(e.ids, dtype=np.int32))
    return out


def join_docs(ids, eot):
    """The documents as one stream, each followed by <|endoftext|>."""
    parts = []
    for a in ids:
        parts.append(a)
        parts.append(np.array([eot], dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# 3. Model and training


def make_config(args, vocab, eot):
    from transformers import Qwen3Config
    return Qwen3Config(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                       num_hidden_layers=args.layers, num_attention_heads=args.heads,
                       num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                       max_position_embeddings=args.max_positions, rms_norm_eps=1e-6, rope_theta=10000.0,
                       hidden_act="silu", attention_bias=False, attention_dropout=0.0, use_sliding_window=False,
                       tie_word_embeddings=True, initializer_range=0.02, bos_token_id=eot, eos_token_id=eot,
                       pad_token_id=eot)


def is_tied(model):
    return model.get_input_embeddings().weight is model.get_output_embeddings().weight


def tie_embeddings(model):
    """The lm_head must share the embedding's tensor while training: the saved checkpoint holds
    only the embedding, and loading ties the head to it."""
    if not is_tied(model):
        model.tie_weights()
    if not is_tied(model):
        model.get_output_embeddings().weight = model.get_input_embeddings().weight


def count_params(model):
    """Distinct parameters (the tied embedding once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            n += p.numel()
    return n


def make_optimizer(model, args, device):
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError) as e:
            log("fused AdamW unavailable:", e)
    return torch.optim.AdamW(groups, **kw), "plain"


def lr_at(step, frac, args):
    """Linear warmup over the first steps, then cosine decay to lr_min over the time budget."""
    warm = min(1.0, (step + 1) / args.warmup)
    frac = min(max(frac, 0.0), 1.0)
    return args.lr * warm * (args.lr_min + (1 - args.lr_min) * 0.5 * (1 + math.cos(math.pi * frac)))


class Trainer:
    def __init__(self, model, args, device, train_stream, heldout_stream):
        self.model, self.args, self.device = model, args, device
        self.vocab = model.config.vocab_size
        self.train = torch.from_numpy(train_stream.astype(np.int64)).to(device)
        self.offsets = torch.arange(args.ctx + 1, device=device)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(args.seed)
        # Fixed held-out windows for the loss printed during training.
        n = (len(heldout_stream) - 1) // args.ctx
        n = min(n, args.eval_windows)
        w = [heldout_stream[i * args.ctx: i * args.ctx + args.ctx + 1] for i in range(n)]
        self.eval_windows = torch.from_numpy(np.stack(w).astype(np.int64)).to(device) if w else None
        self.opt, self.opt_kind = make_optimizer(model, args, device)
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16)

    def loss_fn(self, x, y):
        with torch.autocast(**self.autocast):
            logits = self.model(input_ids=x, use_cache=False).logits
        return F.cross_entropy(logits.float().reshape(-1, self.vocab), y.reshape(-1))

    def batch(self):
        hi = self.train.numel() - self.args.ctx - 1
        starts = torch.randint(0, hi, (self.args.batch,), device=self.device, generator=self.gen)
        chunk = self.train[starts[:, None] + self.offsets[None, :]]
        return chunk[:, :-1], chunk[:, 1:]

    def step(self, fn, x, y):
        loss = fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.detach()

    @torch.no_grad()
    def heldout_loss(self):
        if self.eval_windows is None:
            return float("nan")
        self.model.eval()
        total, count = 0.0, 0
        for i in range(0, self.eval_windows.shape[0], self.args.batch):
            w = self.eval_windows[i:i + self.args.batch]
            with torch.autocast(**self.autocast):
                logits = self.model(input_ids=w[:, :-1], use_cache=False).logits
            total += F.cross_entropy(logits.float().reshape(-1, self.vocab), w[:, 1:].reshape(-1),
                                     reduction="sum").item()
            count += w[:, 1:].numel()
        self.model.train()
        return total / count

    def first_step(self, x, y):
        """The first step, compiled if that works and agrees with eager; else eager."""
        fn = self.loss_fn
        if not self.args.no_compile:
            try:
                compiled = torch.compile(self.loss_fn, dynamic=False)
                t = time.time()
                with torch.no_grad():
                    eager_loss = self.loss_fn(x, y).item()
                loss = self.step(compiled, x, y).item()
                if not abs(loss - eager_loss) <= 2e-2 * max(1.0, abs(eager_loss)):
                    raise RuntimeError(f"compiled loss {loss} differs from eager {eager_loss}")
                log(f"torch.compile: first step in {time.time() - t:.1f}s, loss {loss:.4f} (eager {eager_loss:.4f})")
                return compiled, "compiled", loss
            except Exception as e:  # any failure of the compiler: train eagerly
                log(f"torch.compile failed ({type(e).__name__}: {str(e)[:400]}); training eagerly")
                self.opt.zero_grad(set_to_none=True)
                try:
                    torch._dynamo.reset()
                except Exception:
                    pass
        loss = self.step(fn, x, y).item()
        return fn, "eager", loss

    def run(self, budget_s):
        args = self.args
        self.model.train()
        t_start = time.time()
        for g in self.opt.param_groups:
            g["lr"] = lr_at(0, 0.0, args)
        x, y = self.batch()
        fn, mode, first_loss = self.first_step(x, y)
        step, history = 1, [{"step": 1, "seconds": round(time.time() - t_start, 1), "train_loss": first_loss}]
        loss_acc, acc_steps = torch.zeros((), device=self.device), 0
        last_log_t, last_log_step, last_eval = time.time(), 1, time.time()
        train_loss = first_loss
        while True:
            elapsed = time.time() - t_start
            if elapsed >= budget_s:
                break
            lr = lr_at(step, elapsed / budget_s, args)
            for g in self.opt.param_groups:
                g["lr"] = lr
            x, y = self.batch()
            loss_acc += self.step(fn, x, y)
            acc_steps += 1
            step += 1
            if step % args.log_every == 0:
                train_loss = (loss_acc / acc_steps).item()  # syncs
                loss_acc.zero_()
                acc_steps = 0
                now = time.time()
                tps = (step - last_log_step) * args.batch * args.ctx / (now - last_log_t)
                last_log_t, last_log_step = now, step
                entry = {"step": step, "seconds": round(now - t_start, 1), "train_loss": round(train_loss, 4),
                         "lr": round(lr, 6), "tokens_per_s": round(tps)}
                if now - last_eval >= args.eval_every:
                    entry["heldout_loss"] = round(self.heldout_loss(), 4)
                    last_eval = last_log_t = time.time()  # the evaluation is not training time
                history.append(entry)
                log(json.dumps(entry))
        if acc_steps >= max(1, args.log_every // 4):  # else the last logged average stands
            train_loss = (loss_acc / acc_steps).item()
        seconds = time.time() - t_start
        return {"steps": step, "mode": mode, "optimizer": self.opt_kind, "seconds": round(seconds, 1),
                "tokens": step * args.batch * args.ctx, "final_train_loss": round(train_loss, 4),
                "history": history}


# ---------------------------------------------------------------------------------------------
# 4. Save


def save_model(model, model_dir, eot):
    from transformers import GenerationConfig
    model = model.to(device="cpu", dtype=torch.bfloat16).eval()
    model.config.torch_dtype = torch.bfloat16  # written as "dtype": "bfloat16" by transformers 5
    model.save_pretrained(model_dir, safe_serialization=True)
    GenerationConfig(bos_token_id=eot, eos_token_id=eot, pad_token_id=eot).save_pretrained(model_dir)


def folder_report(model_dir):
    files = {f: os.path.getsize(os.path.join(model_dir, f)) for f in sorted(os.listdir(model_dir))}
    total = sum(files.values())
    log("model folder:", json.dumps(files), f"total {total / 1e6:.2f} MB")
    assert total < FOLDER_LIMIT, f"the model folder is {total} bytes, over {FOLDER_LIMIT}"
    for f, size in files.items():
        if size >= RETURN_LIMIT:
            log(f"WARNING: {f} is {size} bytes: the device tool will not return a file over 16 MiB")
    if not any(f.endswith(".safetensors") for f in files):
        raise RuntimeError(f"save_pretrained wrote no safetensors file: {list(files)}")
    return files, total


# ---------------------------------------------------------------------------------------------
# 5. Reference: the saved weights in float32 on the CPU


def heldout_sequences(heldout_ids, heldout_docs, stream, count, length):
    """`count` sequences of `length` tokens: the middle of the first held-out files (sha order) that
    are long enough, else evenly spaced windows of the held-out stream."""
    seqs, sources = [], []
    for ids, d in zip(heldout_ids, heldout_docs):
        if len(seqs) == count:
            break
        if len(ids) >= length:
            start = (len(ids) - length) // 2
            seqs.append(ids[start:start + length].tolist())
            sources.append(f"{d['group']}:{d['path']}")
    if len(seqs) < count:
        seqs, sources = [], []
        step = max(1, (len(stream) - length) // count)
        for k in range(count):
            seqs.append(stream[k * step:k * step + length].tolist())
            sources.append(f"held-out stream offset {k * step}")
    return seqs, sources


@torch.no_grad()
def sequence_losses(model, seqs, device):
    """Mean next-token cross-entropy of the sequences under the model as it is (no autocast)."""
    model.eval()
    x = torch.tensor(seqs, device=device)
    logits = model(input_ids=x, use_cache=False).logits.float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()


@torch.no_grad()
def reference(model_dir, tok, eot, heldout_seqs, args):
    from transformers import Qwen3ForCausalLM
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ref = Qwen3ForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    emb, head = ref.get_input_embeddings().weight, ref.get_output_embeddings().weight
    assert torch.equal(emb, head), "the reloaded model's lm_head is not its embedding"
    losses = []
    for seq in heldout_seqs:
        logits = ref(input_ids=torch.tensor([seq]), use_cache=False).logits[0]
        lp = torch.log_softmax(logits.double(), dim=-1)
        nll = -lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
        losses.append(nll.mean().item())
    samples = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt).ids
        x = torch.tensor([ids])
        out = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.gen_tokens, do_sample=False,
                           temperature=None, top_p=None, top_k=None, eos_token_id=eot, pad_token_id=eot)
        new = out[0, len(ids):].tolist()
        # One full forward over prompt + output: the margin between the best two logits at each
        # generated position, so a comparison can stop at a near-tie.
        logits = ref(input_ids=torch.tensor([ids + new]), use_cache=False).logits[0]
        steps = logits[len(ids) - 1:len(ids) - 1 + len(new)]
        top2 = steps.topk(2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()
        argmax_agrees = steps.argmax(-1).tolist() == new
        text = tok.decode(new, skip_special_tokens=True)
        samples.append({"prompt": prompt, "prompt_ids": ids, "max_new_tokens": args.gen_tokens, "output_ids": new,
                        "text": text,
                        "finish_reason": "stop" if new and new[-1] == eot else "length",
                        "margins": [round(m, 5) for m in margins],
                        "full_forward_argmax_agrees": argmax_agrees})
        log(f"sample {prompt!r} -> {text!r}" + ("" if argmax_agrees else " (full-forward argmax differs: near-tie)"))
    return losses, samples


def check_hf_tokenizer(model_dir, tok):
    """The folder must load with transformers' AutoTokenizer and encode as the library does."""
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(model_dir)
        bad = [p for p in PROMPTS if hf(p)["input_ids"] != tok.encode(p).ids]
        rt = hf.decode(tok.encode(PROMPTS[0]).ids) == PROMPTS[0]
        log(f"AutoTokenizer: {type(hf).__name__}, prompts encoded differently: {bad}, decode round trip: {rt}")
        return {"class": type(hf).__name__, "mismatched_prompts": bad, "round_trip": rt}
    except Exception as e:
        log(f"WARNING: AutoTokenizer could not load the folder: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}


def to_json(obj, indent=""):
    """Indented JSON with each list of numbers or strings on one line (token ids stay readable)."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)


def versions():
    import transformers
    import tokenizers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# ---------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    ap.add_argument("--max-total-minutes", type=float, default=8.5,
                    help="the whole script's deadline: training is cut short to leave time to save and evaluate")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    # corpus
    ap.add_argument("--corpus-mb", type=float, default=96.0, help="total text, training and held-out")
    ap.add_argument("--stdlib-mb", type=float, default=24.0)
    ap.add_argument("--package-mb", type=float, default=6.0, help="cap for each site-packages package")
    ap.add_argument("--tokenizer-mb", type=float, default=24.0, help="text the tokenizer is trained on")
    ap.add_argument("--heldout-percent", type=int, default=1)
    ap.add_argument("--max-file-bytes", type=int, default=1_000_000)
    # tokenizer and model
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--max-positions", type=int, default=2048)
    # training
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-min", type=float, default=0.1, help="final learning rate, as a fraction of --lr")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=float, default=30.0, help="seconds between held-out losses")
    ap.add_argument("--eval-windows", type=int, default=128)
    # reference
    ap.add_argument("--heldout-seqs", type=int, default=8)
    ap.add_argument("--heldout-len", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=48)
    return ap.parse_args(argv)


def estimate_params(args, vocab):
    per_layer = (args.hidden * args.heads * args.head_dim * 2 + args.hidden * args.kv_heads * args.head_dim * 2
                 + 3 * args.hidden * args.intermediate + 2 * args.hidden + 2 * args.head_dim)
    return vocab * args.hidden + args.layers * per_layer + args.hidden


def main(argv=None):
    args = parse_args(argv)
    deadline = T0 + args.max_total_minutes * 60
    model_dir = os.path.join(args.out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    sys.stdout = Tee(os.path.join(args.out_dir, "train.log"))
    log("args:", json.dumps(vars(args)))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine (or pass --device cpu for a trial)")
    est = estimate_params(args, args.vocab)
    if est * 2 >= RETURN_LIMIT:
        raise SystemExit(f"about {est} parameters: the bf16 weights ({est * 2} bytes) would not come back "
                         f"from the device tool (16 MiB a file): choose a smaller model")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    # 1. corpus
    files = list_sources()
    train_docs, heldout_docs, groups, skipped = select_and_split(files, args)
    if not train_docs or not heldout_docs:
        raise SystemExit(f"corpus too small: {len(train_docs)} training and {len(heldout_docs)} held-out files")
    top_groups = dict(sorted(groups.items(), key=lambda kv: -kv[1])[:20])
    corpus = {"py_files_found": len(files), "bytes_found": sum(f[4] for f in files), "skipped": skipped,
              "train_files": len(train_docs), "train_bytes": sum(d["bytes"] for d in train_docs),
              "heldout_files": len(heldout_docs), "heldout_bytes": sum(d["bytes"] for d in heldout_docs),
              "groups": len(groups), "largest_groups_bytes": top_groups,
              "roots": [r for _, r in source_roots()]}
    log("corpus:", json.dumps(corpus))

    # 2. tokenizer
    t = time.time()
    tok, tok_bytes = train_tokenizer(train_docs, args)
    eot = tok.token_to_id(EOT)
    vocab = tok.get_vocab_size()
    log(f"tokenizer: {vocab} tokens, {EOT} = {eot}, trained on {tok_bytes / 1e6:.1f} MB in {time.time() - t:.1f}s")
    assert eot is not None and vocab <= args.vocab
    write_tokenizer(tok, model_dir, args.max_positions)
    t = time.time()
    train_ids = encode_docs(tok, train_docs)
    heldout_ids = encode_docs(tok, heldout_docs)
    train_stream, heldout_stream = join_docs(train_ids, eot), join_docs(heldout_ids, eot)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # torch.compile's workers fork after this
    corpus.update(train_tokens=int(train_stream.size), heldout_tokens=int(heldout_stream.size),
                  bytes_per_token=round(corpus["train_bytes"] / max(1, train_stream.size), 3))
    log(f"encoded: {train_stream.size} training and {heldout_stream.size} held-out tokens "
        f"({corpus['bytes_per_token']} bytes a token) in {time.time() - t:.1f}s")
    if train_stream.size <= args.ctx + 1:
        raise SystemExit("too few training tokens")

    seqs, sources = heldout_sequences(heldout_ids, heldout_docs, heldout_stream, args.heldout_seqs, args.heldout_len)

    # 3. model and training
    from transformers import Qwen3ForCausalLM
    model_vocab = vocab if vocab % 64 == 0 else vocab + (64 - vocab % 64)
    config = make_config(args, model_vocab, eot)
    model = Qwen3ForCausalLM(config)
    tie_embeddings(model)
    model = model.to(device)
    assert is_tied(model), "lm_head must be the embedding (tie_word_embeddings)"
    params = count_params(model)
    log(f"model: {params} parameters ({params - model_vocab * args.hidden} without the embedding), "
        f"vocab {model_vocab}, attention {getattr(model.config, '_attn_implementation', '?')}, tied")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    trainer = Trainer(model, args, device, train_stream, heldout_stream)
    reserve = 75.0  # seconds to save, evaluate and sample
    budget = min(args.minutes * 60, deadline - time.time() - reserve)
    if budget < args.minutes * 60:
        log(f"training cut to {budget:.0f}s to meet --max-total-minutes")
    if budget <= 0:
        raise SystemExit("no time left to train")
    log(f"training for {budget:.0f}s: batch {args.batch} x {args.ctx} tokens")
    train = trainer.run(budget)
    heldout_gpu = trainer.heldout_loss()
    log(f"trained: {train['steps']} steps ({train['mode']}), {train['tokens']} tokens in {train['seconds']}s, "
        f"train loss {train['final_train_loss']}, held-out loss (bf16 autocast, {args.device}) {heldout_gpu:.4f}")
    del trainer
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    before_save = sequence_losses(model, seqs, device)

    # 4. save
    save_model(model, model_dir, eot)
    del model
    files, folder_bytes = folder_report(model_dir)
    hf_tok = check_hf_tokenizer(model_dir, tok)

    # 5. reference
    t = time.time()
    losses, samples = reference(model_dir, tok, eot, seqs, args)
    loss = sum(losses) / len(losses)
    drift = abs(loss - before_save) / before_save
    log(f"held-out sequences: {before_save:.4f} with the float32 training weights, {loss:.4f} saved in bf16 "
        f"and reloaded (relative change {drift:.2e})")
    if drift > 0.05:
        log("WARNING: saving and reloading changed the model's loss by more than 5%: check the checkpoint")
    log(f"held-out loss (float32, CPU, saved weights): {loss:.6f} over {len(seqs)} x {args.heldout_len} tokens "
        f"(per sequence {[round(x, 4) for x in losses]}) in {time.time() - t:.1f}s")

    summary = {"params": params, "vocab": vocab, "model_vocab": model_vocab,
               "architecture": {"hidden": args.hidden, "intermediate": args.intermediate, "layers": args.layers,
                                "heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim},
               "corpus_bytes": corpus["train_bytes"] + corpus["heldout_bytes"], "corpus_files": len(train_docs) + len(heldout_docs),
               "train_tokens_unique": corpus["train_tokens"], "heldout_tokens": corpus["heldout_tokens"],
               "bytes_per_token": corpus["bytes_per_token"], "steps": train["steps"], "tokens_trained": train["tokens"],
               "epochs": round(train["tokens"] / corpus["train_tokens"], 2), "mode": train["mode"],
               "final_train_loss": train["final_train_loss"], "heldout_loss_bf16": round(heldout_gpu, 4),
               "heldout_seqs_loss_before_save": round(before_save, 6),
               "heldout_loss": round(loss, 6), "train_seconds": train["seconds"],
               "total_seconds": round(time.time() - T0, 1), "folder_bytes": folder_bytes,
               "greedy": {x["prompt"]: x["text"] for x in samples[:3]}}
    record = {
        "about": "nanovllm's built-in model (models/nanovllm-tiny), made by scripts/device/train-builtin-model.py. "
                 "heldout: token ids of held-out Python files (never trained on) and PyTorch's mean next-token "
                 "cross-entropy (nats) over each sequence's positions 1..n-1, computed by transformers on the CPU "
                 "with the saved bf16 weights upcast to float32 and eager attention. samples: transformers' greedy "
                 "generate() on the same float32 model; margins[i] is the gap between the two largest logits "
                 "where output_ids[i] was chosen.",
        "command": " ".join(["python3", "scripts/device/train-builtin-model.py"] +
                            ["OUT_DIR" if a == args.out_dir else a for a in (sys.argv[1:] if argv is None else argv)]),
        "versions": versions(),
        "heldout": {"seq_len": args.heldout_len, "sources": sources, "sequences": seqs,
                    "losses": losses, "loss": loss},
        "samples": samples,
        "training": {"summary": summary, "corpus": corpus, "tokenizer_check": hf_tok, "files": files,
                     "history": train["history"]},
    }
    with open(os.path.join(args.out_dir, "reference.json"), "w") as f:
        f.write(to_json(record) + "\n")
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
