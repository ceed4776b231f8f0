"""LLM and SamplingParams: Nano-vLLM's API over the C++ engine."""
import copy

import pytest

import nanovllm
from nanovllm import LLM, SamplingParams

from conftest import FIXTURES


def greedy(n, **kw):
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True, **kw)


def test_generate_returns_text_and_token_ids_in_input_order(llm):
    prompts = ["def fibonacci(n):", "import os\n", "Hello, my name is"]
    outs = llm.generate(prompts, greedy(12), use_tqdm=False)
    assert len(outs) == 3
    for p, o in zip(prompts, outs):
        assert set(o) >= {"text", "token_ids", "finish_reason"}
        assert len(o["token_ids"]) == 12 and o["finish_reason"] == "length"
        assert isinstance(o["text"], str) and o["text"]
        # The same prompt alone gives the same greedy output: order is the input's.
        assert llm.generate([p], greedy(12), use_tqdm=False)[0]["token_ids"] == o["token_ids"]


def test_text_and_token_id_prompts_agree(llm):
    text = "def fibonacci(n):\n    "
    ids = llm.encode(text)
    by_text, by_ids = llm.generate([text, ids], greedy(16), use_tqdm=False)
    assert by_text["token_ids"] == by_ids["token_ids"]
    assert by_text["text"] == by_ids["text"]
    assert by_text["num_prompt_tokens"] == len(ids)


def test_a_single_string_prompt(llm):
    outs = llm.generate("Once upon a time", greedy(5), use_tqdm=False)
    assert len(outs) == 1 and len(outs[0]["token_ids"]) == 5


def test_one_sampling_params_per_prompt(llm):
    outs = llm.generate(["a", "b"], [greedy(3), greedy(7)], use_tqdm=False)
    assert [len(o["token_ids"]) for o in outs] == [3, 7]
    with pytest.raises(ValueError, match="2 prompts but 1 SamplingParams"):
        llm.generate(["a", "b"], [greedy(3)], use_tqdm=False)


def test_seeded_sampling_is_reproducible(llm):
    p = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=16, ignore_eos=True, seed=1234)
    a = llm.generate(["x = 1", "y = 2"], p, use_tqdm=False)
    b = llm.generate(["y = 2", "x = 1"], p, use_tqdm=False)
    assert a[0]["token_ids"] == b[1]["token_ids"] and a[1]["token_ids"] == b[0]["token_ids"]


def test_stop_strings_and_logprobs(llm):
    free = llm.generate("import os\n", greedy(24), use_tqdm=False)[0]
    stop = free["text"][5:8]
    cut = llm.generate("import os\n", greedy(24, stop=stop), use_tqdm=False)[0]
    assert cut["finish_reason"] == "stop" and cut["text"] == free["text"][: free["text"].find(stop)]
    with_lp = llm.generate("import os\n", greedy(4, logprobs=2), use_tqdm=False)[0]
    assert len(with_lp["logprobs"]) == 4
    assert with_lp["logprobs"][0]["token_id"] == with_lp["token_ids"][0]
    assert len(with_lp["logprobs"][0]["top"]) == 2


def test_default_sampling_params_and_progress_bar(llm, capsys):
    outs = llm.generate(["a b c"] * 3)  # SamplingParams() and the bar
    assert all(len(o["token_ids"]) <= 64 for o in outs)
    err = capsys.readouterr().err
    assert "Generating" in err and "3/3" in err and "tok/s" in err


def test_progress_bar_without_tqdm(llm, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    llm.generate(["a", "b"], greedy(4))
    err = capsys.readouterr().err
    assert "Generating: 2/2 requests" in err and err.endswith("\n")


def test_sampling_params_fields_and_defaults():
    p = SamplingParams()
    assert (p.temperature, p.max_tokens, p.ignore_eos) == (1.0, 64, False)  # Nano-vLLM's defaults
    assert (p.top_k, p.top_p, p.min_p, p.seed, p.stop, p.stop_token_ids) == (-1, 1.0, 0.0, None, [], [])
    q = SamplingParams(0.5, 10, True, top_k=5, top_p=0.5, min_p=0.1, repetition_penalty=1.1, presence_penalty=0.5,
                       frequency_penalty=-0.5, seed=7, min_tokens=2, stop=["\n\n"], stop_token_ids=[3],
                       logprobs=1, skip_special_tokens=False)
    assert (q.temperature, q.max_tokens, q.ignore_eos, q.top_k, q.seed, q.stop) == (0.5, 10, True, 5, 7, ["\n\n"])
    assert "temperature=0.5" in repr(q) and "seed=7" in repr(q)
    assert SamplingParams(stop="END").stop == ["END"]
    r = copy.copy(q)
    r.max_tokens = 99
    assert q.max_tokens == 10


@pytest.mark.parametrize("kw, field", [
    ({"temperature": -1}, "temperature"), ({"max_tokens": 0}, "max_tokens"), ({"top_p": 0}, "top_p"),
    ({"top_k": 0}, "top_k"), ({"min_p": 2}, "min_p"), ({"presence_penalty": 3}, "presence_penalty"),
    ({"logprobs": 50}, "logprobs"), ({"stop": [""]}, "stop"), ({"seed": -1}, "seed"),
    ({"min_tokens": 100, "max_tokens": 10}, "min_tokens"),
])
def test_invalid_sampling_params_raise_value_error_with_the_message(kw, field):
    with pytest.raises(ValueError, match=f"SamplingParams.{field} = .* is invalid"):
        SamplingParams(**kw)


def test_sampling_params_type_errors():
    with pytest.raises(TypeError):
        SamplingParams(max_tokens=1.5)
    with pytest.raises(TypeError):
        SamplingParams(nonsense=1)
    with pytest.raises(TypeError):
        SamplingParams(stop=[1, 2])


def test_invalid_params_set_after_construction_are_caught_by_generate(llm):
    p = greedy(4)
    p.temperature = -2
    with pytest.raises(ValueError, match="temperature"):
        llm.generate("a", p, use_tqdm=False)


def test_bad_prompts(llm):
    with pytest.raises(ValueError, match="prompt 1: .*outside the vocabulary"):
        llm.generate([[1, 2], [1, 99999]], greedy(2), use_tqdm=False)
    with pytest.raises(ValueError, match="prompt 0: the prompt is empty"):
        llm.generate([[]], greedy(2), use_tqdm=False)
    with pytest.raises(TypeError, match="list of ints"):
        llm.generate([1, 2, 3], greedy(2), use_tqdm=False)
    with pytest.raises(TypeError):
        llm.generate([3.5], greedy(2), use_tqdm=False)
    assert llm.generate([], greedy(2), use_tqdm=False) == []
    # Nothing was left behind by the refused calls.
    assert llm.num_free_kv_blocks == llm.num_kv_blocks


def test_unknown_config_keyword_is_an_error_naming_it(model_dir):
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_num_seq'"):
        LLM(str(model_dir), max_num_seq=4)
    with pytest.raises(TypeError, match="max_num_seqs must be an int"):
        LLM(str(model_dir), max_num_seqs="4")
    with pytest.raises(ValueError, match="Config.kvcache_block_size = 0 is invalid"):
        LLM(str(model_dir), kvcache_block_size=0)
    with pytest.raises(ValueError, match="backend"):
        LLM(str(model_dir), backend="tpu")


def test_config_keywords_reach_the_engine(model_dir):
    llm = LLM(model_dir, max_num_seqs=2, kvcache_block_size=16, num_kvcache_blocks=40, max_model_len=128,
              enable_prefix_caching=False, backend="cpu")
    c = llm.config
    assert (c["max_num_seqs"], c["kvcache_block_size"], c["num_kvcache_blocks"], c["max_model_len"]) == (2, 16, 40, 128)
    assert c["enable_prefix_caching"] is False
    outs = llm.generate(["a", "b", "c"], greedy(20), use_tqdm=False)
    assert all(len(o["token_ids"]) == 20 for o in outs)
    ahead = LLM(model_dir, max_num_seqs=2, kvcache_block_size=16, num_kvcache_blocks=40, max_model_len=128,
                enable_prefix_caching=False, backend="cpu", async_scheduling="on")
    assert ahead.config["async_scheduling"] == "on"
    assert ahead.generate(["a", "b", "c"], greedy(20), use_tqdm=False) == outs


def test_cpp_errors_are_nanovllm_errors(tmp_path):
    assert issubclass(nanovllm.Error, RuntimeError)
    with pytest.raises(nanovllm.Error, match="config.json"):
        LLM(tmp_path)
    with pytest.raises(nanovllm.Error, match="not found|cache"):
        LLM("no-such-org/no-such-model")


def test_token_id_only_model():
    llm = LLM(FIXTURES / "models" / "qwen3-tied-bf16-g4-d64", num_kvcache_blocks=8)
    out = llm.generate([[1, 17, 42]], greedy(6), use_tqdm=False)[0]
    assert len(out["token_ids"]) == 6 and out["text"] == ""
    with pytest.raises(ValueError, match="tokenizer"):
        llm.generate("text", greedy(2), use_tqdm=False)


def test_hub_id_resolves_in_the_local_cache(hf_cache):
    llm = LLM("Qwen/Qwen3-0.6B", num_kvcache_blocks=8)
    assert str(hf_cache) in llm.config["model"]
    assert llm.generate("hi", greedy(3), use_tqdm=False)[0]["token_ids"]
