#include "loader/torch_bin.h"

#include <cstring>
#include <map>
#include <string_view>

#include "loader/mapped_file.h"
#include "loader/shard_index.h"
#include "loader/unpickler.h"
#include "loader/zip_reader.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

using Kind = PickleValue::Kind;

bool starts_with(std::span<const std::byte> file, std::string_view magic, size_t at = 0) {
  if (file.size() < at + magic.size()) return false;
  return std::memcmp(file.data() + at, magic.data(), magic.size()) == 0;
}

// Before torch 1.6, torch.save wrote a bare pickle stream (starting with the PROTO opcode of its
// magic number) and, before 0.4, a tar archive. Both need Python to read and are refused early.
void refuse_legacy_format(std::span<const std::byte> file, const std::string& label) {
  const std::string advice = "; re-save it with torch >= 1.6 or convert it to safetensors";
  if (!file.empty() && file[0] == std::byte{0x80})
    throw Error(label + ": legacy torch.save format (a raw pickle stream, torch < 1.6)" +
                " is not supported" + advice);
  if (starts_with(file, "ustar", 257))
    throw Error(label + ": legacy tar-based torch.save format is not supported" + advice);
  if (!starts_with(file, "PK\x03\x04"))
    throw Error(label + ": not a torch.save checkpoint (no zip local header at the start)");
}

// Builds TensorViews from the unpickled records, resolving each storage to its zip entry once.
class ViewBuilder {
 public:
  ViewBuilder(const ZipReader& zip, std::string prefix, const std::string& label,
              std::shared_ptr<const void> owner, uint64_t copy_budget)
      : zip_(zip),
        prefix_(std::move(prefix)),
        label_(label),
        owner_(std::move(owner)),
        copy_budget_(copy_budget) {}

  TensorView build(const std::string& name, const TensorRecord& t) {
    const StorageRecord& s = *t.storage->storage;
    const DType dtype = dtype_of(name, t, s);
    const uint64_t elem = dtype_size(dtype);
    const Storage& storage = storage_of(name, s);
    const uint64_t storage_elems = storage.bytes.size() / elem;

    TensorView v;
    v.dtype = dtype;
    v.shape = t.size;
    v.source = label_;
    const std::string layout = "size " + shape_string(t.size) + ", stride " +
                               shape_string(t.stride) + ", storage_offset " +
                               std::to_string(t.storage_offset);
    // One past the furthest element the tensor reaches (0 if it has none), without overflow;
    // the element count is checked in the order TensorView::numel() multiplies.
    int64_t numel = 1;
    uint64_t extent = static_cast<uint64_t>(t.storage_offset) + 1;
    bool overflow = false;
    for (size_t d = 0; d < t.size.size(); ++d) {
      overflow |= __builtin_mul_overflow(numel, t.size[d], &numel);
      if (t.size[d] == 0) continue;
      uint64_t reach = 0;
      overflow |= __builtin_mul_overflow(static_cast<uint64_t>(t.size[d] - 1),
                                         static_cast<uint64_t>(t.stride[d]), &reach);
      overflow |= __builtin_add_overflow(extent, reach, &extent);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(static_cast<uint64_t>(numel), elem, &nbytes);
    if (overflow) fail(name, layout + " overflows 64-bit sizes");
    if (numel == 0) extent = static_cast<uint64_t>(t.storage_offset);
    if (extent > storage_elems)
      fail(name, layout + " reaches element " + std::to_string(extent) + ", but storage '" +
                     storage.entry + "' (" + s.type_name + ") holds only " +
                     std::to_string(storage_elems) + " " + std::string(dtype_name(dtype)) +
                     " elements");

    const std::byte* base = storage.bytes.data() + t.storage_offset * elem;
    v.nbytes = static_cast<size_t>(nbytes);
    if (is_contiguous(t)) {
      v.data = base;
      v.owner = owner_;
    } else {
      // A rare layout (e.g. a saved transpose): gather it once into a buffer the view owns. A
      // stride-0 or overlapping (expanded) tensor can name far more elements than the file
      // holds, so all copies together may not exceed the file's size.
      if (v.nbytes > copy_budget_)
        fail(name, layout + " is not contiguous and would need a " + std::to_string(v.nbytes) +
                       "-byte copy, more than the " + std::to_string(copy_budget_) +
                       " bytes left for copies (its strides overlap or expand the storage?)");
      copy_budget_ -= v.nbytes;
      auto buffer = std::make_shared<std::vector<std::byte>>(v.nbytes);
      gather(t, base, elem, buffer->data());
      v.data = buffer->data();
      v.owner = std::move(buffer);
    }
    return v;
  }

 private:
  struct Storage {
    std::span<const std::byte> bytes;
    std::string entry;
    std::string type_name;
  };

  [[noreturn]] void fail(const std::string& name, const std::string& problem) const {
    throw Error(label_ + ": tensor '" + name + "': " + problem);
  }

  DType dtype_of(const std::string& name, const TensorRecord& t, const StorageRecord& s) const {
    if (t.has_dtype) {
      if (!t.dtype) fail(name, "dtype " + t.dtype_name + " is not supported");
      return *t.dtype;
    }
    if (s.untyped)
      fail(name, "its storage is untyped (torch.UntypedStorage) but no dtype is given");
    if (!s.dtype) fail(name, "storage type " + s.type_name + " is not supported");
    return *s.dtype;
  }

  // Tied weights name the same storage key; they resolve to one span, so both views alias it.
  const Storage& storage_of(const std::string& name, const StorageRecord& s) {
    const auto found = storages_.find(s.key);
    if (found != storages_.end()) {
      if (found->second.type_name != s.type_name)
        fail(name, "storage '" + found->second.entry + "' is used as both " +
                       found->second.type_name + " and " + s.type_name);
      return found->second;
    }
    Storage st;
    st.entry = prefix_ + "/data/" + s.key;
    st.type_name = s.type_name;
    const ZipEntry* e = zip_.find(st.entry);
    if (!e) fail(name, "storage entry '" + st.entry + "' is missing from the archive");
    const uint64_t elem = s.untyped ? 1 : dtype_size(*s.dtype);
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(s.numel), elem, &nbytes))
      fail(name, "storage numel " + std::to_string(s.numel) + " overflows 64-bit sizes");
    const auto bytes = zip_.data(*e);
    if (bytes.size() < nbytes)
      fail(name, "storage '" + st.entry + "' holds " + std::to_string(bytes.size()) +
                     " bytes, but its persistent id declares " + std::to_string(s.numel) + " x " +
                     s.type_name + " = " + std::to_string(nbytes) + " bytes");
    st.bytes = bytes.first(nbytes);
    return storages_.emplace(s.key, std::move(st)).first->second;
  }

  // torch's definition: strides match row-major order, ignoring dimensions of size 1.
  static bool is_contiguous(const TensorRecord& t) {
    int64_t expected = 1;
    for (size_t d = t.size.size(); d-- > 0;) {
      if (t.size[d] == 0) return true;
      if (t.size[d] != 1 && t.stride[d] != expected) return false;
      expected *= t.size[d];
    }
    return true;
  }

  static void gather(const TensorRecord& t, const std::byte* base, size_t elem, std::byte* out) {
    const size_t dims = t.size.size();
    std::vector<int64_t> index(dims, 0);
    uint64_t src = 0;  // in elements, from base
    const int64_t numel = [&] {
      int64_t n = 1;
      for (int64_t s : t.size) n *= s;
      return n;
    }();
    for (int64_t i = 0; i < numel; ++i) {
      std::memcpy(out + i * elem, base + src * elem, elem);
      // Odometer: bump the last dimension, carrying into earlier ones.
      for (size_t d = dims; d-- > 0;) {
        if (++index[d] < t.size[d]) {
          src += t.stride[d];
          break;
        }
        src -= (index[d] - 1) * t.stride[d];
        index[d] = 0;
      }
    }
  }

  const ZipReader& zip_;
  std::string prefix_;
  const std::string& label_;
  std::shared_ptr<const void> owner_;
  uint64_t copy_budget_;  // bytes that non-contiguous copies may still take
  std::map<std::string, Storage> storages_;
};

// torch.save puts every entry under one folder ("archive/", or the file's stem in newer
// versions); like torch's reader, take it from the first entry.
std::string archive_prefix(const ZipReader& zip, const std::string& label) {
  if (zip.entries().empty()) throw Error(label + ": the zip archive is empty");
  const std::string& first = zip.entries().front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos || slash == 0)
    throw Error(label + ": zip entry '" + first +
                "' is not inside a folder, so this is not a torch.save archive");
  return first.substr(0, slash);
}

const PickleValue& state_dict_of(const PickleValue& root, const std::string& where) {
  if (root.kind != Kind::Dict)
    throw Error(where + ": holds a " + pickle_kind_name(root) + ", not a state dict");
  // Training checkpoints often wrap the weights: {"state_dict": {...}, "epoch": ...}.
  for (const auto& [k, v] : root.entries)
    if (v->kind == Kind::Tensor) return root;
  if (const PickleValue* inner = root.get("state_dict"); inner && inner->kind == Kind::Dict)
    return *inner;
  return root;
}

}  // namespace

TensorMap parse_torch_bin(std::span<const std::byte> file, const std::string& label,
                          std::shared_ptr<const void> owner) {
  refuse_legacy_format(file, label);
  const ZipReader zip(file, label);
  const std::string prefix = archive_prefix(zip, label);
  const std::string pkl_name = prefix + "/data.pkl";
  const ZipEntry* pkl = zip.find(pkl_name);
  if (!pkl) {
    if (zip.find(prefix + "/constants.pkl"))
      throw Error(label + ": a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    throw Error(label + ": no '" + pkl_name + "' entry, so this is not a torch.save checkpoint");
  }
  // Written since torch 2.1; storages are in the saving machine's byte order.
  if (const ZipEntry* order = zip.find(prefix + "/byteorder")) {
    const auto bytes = zip.data(*order);
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (text != "little")
      throw Error(label + ": storages are in '" + std::string(text.substr(0, 16)) +
                  "' byte order; only little-endian checkpoints are supported");
  }

  const std::string where = label + ": " + pkl_name;
  const PickleTree tree = unpickle_restricted(zip.data(*pkl), where);
  const PickleValue& dict = state_dict_of(tree.root(), where);
  ViewBuilder builder(zip, prefix, label, std::move(owner), file.size());
  TensorMap out;
  for (const auto& [key, value] : dict.entries) {
    if (value->kind != Kind::Tensor) continue;  // e.g. an epoch count beside the weights
    if (key->kind != Kind::String)
      throw Error(where + ": a tensor is keyed by a " + pickle_kind_name(*key) + ", not a name");
    out.insert_or_assign(key->text, builder.build(key->text, *value->tensor));
  }
  return out;
}

TensorMap load_torch_bin_file(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  return parse_torch_bin(mapped->bytes(), path.string(), mapped);
}

TensorMap load_torch_bin_index(const std::filesystem::path& index_path) {
  return load_sharded(read_shard_index(index_path), load_torch_bin_file);
}

}  // namespace nanovllm
