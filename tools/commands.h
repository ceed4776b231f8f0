// The subcommands of `nanovllm`, each registered on the app by one function (its options, help
// and callback); main() calls them in the order --help lists them.
#pragma once

#include <CLI/CLI.hpp>

namespace nanovllm::cli {

void add_generate_command(CLI::App& app);  // cmd_generate.cpp
void add_chat_command(CLI::App& app);
void add_inspect_command(CLI::App& app);   // cmd_model.cpp
void add_predict_command(CLI::App& app);
void add_load_command(CLI::App& app);

}  // namespace nanovllm::cli
