"""The nanovllm command: generate (argument, stdin, token ids, batches, streaming), chat,
inspect, help and errors. Greedy outputs are checked against the Python module's."""
import os
import pty
import subprocess

import pytest

from nanovllm import LLM, SamplingParams

from conftest import FIXTURES, nanovllm_bin

TOKEN_MODEL = FIXTURES / "models" / "qwen3-tied-bf16-g4-d64"  # no tokenizer


def run(*args, stdin=None, check=True):
    p = subprocess.run([nanovllm_bin(), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def greedy_text(llm, prompt, n):
    return llm.generate([prompt], SamplingParams(temperature=0, max_tokens=n, ignore_eos=True), use_tqdm=False)[0]


def printed(text):
    return text if text.endswith("\n") else text + "\n"


GREEDY = ["--temperature", "0", "--ignore-eos"]


def test_generate_prints_the_greedy_text(llm, model_dir):
    want = greedy_text(llm, "def fibonacci(n):", 16)
    p = run("generate", "-m", model_dir, "-n", 16, *GREEDY, "def fibonacci(n):")
    assert p.stdout == printed(want["text"])
    assert "[16 tokens] finish: length" in p.stderr and "tok/s" in p.stderr
    assert "loaded" in p.stderr  # the weights' one-line summary (stderr is not a terminal)
    assert run("generate", "-m", model_dir, "-n", 16, *GREEDY, "--prompt", "def fibonacci(n):").stdout == p.stdout


def test_generate_reads_the_prompt_from_stdin(llm, model_dir):
    want = printed(greedy_text(llm, "import os", 10)["text"])
    assert run("generate", "-m", model_dir, "-n", 10, *GREEDY, stdin="import os\n").stdout == want
    assert run("generate", "-m", model_dir, "-n", 10, *GREEDY, "-", stdin="import os\n").stdout == want


def test_generate_token_ids_without_a_tokenizer():
    llm = LLM(TOKEN_MODEL, num_kvcache_blocks=8)
    want = greedy_text(llm, [1, 17, 42], 8)["token_ids"]
    p = run("generate", "-m", TOKEN_MODEL, "--tokens", "1,17,42", "-n", 8, *GREEDY)
    assert p.stdout == ",".join(map(str, want)) + "\n"


def test_generate_a_batch(llm, model_dir):
    p = run("generate", "-m", model_dir, "-n", 6, *GREEDY, "a b", "c d")
    a, c = greedy_text(llm, "a b", 6)["text"], greedy_text(llm, "c d", 6)["text"]
    assert p.stdout == f"--- 1 (length) ---\n{a}\n--- 2 (length) ---\n{c}\n"
    assert "2 requests, 12 tokens" in p.stderr


def test_sampling_options_and_model_defaults(model_dir):
    # generation_config.json has temperature 0.6, top_k 20, top_p 0.95: a seed repeats.
    a = run("generate", "-m", model_dir, "-n", 12, "--seed", 3, "--ignore-eos", "hello").stdout
    b = run("generate", "-m", model_dir, "-n", 12, "--seed", 3, "--ignore-eos", "--top-k", 20, "hello").stdout
    assert a == b
    run("generate", "-m", model_dir, "-n", 4, "--min-p", 0.1, "--top-p", 0.5, "--backend", "cpu", "hello")


def test_streaming_to_a_pipe_shows_a_progress_bar_on_a_terminal(model_dir):
    # stderr on a terminal, stdout a pipe: the bar is drawn on stderr, then replaced by the summary.
    master, slave = pty.openpty()
    p = subprocess.Popen([nanovllm_bin(), "generate", "-m", str(model_dir), "-n", "8", *GREEDY, "hi"],
                         stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    out = p.stdout.read()
    assert p.wait() == 0 and out
    text = err.decode()
    assert "\r\x1b[K" in text and "loading weights" in text and "[8 tokens] finish: length" in text


def test_chat_streams_replies_with_history_and_reset(llm, model_dir):
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    first = llm.chat([{"role": "user", "content": "Hello!"}], params, use_tqdm=False)[0]["text"]
    second = llm.chat([{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": first},
                       {"role": "user", "content": "More"}], params, use_tqdm=False)[0]["text"]
    fresh = llm.chat([{"role": "user", "content": "More"}], params, use_tqdm=False)[0]["text"]
    p = run("chat", "-m", model_dir, "-n", 8, *GREEDY, stdin="Hello!\nMore\n/reset\nMore\n/exit\nignored\n")
    assert p.stdout == printed(first) + printed(second) + printed(fresh)
    assert "(conversation reset)" in p.stderr
    assert run("chat", "-m", model_dir, "-n", 2, stdin="").stdout == ""  # end of input ends it


def test_chat_system_message(llm, model_dir):
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    want = llm.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], params,
                    use_tqdm=False)[0]["text"]
    assert run("chat", "-m", model_dir, "-n", 6, *GREEDY, "--system", "Be brief.", stdin="Hi\n").stdout == printed(want)


def test_chat_needs_a_template():
    p = run("chat", "-m", FIXTURES / "models" / "qwen3-tied-f32-g2-d64", stdin="hi\n", check=False)
    assert p.returncode == 1 and "nanovllm: error:" in p.stderr and "no chat template" in p.stderr


def test_inspect(model_dir):
    out = run("inspect", "-m", model_dir).stdout
    for want in ["Qwen3ForCausalLM", "parameters", "KV cache per token  1024 bytes in bf16 (CUDA), 2048 in f32",
                 "a chat template", "generation config   eos [2,3], temperature 0.6"]:
        assert want in out
    tensors = run("inspect", "-m", model_dir, "--tensors").stdout
    assert "model.layers.0.self_attn.q_proj.weight" in tensors


def test_inspect_experts_and_window():
    out = run("inspect", "-m", FIXTURES / "models" / "qwen3moe-untied-f32-e6k3").stdout
    assert "experts             6, 3 per token, 48 wide, weights as routed; in 1 of 2 layers" in out
    out = run("inspect", "-m", FIXTURES / "models" / "mistral-untied-f32-g4-d64-swa").stdout
    assert "sliding window      128: sequences are capped at 128" in out
    assert "max_model_len       128 by default (--max-model-len up to 128)" in out


def test_predict_and_load():
    m = FIXTURES / "models" / "qwen3-tied-bf16-g4-d64"
    assert "next token:" in run("predict", "-m", m, "--tokens", "1,17,42").stdout
    assert "GB/s" in run("load", "-m", m).stdout


@pytest.mark.parametrize("args, message, code", [
    (["generate", "-m", "/no/such/model", "hi"], "nanovllm: error: ", 1),
    (["generate", "-m", "{model}", "--tokens", "1,x"], "--tokens: 'x' is not a token id", 1),
    (["generate", "-m", "{model}", "--temperature", "-1", "hi"], "SamplingParams.temperature", 1),
    (["generate", "-m", "{model}", "--backend", "tpu", "hi"], "nanovllm: error: --backend", 2),
    (["generate", "--bogus"], "nanovllm: error: ", 2),
    (["frobnicate"], "nanovllm: error: ", 2),
])
def test_errors_are_one_line(model_dir, args, message, code):
    p = run(*[a.format(model=model_dir) for a in args], check=False, stdin="")
    assert p.returncode == code, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("nanovllm: error:")]
    assert len(lines) == 1 and message in lines[0], p.stderr


def test_help_describes_every_option_and_has_examples():
    top = run("--help").stdout
    for cmd in ["generate", "chat", "inspect", "predict", "load"]:
        assert cmd in top
    assert "Examples:" in top
    for cmd in ["generate", "chat"]:
        h = run(cmd, "--help").stdout
        assert "Examples:" in h
        for opt in ["--model", "--backend", "--max-tokens", "--temperature", "--top-p", "--top-k", "--min-p", "--seed"]:
            line = next(l for l in h.splitlines() if opt in l)
            assert len(line.split(opt, 1)[1].split()) >= 2, f"{cmd} {opt} has no description: {line!r}"
    assert run("--version").stdout.startswith("nanovllm ")
