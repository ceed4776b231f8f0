// libFuzzer target for the chat template interpreter: the input is a template. It is parsed as
// ChatTemplate does (HF's trim_blocks + lstrip_blocks) and rendered over a fixed conversation
// with tools and tool calls. Anything but a string or a nanovllm::Error is a finding: a crash,
// a sanitizer report, a hang past the interpreter's step limit, or memory past its size limits.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& messages() {
  static const auto m = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are helpful. \u00e9\u65e5"},
    {"role": "user", "content": "Hi <think>x</think> {{ y }}"},
    {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello", "reasoning_content": null,
     "tool_calls": [{"id": "call00001", "type": "function",
                     "function": {"name": "f", "arguments": {"a": 1, "b": [true, null, 2.5]}}}]},
    {"role": "tool", "content": "{\"ok\": 1}", "tool_call_id": "call00001"},
    {"role": "user", "content": [{"type": "text", "text": "list content"}, {"type": "image"}]}
  ])");
  return m;
}

const nlohmann::ordered_json& tools() {
  static const auto t = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f",
    "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}])");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  try {
    const nanovllm::ChatTemplate tpl(source);
    const nlohmann::ordered_json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
    nanovllm::ChatTemplateOptions opts;
    try {
      tpl.render(messages(), opts, special, tools());
    } catch (const nanovllm::Error&) {
    }
    opts.add_generation_prompt = false;
    opts.enable_thinking = false;
    tpl.render(messages(), opts, special, nlohmann::ordered_json());
  } catch (const nanovllm::Error&) {
  }
  return 0;
}
