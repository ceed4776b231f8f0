// libFuzzer target for the restricted unpickler: any byte string must either unpickle into a value
// graph that keeps the unpickler's promises, or be a nanovllm::Error. A crash, a sanitizer report,
// any other exception, a cycle, or a node past the size and depth limits is a finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "loader/unpickler.h"
#include "runtime/error.h"

namespace {

using nanovllm::PickleValue;

std::vector<const PickleValue*> children(const PickleValue& v) {
  std::vector<const PickleValue*> out(v.items.begin(), v.items.end());
  for (const auto& [k, val] : v.entries) {
    out.push_back(k);
    out.push_back(val);
  }
  if (v.state) out.push_back(v.state);
  if (v.tensor) out.push_back(v.tensor->storage);
  return out;
}

// Walks the graph once per node (it is a DAG with sharing, so paths can be exponential) and traps
// on a cycle or a broken record, the things a consumer walking it would trip over.
void check(const PickleValue& root) {
  enum State : uint8_t { kOpen, kDone };
  std::unordered_map<const PickleValue*, State> seen;
  std::vector<std::pair<const PickleValue*, bool>> work{{&root, false}};
  while (!work.empty()) {
    auto [v, leaving] = work.back();
    work.pop_back();
    if (leaving) {
      seen[v] = kDone;
      continue;
    }
    auto it = seen.find(v);
    if (it != seen.end()) {
      if (it->second == kOpen) __builtin_trap();  // a cycle
      continue;
    }
    seen[v] = kOpen;
    if (v->depth < 1 || v->depth > nanovllm::kMaxPickleDepth) __builtin_trap();
    if (v->kind == PickleValue::Kind::Tensor) {
      const auto& t = *v->tensor;
      if (!t.storage || !t.storage->storage || t.size.size() != t.stride.size()) __builtin_trap();
    }
    if (v->kind == PickleValue::Kind::Storage && !v->storage) __builtin_trap();
    work.push_back({v, true});
    for (const PickleValue* c : children(*v)) {
      if (!c) __builtin_trap();
      work.push_back({c, false});
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nanovllm::PickleTree tree = nanovllm::unpickle_restricted(
        {reinterpret_cast<const std::byte*>(data), size}, "fuzz-input");
    if (tree.size() > nanovllm::kMaxPickleNodes) __builtin_trap();
    check(tree.root());
  } catch (const nanovllm::Error&) {
    // Rejecting malformed input with an Error is the contract.
  }
  return 0;
}
