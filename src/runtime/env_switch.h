// The engine's NANOVLLM_* on/off switches (NANOVLLM_GEMM_LOG, NANOVLLM_GEMM_AUTOTUNE,
// NANOVLLM_PROFILE_OPS): unset or empty gives `fallback`, "0" turns it off, anything else on.
#pragma once

namespace nanovllm {

bool env_switch(const char* name, bool fallback);

}  // namespace nanovllm
