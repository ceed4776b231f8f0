// The `nanovllm` command: generate, chat, inspect, predict, load (tools/cmd_*.cpp, one register
// function each; commands.h). Errors print as one line, "nanovllm: error: ...", exit status 1
// (2 for a command line that does not parse).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.h"
#if __has_include("bench.h")
#include "bench.h"
#define NANOVLLM_HAVE_BENCH 1
#endif
#include "runtime/error.h"

int main(int argc, char** argv) {
  using namespace nanovllm::cli;
  CLI::App app{"nanovllm: a readable, fast LLM inference engine (Hugging Face models, CPU or CUDA)"};
  app.name("nanovllm");
  app.require_subcommand(1);
  app.set_version_flag("--version", "nanovllm 0.1.0");
  app.get_formatter()->column_width(34);
  app.footer(
      "MODEL is a Hugging Face model folder, or a hub id (org/name) already in the local Hugging Face\n"
      "cache. Run 'nanovllm COMMAND --help' for a command's options.\n\n"
      "Examples:\n"
      "  nanovllm generate -m Qwen/Qwen3-0.6B \"The capital of France is\"\n"
      "  nanovllm chat -m Qwen/Qwen3-0.6B --system \"You are terse.\"\n"
      "  nanovllm inspect -m Qwen/Qwen3-0.6B");

  // ---- Subcommands are registered here, in the order --help lists them. ----
  add_generate_command(app);
  add_chat_command(app);
  add_inspect_command(app);
  add_predict_command(app);
  add_load_command(app);
  // bench: tools/bench.h and bench.cpp (written separately) register it.
#ifdef NANOVLLM_HAVE_BENCH
  add_bench_command(app);
#endif
  // ---- End of subcommands. ----

  if (argc == 1) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  try {
    app.parse(argc, argv);  // runs the chosen command's callback
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();  // a command that has printed its own error
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "nanovllm: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const nanovllm::Error& e) {
    std::fprintf(stderr, "nanovllm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nanovllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
