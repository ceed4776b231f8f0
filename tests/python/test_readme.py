"""The README's examples run, so that they cannot rot: every ```python block of its "Python"
section (each in a fresh interpreter) and every ```sh block of its "The `nanovllm` command"
section (with bash, from the repository root, build/tools/nanovllm standing for the built
command). "Qwen/Qwen3-0.6B" is found in a test Hugging Face cache that holds the tiny fixture
model under that id (conftest.hf_cache), so the examples run exactly as written."""
import os
import re
import subprocess
import sys

import pathlib

import pytest

import nanovllm
from conftest import REPO, nanovllm_bin



def example_env():
    """This environment (HF_HUB_CACHE: the test cache), importing the module this test imports."""
    return dict(os.environ, PYTHONPATH=str(pathlib.Path(nanovllm.__file__).resolve().parents[1]))


README = (REPO / "README.md").read_text()


def section(title):
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert m, f"README.md has no section '{title}'"
    return m.group(1)


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)


PYTHON_BLOCKS = blocks(section("Python"), "python")
SHELL_BLOCKS = blocks(section("The `nanovllm` command"), "sh")


def test_the_sections_have_examples():
    assert len(PYTHON_BLOCKS) >= 3 and len(SHELL_BLOCKS) >= 2
    assert any("Qwen/Qwen3-0.6B" in b for b in PYTHON_BLOCKS + SHELL_BLOCKS)


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=[f"python{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_example(code, hf_cache, tmp_path):
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=example_env(), capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{code}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert p.stdout.strip(), "the example printed nothing"


@pytest.mark.parametrize("script", SHELL_BLOCKS, ids=[f"sh{i}" for i in range(len(SHELL_BLOCKS))])
def test_command_example(script, hf_cache):
    script = script.replace("build/tools/nanovllm", nanovllm_bin())
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=example_env(), capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{script}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert p.stdout.strip()
    assert "error" not in p.stderr.lower(), p.stderr
