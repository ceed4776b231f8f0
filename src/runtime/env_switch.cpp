#include "runtime/env_switch.h"

#include <cstdlib>
#include <cstring>

namespace nanovllm {

bool env_switch(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strcmp(v, "0") != 0;
}

}  // namespace nanovllm
