// What the process can see of CUDA devices. Callable from any translation unit, CUDA or not,
// and safe where there is no GPU or no driver: the count is then 0.
#pragma once

#include <string>

namespace nanovllm {

int cuda_device_count();
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB"; Error if the device does not exist.
std::string cuda_device_summary(int device);

// Converts n float32 values to bf16 on the device (round to nearest even, as f32_to_bf16).
// Host pointers in and out: it is the first kernel the weight upload path uses, and the
// smallest end-to-end check that kernels build, launch and agree with the CPU.
void cuda_convert_f32_to_bf16(const float* host_in, unsigned short* host_out, size_t n);

}  // namespace nanovllm
