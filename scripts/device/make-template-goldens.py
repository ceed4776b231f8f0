#!/usr/bin/env python3
"""Chat template goldens: every template in tests/fixtures/chat_templates/templates.json rendered
over a corpus of conversations by Hugging Face's own renderer, written as JSON beside them.

Run on the GPU machine (transformers + jinja2, no network) through make-template-goldens.sh.
The renderer is transformers.utils.chat_template_utils.render_jinja_template, which is what
tokenizer.apply_chat_template(tokenize=False) calls. Each case is also rendered (a) with a
replica of HF's jinja2 environment built here, and (b) for the real tokenizers, when their files
are in .cache/tokenizers/<name>/, with AutoTokenizer(...).apply_chat_template; whether each
agrees is recorded, so a difference between the ways of calling HF shows up in the goldens.

Without transformers (on a CPU machine) it falls back to the replica and says so in
VERSIONS.json: use that only to iterate, never commit such goldens.

Usage: make-template-goldens.py [--fixtures DIR] [--cache DIR] [--out DIR]
"""

import argparse
import copy
import datetime
import json
import os
import platform
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------------------------------
# The conversations. Key order inside tools and arguments is deliberately not alphabetical, so
# that a renderer that sorts keys (nlohmann::json does) shows up as a mismatch.

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Búsqueda en la web — returns the top results (搜索)",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to search for, in \"quotes\" if exact"},
                "max_results": {"type": "integer", "default": 5, "minimum": 1},
                "safe": {"type": "boolean", "default": True},
                "weight": {"type": "number", "default": 0.5},
            },
            "required": ["query"],
        },
        "return": {"type": "array", "items": {"type": "string"}},
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate an arithmetic expression",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]


def call(name, arguments, call_id=None):
    c = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        c = {"id": call_id, **c}
    return c


def u(text):
    return {"role": "user", "content": text}


def a(text, **extra):
    return {"role": "assistant", "content": text, **extra}


def s(text):
    return {"role": "system", "content": text}


def t(text, **extra):
    return {"role": "tool", "content": text, **extra}


CONVERSATIONS = {
    "single_user": [u("Hello!")],
    "system_user": [s("You are a helpful assistant."), u("What is the capital of France?")],
    "multi_turn": [u("Hi there"), a("Hello! How can I help?"), u("Tell me a joke.")],
    "system_multi_turn": [
        s("You are terse."),
        u("2+2?"),
        a("4"),
        u("And 3+3?"),
        a("6"),
        u("Thanks."),
    ],
    "assistant_last": [u("Write a haiku"), a("Autumn moonlight—\na worm digs silently\ninto the chestnut.")],
    "think_last_turn": [
        u("What is 17*23?"),
        a("<think>\n17*23 = 17*20 + 17*3 = 340 + 51 = 391\n</think>\n\n17 × 23 = 391."),
    ],
    "think_earlier_turn": [
        u("Is 91 prime?"),
        a("<think>91 = 7 * 13</think>No: 91 = 7 × 13."),
        u("And 97?"),
    ],
    "reasoning_content_field": [
        u("Pick a color"),
        a("Blue.", reasoning_content="The user wants any color; blue is common."),
        u("Why?"),
    ],
    "unicode": [
        s("Réponds en français, s'il te plaît. 日本語も可。"),
        u("Ça va? 你好吗？ مرحبا 👋🏽 — naïve café, Zürich, ñ, e\u0301 (combining)"),
        a("Très bien ! 我很好。 😀👨‍👩‍👧"),
        u("Ünïcödé ✓ \u200b zero-width and \u00a0 nbsp"),
    ],
    "whitespace_content": [
        s("  padded system  \n"),
        u("\n\n  lots of   space \t\n"),
        a("   answer with trailing newlines\n\n"),
        u("\tlast\t"),
    ],
    "template_like_text": [
        u("Print {{ this }} and {% that %} and {# this #} literally, with 'quotes' and \"doubles\" and a \\ backslash."),
        a("Sure: {{ this }} {% that %}"),
        u("</think> inside a user message <tool_response>x</tool_response>"),
    ],
    "empty_content": [u(""), a(""), u("ok")],
    "long_conversation": sum(([u(f"Question number {i}?"), a(f"Answer number {i}.")] for i in range(1, 7)), [])
    + [u("Last question?")],
    "system_only": [s("Only a system prompt.")],
    "newline_runs": [u("line1\nline2\n\n\nline5\r\nline6"), a("ok\n\n\n"), u("    indented\n        more")],
    "tools_question": [u("What's the weather in Paris?")],
    "tools_system_question": [s("You can use tools."), u("Search for the latest news about Mars.")],
    "tool_call_roundtrip": [
        u("What's the weather in Paris?"),
        a("", tool_calls=[call("get_weather", {"location": "Paris, France", "unit": "celsius"}, "call00001")]),
        t('{"temperature": 18, "condition": "cloudy"}', tool_call_id="call00001"),
        a("It is 18°C and cloudy in Paris."),
    ],
    "tool_call_then_question": [
        u("Weather in Tokyo and Osaka?"),
        a("", tool_calls=[call("get_weather", {"location": "Tokyo"}, "call00002")]),
        t("22C sunny", tool_call_id="call00002"),
    ],
    "parallel_tool_calls": [
        u("Compare the weather in Oslo and Rome."),
        a(
            "Let me check both.",
            tool_calls=[
                call("get_weather", {"location": "Oslo", "unit": "celsius"}, "callOslo1"),
                call("get_weather", {"location": "Rome", "unit": "celsius"}, "callRome1"),
            ],
        ),
        t("Oslo: 3C, snow", tool_call_id="callOslo1"),
        t("Rome: 16C, clear", tool_call_id="callRome1"),
        a("Oslo is 3°C with snow; Rome is 16°C and clear."),
        u("Thanks!"),
    ],
    "tool_call_string_arguments": [
        u("Search for cats"),
        a("", tool_calls=[call("search_web", '{"query": "cats", "max_results": 3}', "callCats1")]),
        t('["Cat - Wikipedia", "Cats (musical)"]', tool_call_id="callCats1"),
    ],
    "tool_call_with_think": [
        u("What's 2**32?"),
        a(
            "<think>\nI should use the calculator.\n</think>\n\nLet me compute.",
            tool_calls=[call("calculate", {"expression": "2**32"}, "callCalc1")],
        ),
        t("4294967296", tool_call_id="callCalc1"),
        a("2**32 = 4294967296."),
    ],
    "nested_arguments": [
        u("Book it"),
        a(
            "",
            tool_calls=[
                call(
                    "book",
                    {"flight": {"from": "SFO", "to": "東京"}, "passengers": [{"name": "Zoë", "age": 7}], "refundable": False, "price": 1234.5, "notes": None},
                    "callBook1",
                )
            ],
        ),
        t('{"ok": true}', tool_call_id="callBook1"),
    ],
    "tool_response_first_message": [t("orphan tool output", tool_call_id="callOrph1"), u("What was that?")],
    "not_alternating": [u("first"), u("second")],
    "starts_with_assistant": [a("I speak first."), u("ok")],
    "multimodal_content": [
        u([{"type": "image"}, {"type": "text", "text": "  What is in this picture?  "}]),
        a([{"type": "text", "text": "A cat on a mat."}]),
    ],
    "system_list_content": [
        {"role": "system", "content": [{"type": "text", "text": "System as a list."}]},
        u("hi"),
    ],
    "unknown_role": [u("hi"), {"role": "critic", "content": "Be nicer."}],
    "multi_step_tools": [
        s("Use tools when helpful."),
        u("Plan a trip: weather in Lima, then search flights."),
        a("<think>First the weather.</think>", tool_calls=[call("get_weather", {"location": "Lima"}, "callLima1")]),
        t("Lima: 19C, fog", tool_call_id="callLima1"),
        a("", reasoning_content="Now flights.", tool_calls=[call("search_web", {"query": "flights to Lima"}, "callFlt01")]),
        t("3 results", tool_call_id="callFlt01"),
        u("<tool_response>\nuser-sent wrapper\n</tool_response>"),
        a("Done: 19°C and foggy; 3 flight options."),
    ],
    "reasoning_none_with_think": [u("hi"), a("<think>\nhmm\n</think>\nHello!", reasoning_content=None), u("again")],
    "think_unclosed": [u("hi"), a("<think>\nstill thinking"), u("well?")],
    "assistant_none_content": [u("Call it"), {"role": "assistant", "content": None, "tool_calls": [call("calculate", {"expression": "1+1"}, "callNone1")]}],
}

# (conversation, add_generation_prompt, enable_thinking (None: not passed), tools?, extra)
VARIANTS = [
    ("single_user", True, None, False, None),
    ("single_user", False, None, False, None),
    ("single_user", True, False, False, None),
    ("single_user", True, True, False, None),
    ("system_user", True, None, False, None),
    ("system_user", False, False, False, None),
    ("multi_turn", True, None, False, None),
    ("multi_turn", False, None, False, None),
    ("system_multi_turn", True, None, False, None),
    ("system_multi_turn", True, False, False, None),
    ("assistant_last", False, None, False, None),
    ("assistant_last", True, None, False, None),
    ("think_last_turn", False, None, False, None),
    ("think_last_turn", True, True, False, None),
    ("think_earlier_turn", True, None, False, None),
    ("think_earlier_turn", True, False, False, None),
    ("reasoning_content_field", True, None, False, None),
    ("unicode", True, None, False, None),
    ("unicode", False, True, False, None),
    ("whitespace_content", True, None, False, None),
    ("template_like_text", True, None, False, None),
    ("empty_content", True, None, False, None),
    ("long_conversation", True, None, False, None),
    ("system_only", True, None, False, None),
    ("system_only", False, None, False, None),
    ("newline_runs", True, None, False, None),
    ("tools_question", True, None, True, None),
    ("tools_question", True, False, True, None),
    ("tools_system_question", True, None, True, None),
    ("tools_system_question", False, None, True, {"tools_in_user_message": False}),
    ("tool_call_roundtrip", True, None, True, None),
    ("tool_call_roundtrip", False, None, True, {"tools_in_user_message": False}),
    ("tool_call_then_question", True, None, True, None),
    ("tool_call_then_question", True, True, False, None),
    ("parallel_tool_calls", True, None, True, None),
    ("tool_call_string_arguments", True, None, True, None),
    ("tool_call_with_think", True, None, True, None),
    ("tool_call_with_think", False, False, True, None),
    ("nested_arguments", True, None, False, None),
    ("tool_response_first_message", True, None, False, None),
    ("not_alternating", True, None, False, None),
    ("starts_with_assistant", True, None, False, None),
    ("multimodal_content", True, None, False, None),
    ("system_list_content", True, None, False, None),
    ("unknown_role", True, None, False, None),
    ("assistant_none_content", True, None, False, None),
    ("multi_step_tools", True, None, True, None),
    ("multi_step_tools", False, True, True, None),
    ("reasoning_none_with_think", True, None, False, None),
    ("think_unclosed", True, False, False, None),
    ("multi_turn", True, None, False, {"date_string": "01 Jan 2025", "builtin_tools": ["brave_search", "code_interpreter"]}),
    ("tools_question", True, None, True, {"date_string": "31 Dec 2024", "custom_flag": True}),
]

# ---------------------------------------------------------------------------------------------
# Hugging Face's environment, rebuilt here for the cross-check and for CPU-only runs.


def replica_renderer():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):  # HF's AssistantTracker, minus the tracking
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_run"), [], [], body).set_lineno(lineno)

        def _run(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    def render(source, messages, tools, add_generation_prompt, kwargs):
        return env.from_string(source).render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
        )

    return render


def hf_renderer():
    """transformers' own renderer: render_jinja_template, or where its signature differs, the
    compiled template of _compile_jinja_template (the environment it renders with)."""
    from transformers.utils import chat_template_utils as ctu

    def via_render_jinja_template(source, messages, tools, add_generation_prompt, kwargs):
        rendered, _ = ctu.render_jinja_template(
            conversations=[messages], tools=tools, chat_template=source, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return rendered[0]

    def via_compiled_template(source, messages, tools, add_generation_prompt, kwargs):
        return ctu._compile_jinja_template(source).render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
        )

    probe = ("{{ messages[0].content }}{{ x }}", [{"role": "user", "content": "p"}], None, False, {"x": 1})
    for name, fn in (("render_jinja_template", via_render_jinja_template), ("_compile_jinja_template", via_compiled_template)):
        try:
            if fn(*probe) == "p1":
                return fn, "transformers.utils.chat_template_utils." + name
        except Exception as e:  # noqa: BLE001
            print(f"{name} unusable: {e}", file=sys.stderr)
    raise RuntimeError("no usable renderer in transformers.utils.chat_template_utils")


def load_tokenizer(name, entry, special, cache, versions):
    """The model's own tokenizer when its files are in the cache, else a stand-in with the same
    special tokens: apply_chat_template only needs those from it."""
    tok_dir = os.path.join(cache, entry["tokenizer"]) if entry.get("tokenizer") else None
    how = versions.setdefault("apply_chat_template_tokenizers", {})
    if tok_dir and os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tok_dir)
            how[name] = "AutoTokenizer.from_pretrained(%s): %s" % (entry["tokenizer"], type(tok).__name__)
            return tok
        except Exception as e:  # noqa: BLE001
            print(f"{name}: AutoTokenizer failed: {e}", file=sys.stderr)
            traceback.print_exc()
    try:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        named = {k: v for k, v in special.items() if v is not None and k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), **named)
        how[name] = "PreTrainedTokenizerFast stand-in with %s" % sorted(named)
        return tok
    except Exception as e:  # noqa: BLE001
        how[name] = "none: %s" % e
        traceback.print_exc()
        return None


def outcome(fn):
    try:
        return {"expected": fn()}
    except Exception as e:  # noqa: BLE001 - the exception is the golden
        return {"error": str(e), "error_type": type(e).__name__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures", "chat_templates"))
    ap.add_argument("--cache", default=os.path.join(ROOT, ".cache", "tokenizers"))
    ap.add_argument("--out", default=None, help="where to write the goldens (default: --fixtures)")
    args = ap.parse_args()
    out_dir = args.out or args.fixtures
    os.makedirs(out_dir, exist_ok=True)

    import jinja2

    versions = {"python": platform.python_version(), "jinja2": jinja2.__version__, "made": datetime.date.today().isoformat()}
    try:
        import transformers

        versions["transformers"] = transformers.__version__
        render, versions["renderer"] = hf_renderer()
    except Exception as e:  # noqa: BLE001
        render = replica_renderer()
        versions["renderer"] = "replica of HF's jinja2 environment (transformers unavailable: %s)" % e
        print("WARNING: transformers unavailable; goldens come from the replica", file=sys.stderr)
    try:
        import tokenizers

        versions["tokenizers"] = tokenizers.__version__
    except Exception:  # noqa: BLE001
        pass
    replica = replica_renderer()

    manifest = json.load(open(os.path.join(args.fixtures, "templates.json"), encoding="utf-8"))
    summary = {}
    for name, entry in manifest.items():
        source = open(os.path.join(args.fixtures, entry["file"]), encoding="utf-8", newline="").read()
        special = entry.get("special_tokens", {})
        tokenizer = None
        if "transformers" in versions:
            tokenizer = load_tokenizer(name, entry, special, args.cache, versions)
            if tokenizer is not None:
                tokenizer.chat_template = source
        cases = []
        counts = {"cases": 0, "errors": 0, "replica_mismatch": 0, "apply_checked": 0, "apply_mismatch": 0}
        for conv, add_gen, thinking, with_tools, extra in VARIANTS:
            messages = CONVERSATIONS[conv]
            tools = copy.deepcopy(TOOLS + ([CALC_TOOL] if "calc" in conv or "think" in conv else [])) if with_tools else None
            kwargs = {k: v for k, v in special.items() if v is not None}
            kwargs.update(extra or {})
            if thinking is not None:
                kwargs["enable_thinking"] = thinking
            case = {
                "name": f"{conv}/gen={int(add_gen)}/think={'-' if thinking is None else int(thinking)}"
                + ("/tools" if with_tools else "")
                + ("/extra" if extra else ""),
                "messages": messages,
                "tools": tools,
                "add_generation_prompt": add_gen,
            }
            if thinking is not None:
                case["enable_thinking"] = thinking
            if extra:
                case["extra"] = extra
            result = outcome(lambda: render(source, copy.deepcopy(messages), copy.deepcopy(tools), add_gen, dict(kwargs)))
            case.update(result)
            rep = outcome(lambda: replica(source, copy.deepcopy(messages), copy.deepcopy(tools), add_gen, dict(kwargs)))
            if rep != result:
                case["replica_differs"] = rep
                counts["replica_mismatch"] += 1
            if tokenizer is not None:
                extra_kwargs = dict(extra or {})
                if thinking is not None:
                    extra_kwargs["enable_thinking"] = thinking
                app = outcome(
                    lambda: tokenizer.apply_chat_template(
                        copy.deepcopy(messages), tools=copy.deepcopy(tools), add_generation_prompt=add_gen, tokenize=False, **extra_kwargs
                    )
                )
                counts["apply_checked"] += 1
                if app != result:
                    case["apply_chat_template_differs"] = app
                    counts["apply_mismatch"] += 1
            counts["cases"] += 1
            counts["errors"] += "error" in result
            cases.append(case)
        golden = {"template": entry["file"], "special_tokens": special, "cases": cases}
        with open(os.path.join(out_dir, f"{name}.goldens.json"), "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, indent=1)
            f.write("\n")
        summary[name] = counts
        print(name, counts)
    versions["summary"] = summary
    with open(os.path.join(out_dir, "VERSIONS.json"), "w", encoding="utf-8") as f:
        json.dump(versions, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
