// `nanovllm generate` and `nanovllm chat`: text in, streamed text out.
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "commands.h"
#include "engine/llm_engine.h"
#include "runtime/error.h"

namespace nanovllm::cli {
namespace {

struct GenerateOptions {
  EngineOptions engine;
  SamplingOptions sampling;
  std::vector<std::string> prompts;  // positional and --prompt
  std::vector<std::string> tokens;   // --tokens, one prompt each
};

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t t : ids) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

std::string rate_text(int64_t tokens, double secs) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f s, %.1f tok/s", secs, secs > 0 ? tokens / secs : 0.0);
  return buf;
}

// The prompts as given: text (with '-' read from stdin, and stdin itself when nothing is given
// and it is not a terminal), then token-id lists.
std::vector<Prompt> gather_prompts(const GenerateOptions& o) {
  std::vector<Prompt> prompts;
  std::string stdin_text;
  bool stdin_read = false;
  auto from_stdin = [&]() -> std::string {
    if (!stdin_read) {
      stdin_text = read_stdin();
      if (!stdin_text.empty() && stdin_text.back() == '\n') stdin_text.pop_back();  // echo's newline
      if (!stdin_text.empty() && stdin_text.back() == '\r') stdin_text.pop_back();
      stdin_read = true;
    }
    return stdin_text;
  };
  for (const auto& p : o.prompts) prompts.emplace_back(p == "-" ? from_stdin() : p);
  for (const auto& t : o.tokens) prompts.emplace_back(parse_ids(t));
  if (prompts.empty()) {
    if (stdin_is_tty())
      throw Error("generate: give a prompt (an argument, --prompt, --tokens, or on standard input)");
    prompts.emplace_back(from_stdin());
  }
  return prompts;
}

// One prompt: its text (or, without a tokenizer, its token ids) printed as it comes.
void generate_one(LLM& llm, const Prompt& prompt, const SamplingParams& params) {
  const bool text = llm.engine().has_tokenizer();
  // Streamed text already shows progress on a terminal; a bar is for output that goes elsewhere.
  ProgressBar bar("generating", stderr_is_tty() && !stdout_is_tty());
  size_t n = 0;
  bool ends_with_newline = false;
  const auto outs = llm.generate({prompt}, {params}, [&](size_t, const RequestDelta& d) {
    for (int32_t t : d.token_ids)
      if (!text) std::printf("%s%d", n++ ? "," : "", t);
      else ++n;
    if (text) std::fwrite(d.text.data(), 1, d.text.size(), stdout);
    if (!d.text.empty()) ends_with_newline = d.text.back() == '\n';
    std::fflush(stdout);
    bar.update(static_cast<double>(n) / params.max_tokens, std::to_string(n) + " tokens, " + rate_text(n, bar.seconds()));
  });
  const RequestOutput& out = outs[0];
  if (out.finish_reason == "error") throw Error(out.error);
  if (!ends_with_newline || !text) std::printf("\n");
  std::fflush(stdout);
  bar.finish("[" + std::to_string(out.token_ids.size()) + " tokens] finish: " + out.finish_reason + ", " + rate_text(out.token_ids.size(), bar.seconds()) +
             " (prompt " + std::to_string(out.num_prompt_tokens) + " tokens, " +
             std::to_string(out.num_cached_tokens) + " cached)");
}

// Several prompts: one batch, a progress bar of requests done, then each output in order.
void generate_batch(LLM& llm, const std::vector<Prompt>& prompts, const SamplingParams& params) {
  ProgressBar bar("generating");
  size_t done = 0, tokens = 0;
  const auto outs = llm.generate(prompts, std::vector<SamplingParams>(prompts.size(), params),
                                 [&](size_t, const RequestDelta& d) {
                                   tokens += d.token_ids.size();
                                   done += d.finished;
                                   bar.update(static_cast<double>(done) / prompts.size(),
                                              std::to_string(done) + "/" + std::to_string(prompts.size()) +
                                                  " requests, " + rate_text(tokens, bar.seconds()));
                                 });
  bar.finish(std::to_string(prompts.size()) + " requests, " + std::to_string(tokens) + " tokens, " +
             rate_text(tokens, bar.seconds()));
  const bool text = llm.engine().has_tokenizer();
  for (size_t i = 0; i < outs.size(); ++i) {
    std::printf("--- %zu (%s) ---\n", i + 1, outs[i].finish_reason.c_str());
    if (outs[i].finish_reason == "error") std::printf("error: %s\n", outs[i].error.c_str());
    else if (text) std::printf("%s\n", outs[i].text.c_str());
    else std::printf("%s\n", ids_text(outs[i].token_ids).c_str());
  }
  for (const auto& o : outs)
    if (o.finish_reason == "error") throw Error("some prompts could not run: " + o.error);
}

void run_generate(const GenerateOptions& o) {
  const std::vector<Prompt> prompts = gather_prompts(o);
  auto llm = load_llm(o.engine);
  const SamplingParams params = o.sampling.resolve(llm->engine().config().model);
  if (prompts.size() == 1) generate_one(*llm, prompts[0], params);
  else generate_batch(*llm, prompts, params);
}

struct ChatOptions {
  EngineOptions engine;
  SamplingOptions sampling;
  std::string system;
};

void run_chat(const ChatOptions& o) {
  auto llm = load_llm(o.engine);
  if (!llm->engine().has_chat_template())
    llm->apply_chat_template({{"user", "hi"}});  // throws the reason: no template, or one we cannot use
  const SamplingParams params = o.sampling.resolve(llm->engine().config().model);
  const bool interactive = stdin_is_tty();
  std::vector<ChatMessage> history;
  auto reset = [&] {
    history.clear();
    if (!o.system.empty()) history.push_back({"system", o.system});
  };
  reset();
  if (interactive) std::fprintf(stderr, "chat with %s: /reset forgets the conversation, /exit (or Ctrl-D) ends it\n",
                                o.engine.model.c_str());
  std::string line;
  while (true) {
    if (interactive) {
      std::printf("> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      reset();
      std::fprintf(stderr, "(conversation reset)\n");
      continue;
    }
    if (line[0] == '/') {
      std::fprintf(stderr, "unknown command %s: /reset forgets the conversation, /exit ends the chat\n", line.c_str());
      continue;
    }
    history.push_back({"user", line});
    bool ends_with_newline = false;
    const auto start = std::chrono::steady_clock::now();
    const RequestOutput out = llm->chat({history}, params, [&](size_t, const RequestDelta& d) {
      std::fwrite(d.text.data(), 1, d.text.size(), stdout);
      if (!d.text.empty()) ends_with_newline = d.text.back() == '\n';
      std::fflush(stdout);
    })[0];
    if (out.finish_reason == "error") {
      history.pop_back();
      std::fprintf(stderr, "nanovllm: error: %s%s\n", out.error.c_str(),
                   history.size() > 1 ? " (/reset starts a new conversation)" : "");
      continue;
    }
    if (!ends_with_newline) std::printf("\n");
    std::fflush(stdout);
    history.push_back({"assistant", out.text});
    if (interactive) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "[%zu tokens, %s%s]\n", out.token_ids.size(), rate_text(out.token_ids.size(), secs).c_str(),
                   out.finish_reason == "length" ? ", cut at --max-tokens" : "");
    }
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* g = app.add_subcommand("generate", "Generate a continuation of a prompt, streamed as it comes");
  o->engine.add_to(g);
  g->add_option("prompt", o->prompts, "Prompt text; '-' reads standard input; several make a batch")
      ->type_name("PROMPT");
  g->add_option("-p,--prompt", o->prompts, "Prompt text (the same as a positional prompt); may be repeated")
      ->type_name("TEXT");
  g->add_option("-t,--tokens", o->tokens, "Prompt as comma-separated token ids, e.g. 1,17,42; may be repeated")
      ->type_name("IDS");
  o->sampling.add_to(g, 64);
  g->footer(
      "With no prompt, standard input is the prompt (when it is not a terminal). One prompt streams\n"
      "its text to stdout; several run as one batch, each output after a '--- N ---' line.\n"
      "A summary goes to stderr (a progress bar there when it is a terminal).\n\n"
      "Examples:\n"
      "  nanovllm generate -m Qwen/Qwen3-0.6B \"The capital of France is\"\n"
      "  echo \"def fib(n):\" | nanovllm generate -m ./my-model --temperature 0 -n 128\n"
      "  nanovllm generate -m ./my-model --tokens 1,17,42 --seed 7");
  g->callback([o] { run_generate(*o); });
}

void add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* c = app.add_subcommand("chat", "Chat with a model through its chat template, streaming each reply");
  o->engine.add_to(c);
  c->add_option("--system", o->system, "A system message that opens the conversation")->type_name("TEXT");
  o->sampling.add_to(c, 1024);
  c->footer(
      "Each line of input is a user message; the reply streams to stdout. /reset forgets the\n"
      "conversation, /exit or end of input ends the chat.\n\n"
      "Examples:\n"
      "  nanovllm chat -m Qwen/Qwen3-0.6B\n"
      "  printf 'Hello!\\n/reset\\nWhat is 2+2?\\n' | nanovllm chat -m ./my-model --temperature 0");
  c->callback([o] { run_chat(*o); });
}

}  // namespace nanovllm::cli
