"""Shared fixtures of the Python tests: a tiny Qwen3 model with a real tokenizer and a chat
template, and a Hugging Face cache that holds it under the id "Qwen/Qwen3-0.6B" (so that the
README's examples run as written, against the tiny model).

Run with the module built: PYTHONPATH=<build>/python python3 -m pytest tests/python (ctest sets
it, and NANOVLLM_BIN, the nanovllm command).
"""
import json
import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
BASE_MODEL = FIXTURES / "models" / "qwen3-tied-f32-g2-d64"  # random weights, a real tokenizer.json
HUB_ID = "Qwen/Qwen3-0.6B"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# Hub ids resolve in the local cache only: the tests never reach for the network.
os.environ["HF_HUB_OFFLINE"] = "1"


def nanovllm_bin():
    path = os.environ.get("NANOVLLM_BIN", str(REPO / "build" / "tools" / "nanovllm"))
    if not os.path.exists(path):
        pytest.skip(f"the nanovllm command is not built ({path}); set NANOVLLM_BIN")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """The fixture model plus Qwen3's chat template (from tests/fixtures/chat_templates)."""
    d = tmp_path_factory.mktemp("model")
    for f in BASE_MODEL.iterdir():
        if f.name != "tokenizer_config.json":
            os.symlink(f, d / f.name)
    cfg = json.loads((BASE_MODEL / "tokenizer_config.json").read_text())
    cfg["chat_template"] = (FIXTURES / "chat_templates" / "qwen3.jinja").read_text()
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return d


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory, model_dir):
    """A Hugging Face hub cache (huggingface_hub's layout) with model_dir as HUB_ID, set as
    HF_HUB_CACHE for the whole session and its subprocesses."""
    cache = tmp_path_factory.mktemp("hf-hub")
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snap, symlinks=True)
    old = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(cache)
    yield cache
    if old is None:
        del os.environ["HF_HUB_CACHE"]
    else:
        os.environ["HF_HUB_CACHE"] = old


@pytest.fixture(scope="module")
def llm(model_dir):
    from nanovllm import LLM
    return LLM(str(model_dir), num_kvcache_blocks=64)
