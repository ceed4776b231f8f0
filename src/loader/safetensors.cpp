#include "loader/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "loader/mapped_file.h"
#include "loader/shard_index.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

// The reference implementation (huggingface/safetensors) refuses headers over 100 MB; a bigger
// length is a corrupt or foreign file, and refusing it early avoids parsing gigabytes as JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kLengthFieldBytes = 8;

// Where a tensor's bytes lie, kept until every entry is parsed so overlaps can be checked.
struct Placement {
  std::string name;
  uint64_t begin = 0, end = 0;
};

uint64_t read_u64_le(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

// A JSON integer in [0, max]; nlohmann stores non-negative integers as unsigned, negative ones
// as signed, and anything with a fraction or exponent as a float (which we refuse).
bool as_non_negative(const nlohmann::json& v, uint64_t max, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0) return false;
    out = static_cast<uint64_t>(v.get<int64_t>());
  } else {
    return false;
  }
  return out <= max;
}

class HeaderParser {
 public:
  HeaderParser(const std::string& label, uint64_t data_size)
      : label_(label), data_size_(data_size) {}

  // Validates one header entry and returns its view; `data` is the start of the data area.
  TensorView entry(const std::string& name, const nlohmann::json& e, const std::byte* data,
                   std::vector<Placement>& placements) const {
    if (!e.is_object()) fail(name, "entry is not an object");
    TensorView v;
    v.dtype = dtype_of(name, e);
    v.shape = shape_of(name, e);
    const auto [begin, end] = offsets_of(name, e);
    // Checked in the order TensorView::numel() multiplies, so numel() can never overflow later,
    // even for shapes like [2^62, 2^62, 0] whose product is 0.
    int64_t numel = 1;
    for (int64_t d : v.shape)
      if (__builtin_mul_overflow(numel, d, &numel))
        fail(name, "shape " + shape_string(v.shape) + " has more elements than fit in 64 bits");
    uint64_t expected = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(v.dtype), &expected))
      fail(name, "shape " + shape_string(v.shape) + " of " + std::string(dtype_name(v.dtype)) +
                     " needs more bytes than fit in 64 bits");
    if (end - begin != expected)
      fail(name, "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] hold " + std::to_string(end - begin) + " bytes, but " +
                     std::string(dtype_name(v.dtype)) + " x " + shape_string(v.shape) +
                     " needs " + std::to_string(expected) + " bytes");
    v.data = data + begin;
    v.nbytes = static_cast<size_t>(end - begin);
    placements.push_back({name, begin, end});
    return v;
  }

  // Two tensors sharing bytes is a corrupt file (or a trick); zero-byte tensors share nothing.
  void check_no_overlap(std::vector<Placement>& placements) const {
    std::erase_if(placements, [](const Placement& p) { return p.begin == p.end; });
    std::sort(placements.begin(), placements.end(),
              [](const Placement& a, const Placement& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < placements.size(); ++i) {
      const Placement& a = placements[i - 1];
      const Placement& b = placements[i];
      if (b.begin < a.end)
        throw Error(label_ + ": tensors '" + a.name + "' " + range(a) + " and '" + b.name + "' " +
                    range(b) + " overlap in the data area");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& name, const std::string& problem) const {
    throw Error(label_ + ": tensor '" + name + "': " + problem);
  }
  static std::string range(const Placement& p) {
    return "[" + std::to_string(p.begin) + ", " + std::to_string(p.end) + "]";
  }

  const nlohmann::json& field(const std::string& name, const nlohmann::json& e,
                              const char* key) const {
    auto it = e.find(key);
    if (it == e.end()) fail(name, std::string("missing \"") + key + "\"");
    return *it;
  }

  DType dtype_of(const std::string& name, const nlohmann::json& e) const {
    const auto& d = field(name, e, "dtype");
    if (!d.is_string()) fail(name, "\"dtype\" is not a string");
    const auto& s = d.get_ref<const std::string&>();
    auto t = dtype_from_safetensors(s);
    if (!t) fail(name, "unknown dtype '" + s + "'");
    return *t;
  }

  std::vector<int64_t> shape_of(const std::string& name, const nlohmann::json& e) const {
    const auto& s = field(name, e, "shape");
    if (!s.is_array()) fail(name, "\"shape\" is not an array");
    std::vector<int64_t> shape;
    for (size_t i = 0; i < s.size(); ++i) {
      uint64_t n = 0;
      if (!as_non_negative(s[i], std::numeric_limits<int64_t>::max(), n))
        fail(name, "\"shape\" must hold non-negative 64-bit integers, but element " +
                       std::to_string(i) + " does not");
      shape.push_back(static_cast<int64_t>(n));
    }
    return shape;
  }

  std::pair<uint64_t, uint64_t> offsets_of(const std::string& name, const nlohmann::json& e) const {
    const auto& o = field(name, e, "data_offsets");
    uint64_t begin = 0, end = 0;
    const uint64_t any = std::numeric_limits<uint64_t>::max();
    if (!o.is_array() || o.size() != 2 || !as_non_negative(o[0], any, begin) ||
        !as_non_negative(o[1], any, end))
      fail(name, "\"data_offsets\" is not a [begin, end] pair of non-negative integers");
    const std::string r = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) fail(name, "data_offsets " + r + " have begin > end");
    if (end > data_size_)
      fail(name, "data_offsets " + r + " lie outside the data area of " +
                     std::to_string(data_size_) + " bytes");
    return {begin, end};
  }

  const std::string& label_;
  uint64_t data_size_;
};

}  // namespace

TensorMap parse_safetensors(std::span<const std::byte> file, const std::string& label,
                            std::shared_ptr<const void> owner) {
  if (file.size() < kLengthFieldBytes)
    throw Error(label + ": truncated: the file is " + std::to_string(file.size()) +
                " bytes, shorter than the 8-byte header length");
  const uint64_t header_len = read_u64_le(file.data());
  const uint64_t after_length = file.size() - kLengthFieldBytes;
  if (header_len > kMaxHeaderBytes)
    throw Error(label + ": header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(kMaxHeaderBytes) + "-byte limit (corrupt, or not safetensors)");
  if (header_len > after_length)
    throw Error(label + ": truncated: header length " + std::to_string(header_len) +
                " runs past the end of the file (" + std::to_string(after_length) +
                " bytes follow the length field)");

  const char* json_begin = reinterpret_cast<const char*>(file.data() + kLengthFieldBytes);
  const std::byte* data = file.data() + kLengthFieldBytes + header_len;
  HeaderParser parser(label, after_length - header_len);
  TensorMap out;
  try {
    const auto header =
        nlohmann::json::parse(json_begin, json_begin + header_len, nullptr, /*allow_exceptions=*/false);
    if (header.is_discarded()) throw Error(label + ": header is not valid JSON");
    if (!header.is_object())
      throw Error(label + ": header is a JSON " + header.type_name() + ", not an object");
    std::vector<Placement> placements;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;  // free-form strings; nothing we load depends on it
      TensorView v = parser.entry(name, entry, data, placements);
      v.owner = owner;
      v.source = label;
      out.emplace(name, std::move(v));
    }
    parser.check_no_overlap(placements);
  } catch (const nlohmann::json::exception& e) {
    // Every access above is type-checked first; this only keeps a library surprise from
    // escaping as anything but our own error type.
    throw Error(label + ": malformed header: " + e.what());
  }
  return out;
}

TensorMap load_safetensors_file(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  return parse_safetensors(mapped->bytes(), path.string(), mapped);
}

TensorMap load_safetensors_index(const std::filesystem::path& index_path) {
  return load_sharded(read_shard_index(index_path), load_safetensors_file);
}

}  // namespace nanovllm
