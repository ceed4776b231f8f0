// What every GPU test file needs: skip (reported as SKIPPED, never a silent pass) where there is
// no CUDA device.
#pragma once

#include <gtest/gtest.h>

#include "runtime/cuda_device.h"

#define REQUIRE_GPU()                                                              \
  do {                                                                             \
    if (::nanovllm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";    \
  } while (0)
