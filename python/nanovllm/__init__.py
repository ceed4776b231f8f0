"""nanovllm: a readable, fast LLM inference engine (C++/CUDA), with Nano-vLLM's Python API.

    from nanovllm import LLM, SamplingParams
    llm = LLM("Qwen/Qwen3-0.6B")
    outputs = llm.generate(["Hello, my name is"], SamplingParams(temperature=0.6, max_tokens=64))
    print(outputs[0]["text"])
"""
from ._nanovllm import Error, SamplingParams, __version__
from .llm import LLM

__all__ = ["LLM", "SamplingParams", "Error", "__version__"]
