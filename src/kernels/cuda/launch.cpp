// See launch.cuh.
#include "kernels/cuda/launch.cuh"

#include "runtime/env_switch.h"

namespace nanovllm::gpu::detail {

bool pdl_enabled() {
  static const bool enabled = [] {
    if (!env_switch("NANOVLLM_PDL", true)) return false;  // NANOVLLM_PDL=0 turns it off
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return enabled;
}

}  // namespace nanovllm::gpu::detail
