// Choosing a backend by name, and what a build without CUDA says when asked for it.
#include "runtime/backend.h"
#include "runtime/error.h"

namespace nanovllm {

#ifndef NANOVLLM_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw Error("this build of nanovllm has no CUDA backend (it was built without the CUDA toolkit); "
              "use backend \"cpu\", or rebuild where nvcc is installed");
}
bool cuda_backend_available() { return false; }
#endif

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend(0);
  if (name == "auto") return cuda_backend_available() ? make_cuda_backend(0) : make_cpu_backend();
  throw Error("unknown backend \"" + name + "\": use \"auto\", \"cpu\" or \"cuda\"");
}

}  // namespace nanovllm
