"""LLM: Nano-vLLM's front end over the C++ engine (_nanovllm.Engine)."""
import os
from collections.abc import Mapping, Sequence

from . import _nanovllm
from ._progress import progress_bar


class LLM:
    """A model and its engine.

    model: a Hugging Face model folder, or a hub id ("Qwen/Qwen3-0.6B") already in the local
    Hugging Face cache. config: the engine's Config fields as keywords (max_num_seqs,
    max_model_len, kvcache_block_size, num_kvcache_blocks, enable_prefix_caching, backend, ...).
    An unknown keyword raises TypeError; an invalid value ValueError; a model that cannot be
    loaded nanovllm.Error.
    """

    def __init__(self, model, **config):
        self._engine = _nanovllm.Engine(os.fspath(model), **config)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        """Generates a completion of each prompt; returns one dict per prompt, in input order:
        {"text", "token_ids", "finish_reason", "num_prompt_tokens", "num_cached_tokens"} (and
        "logprobs" when asked for).

        prompts: a str, a list of str, or a list of token-id lists. sampling_params: one
        SamplingParams for all (default SamplingParams()) or a list, one per prompt.
        Ctrl-C stops it: the requests are aborted and KeyboardInterrupt is raised.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        elif not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, bytearray)):
            raise TypeError("prompts must be a str, a list of str or a list of token-id lists, not "
                            + type(prompts).__name__)
        elif prompts and all(isinstance(p, int) for p in prompts):
            raise TypeError("prompts is a list of ints: pass token ids as a list of prompts, [[1, 2, 3]]")
        prompts = list(prompts)
        params = self._params_for(len(prompts), sampling_params)
        if not prompts:
            return []
        with progress_bar(len(prompts), use_tqdm) as bar:
            return self._engine.generate(prompts, params, bar.update if bar else None)

    def chat(self, messages, sampling_params=None, use_tqdm=True, *, add_generation_prompt=True,
             chat_template_kwargs=None, tools=None):
        """generate() over conversations rendered with the model's chat template.

        messages: one conversation (a list of {"role": ..., "content": ...} dicts) or a list of
        them. chat_template_kwargs: more template variables (enable_thinking=False, ...).
        """
        conversations = [messages] if _is_conversation(messages) else list(messages)
        for c in conversations:
            if not _is_conversation(c):
                raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts, or a list of such lists")
        prompts = [self.encode(self.apply_chat_template(c, add_generation_prompt, tools=tools,
                                                        chat_template_kwargs=chat_template_kwargs),
                               add_special_tokens=False)
                   for c in conversations]
        return self.generate(prompts, sampling_params, use_tqdm)

    def apply_chat_template(self, messages, add_generation_prompt=True, *, tools=None, chat_template_kwargs=None):
        """The conversation rendered with the model's chat template, as Hugging Face's
        tokenizer.apply_chat_template(messages, tokenize=False, ...) renders it."""
        return self._engine.apply_chat_template(messages, add_generation_prompt, tools, chat_template_kwargs)

    def encode(self, text, add_special_tokens=True):
        """The model's tokenizer: text to token ids."""
        return self._engine.encode(text, add_special_tokens)

    @property
    def config(self):
        """The engine's configuration as it runs (max_model_len capped by the model, ...)."""
        return self._engine.config()

    def stats(self):
        """Engine counters: steps, prefix-cache hits, preemptions, tokens."""
        return self._engine.stats()

    @property
    def num_kv_blocks(self):
        return self._engine.num_kv_blocks

    @property
    def num_free_kv_blocks(self):
        return self._engine.num_free_kv_blocks

    @staticmethod
    def _params_for(n, sampling_params):
        if sampling_params is None:
            sampling_params = _nanovllm.SamplingParams()
        if isinstance(sampling_params, _nanovllm.SamplingParams):
            sampling_params.validate()
            return [sampling_params] * n
        params = list(sampling_params)
        if len(params) != n:
            raise ValueError(f"{n} prompts but {len(params)} SamplingParams (give one, or one per prompt)")
        for p in params:
            if not isinstance(p, _nanovllm.SamplingParams):
                raise TypeError("sampling_params must be a SamplingParams or a list of them, not a list of "
                                + type(p).__name__)
            p.validate()
        return params


def _is_conversation(obj):
    return isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) > 0 and \
        all(isinstance(m, Mapping) for m in obj)
