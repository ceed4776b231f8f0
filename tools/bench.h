// `nanovllm bench`: throughput, latency and prefill benchmarks with a roofline (src/bench/).
#pragma once

#include <CLI/CLI.hpp>

// Adds the `bench` subcommand and its modes to `app`. Each mode runs from its CLI11 callback
// while app.parse() runs; a failure prints "nanovllm: error: ..." and becomes exit status 1
// through CLI::RuntimeError, which CLI11_PARSE turns into main's return value.
void add_bench_command(CLI::App& app);
