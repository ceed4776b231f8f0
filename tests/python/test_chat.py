"""LLM.chat and apply_chat_template: the model's chat template (tokenizer_config.json's, or
chat_template.jinja), rendered as Hugging Face renders it."""
import json
import os

import pytest

import nanovllm
from nanovllm import LLM, SamplingParams

from conftest import BASE_MODEL, FIXTURES

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]


def greedy(n):
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


def test_apply_chat_template_matches_the_hugging_face_golden(llm):
    golden = json.loads((FIXTURES / "chat_templates" / "qwen3.goldens.json").read_text())
    checked = 0
    for case in golden["cases"]:
        if case.get("error") or case.get("tools") or case.get("extra") or "enable_thinking" in case:
            continue
        got = llm.apply_chat_template(case["messages"], case["add_generation_prompt"])
        assert got == case["expected"], case["name"]
        checked += 1
    assert checked >= 5


def test_chat_template_kwargs_reach_the_template(llm):
    text = llm.apply_chat_template([{"role": "user", "content": "Hi"}], chat_template_kwargs={"enable_thinking": False})
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_chat_equals_generate_on_the_rendered_prompt(llm):
    prompt = llm.apply_chat_template(CONVERSATION)
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    ids = llm.encode(prompt, add_special_tokens=False)
    by_chat = llm.chat(CONVERSATION, greedy(10), use_tqdm=False)
    by_ids = llm.generate([ids], greedy(10), use_tqdm=False)
    assert len(by_chat) == 1 and by_chat[0]["token_ids"] == by_ids[0]["token_ids"]
    assert by_chat[0]["num_prompt_tokens"] == len(ids)


def test_chat_over_several_conversations(llm):
    convs = [CONVERSATION, [{"role": "user", "content": "2+2?"}]]
    outs = llm.chat(convs, [greedy(3), greedy(5)], use_tqdm=False)
    assert [len(o["token_ids"]) for o in outs] == [3, 5]


def test_template_errors_and_bad_messages(llm):
    with pytest.raises(TypeError, match="messages"):
        llm.chat("hello", greedy(2), use_tqdm=False)
    with pytest.raises(TypeError, match="not JSON-like"):
        llm.apply_chat_template([{"role": "user", "content": object()}])
    with pytest.raises(nanovllm.Error, match="role"):
        llm.apply_chat_template([{"content": "no role"}])


def test_a_model_without_a_template_says_so():
    llm = LLM(BASE_MODEL, num_kvcache_blocks=8)
    with pytest.raises(nanovllm.Error, match="no chat template"):
        llm.chat(CONVERSATION, greedy(2), use_tqdm=False)


def test_chat_template_jinja_file_is_used(tmp_path):
    for f in BASE_MODEL.iterdir():
        os.symlink(f, tmp_path / f.name)
    (tmp_path / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}{{ eos_token }}")
    llm = LLM(tmp_path, num_kvcache_blocks=8)
    assert llm.apply_chat_template(CONVERSATION) == "[system|Be brief.][user|Hello!]<|im_end|>"
