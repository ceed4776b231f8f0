// Checking every CUDA runtime call: a failure becomes an Error naming the call, the file and
// line, and CUDA's own description, never a silent wrong answer.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "runtime/error.h"

namespace nanovllm {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw Error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + call +
              " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace nanovllm

#define NANOVLLM_CUDA_CHECK(call)                                                     \
  do {                                                                                \
    cudaError_t nanovllm_err_ = (call);                                               \
    if (nanovllm_err_ != cudaSuccess)                                                 \
      ::nanovllm::throw_cuda_error(nanovllm_err_, #call, __FILE__, __LINE__);         \
  } while (0)

// After a kernel launch: catches bad launch configurations at once.
#define NANOVLLM_CUDA_CHECK_LAUNCH() NANOVLLM_CUDA_CHECK(cudaGetLastError())
