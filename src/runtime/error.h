// The one exception type of nanovllm. Every failure that a user can cause (a bad model folder,
// a bad request) is reported as an Error whose message names the problem, the field and the
// file; nothing user-caused may abort the process.
#pragma once

#include <stdexcept>
#include <string>

namespace nanovllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace nanovllm
