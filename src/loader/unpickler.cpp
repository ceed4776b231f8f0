#include "loader/unpickler.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "runtime/error.h"

namespace nanovllm {
namespace {

using Kind = PickleValue::Kind;

// Opcodes, named as in CPython's Lib/pickle.py; only these are understood.
// clang-format off
enum Op : uint8_t {
  kMark = '(', kStop = '.', kBinint = 'J', kBinint1 = 'K', kBinint2 = 'M', kNone = 'N',
  kBinpersid = 'Q', kReduce = 'R', kBinunicode = 'X', kAppend = 'a', kBuild = 'b',
  kGlobal = 'c', kAppends = 'e', kBinget = 'h', kLongBinget = 'j', kEmptyList = ']',
  kBinput = 'q', kLongBinput = 'r', kSetitem = 's', kTuple = 't', kEmptyTuple = ')',
  kSetitems = 'u', kBinfloat = 'G', kEmptyDict = '}', kBinbytes = 'B', kShortBinbytes = 'C',
  kProto = 0x80, kNewobj = 0x81, kTuple1 = 0x85, kTuple2 = 0x86, kTuple3 = 0x87,
  kNewtrue = 0x88, kNewfalse = 0x89, kLong1 = 0x8a, kShortBinunicode = 0x8c,
  kBinunicode8 = 0x8d, kBinbytes8 = 0x8e, kStackGlobal = 0x93, kMemoize = 0x94, kFrame = 0x95,
};
// clang-format on

constexpr int kMaxProtocol = 5;
// GLOBAL's text operands are dotted Python names; anything longer is not one we allow.
constexpr size_t kMaxGlobalLine = 256;

struct Allowed {
  PickleGlobal what;
  std::optional<DType> dtype;
};

// torch storage classes and dtypes nanovllm cannot represent are still resolved (they are plain
// data), so that a tensor using one fails with "dtype not supported" rather than as an attack.
std::optional<Allowed> resolve_torch(std::string_view name) {
  struct Named {
    std::string_view name;
    PickleGlobal what;
    std::optional<DType> dtype;
  };
  using G = PickleGlobal;
  // clang-format off
  static constexpr std::array kTorch = {
      Named{"FloatStorage", G::StorageType, DType::F32},
      Named{"DoubleStorage", G::StorageType, DType::F64},
      Named{"HalfStorage", G::StorageType, DType::F16},
      Named{"BFloat16Storage", G::StorageType, DType::BF16},
      Named{"LongStorage", G::StorageType, DType::I64},
      Named{"IntStorage", G::StorageType, DType::I32},
      Named{"ShortStorage", G::StorageType, DType::I16},
      Named{"CharStorage", G::StorageType, DType::I8},
      Named{"ByteStorage", G::StorageType, DType::U8},
      Named{"BoolStorage", G::StorageType, DType::Bool},
      Named{"UntypedStorage", G::StorageType, std::nullopt},
      Named{"ComplexFloatStorage", G::StorageType, std::nullopt},
      Named{"ComplexDoubleStorage", G::StorageType, std::nullopt},
      Named{"QInt8Storage", G::StorageType, std::nullopt},
      Named{"QUInt8Storage", G::StorageType, std::nullopt},
      Named{"QInt32Storage", G::StorageType, std::nullopt},
      Named{"QUInt4x2Storage", G::StorageType, std::nullopt},
      Named{"QUInt2x4Storage", G::StorageType, std::nullopt},
      Named{"float32", G::DType, DType::F32},   Named{"float", G::DType, DType::F32},
      Named{"float64", G::DType, DType::F64},   Named{"double", G::DType, DType::F64},
      Named{"float16", G::DType, DType::F16},   Named{"half", G::DType, DType::F16},
      Named{"bfloat16", G::DType, DType::BF16}, Named{"int64", G::DType, DType::I64},
      Named{"long", G::DType, DType::I64},      Named{"int32", G::DType, DType::I32},
      Named{"int", G::DType, DType::I32},       Named{"int16", G::DType, DType::I16},
      Named{"short", G::DType, DType::I16},     Named{"int8", G::DType, DType::I8},
      Named{"uint8", G::DType, DType::U8},      Named{"bool", G::DType, DType::Bool},
      // The dtypes torch saves through _rebuild_tensor_v3 (torch.storage._new_dtypes()).
      Named{"float8_e5m2", G::DType, std::nullopt},
      Named{"float8_e4m3fn", G::DType, std::nullopt},
      Named{"float8_e5m2fnuz", G::DType, std::nullopt},
      Named{"float8_e4m3fnuz", G::DType, std::nullopt},
      Named{"float8_e8m0fnu", G::DType, std::nullopt},
      Named{"float4_e2m1fn_x2", G::DType, std::nullopt},
      Named{"uint16", G::DType, std::nullopt},
      Named{"uint32", G::DType, std::nullopt},
      Named{"uint64", G::DType, std::nullopt},
      Named{"bits8", G::DType, std::nullopt},
      Named{"bits16", G::DType, std::nullopt},
      Named{"bits1x8", G::DType, std::nullopt},
      Named{"bits2x4", G::DType, std::nullopt},
      Named{"bits4x2", G::DType, std::nullopt},
  };
  // clang-format on
  for (const auto& n : kTorch)
    if (n.name == name) return Allowed{n.what, n.dtype};
  return std::nullopt;
}

std::optional<Allowed> resolve_global(std::string_view module, std::string_view name) {
  using G = PickleGlobal;
  if (module == "collections" && name == "OrderedDict") return Allowed{G::OrderedDict, {}};
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor_v2") return Allowed{G::RebuildTensorV2, {}};
    if (name == "_rebuild_tensor_v3") return Allowed{G::RebuildTensorV3, {}};
    if (name == "_rebuild_parameter") return Allowed{G::RebuildParameter, {}};
    if (name == "_rebuild_parameter_with_state") return Allowed{G::RebuildParameterWithState, {}};
  }
  if (module == "torch") return resolve_torch(name);
  return std::nullopt;
}

// Names in messages come from the file: keep them to one printable line.
std::string printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u < 0x7f) {
      out += s[i];
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string hex_byte(uint8_t b) {
  static const char* hex = "0123456789abcdef";
  return std::string("0x") + hex[b >> 4] + hex[b & 15];
}

}  // namespace

const PickleValue* PickleValue::get(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::String && k->text == key) return v;
  return nullptr;
}

std::string pickle_kind_name(const PickleValue& v) {
  // clang-format off
  switch (v.kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global '" + printable(v.text) + "'";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  // clang-format on
  return "?";
}

class RestrictedUnpickler {
 public:
  RestrictedUnpickler(std::span<const std::byte> data, const std::string& label)
      : data_(data), label_(label) {}

  PickleTree run() {
    while (tree_.root_ == nullptr) {
      if (pos_ >= data_.size()) {
        op_pos_ = pos_;
        fail("truncated: the pickle ends before its STOP opcode");
      }
      op_pos_ = pos_;
      step(static_cast<uint8_t>(u(1)));
    }
    return std::move(tree_);
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(label_ + ": byte " + std::to_string(op_pos_) + ": " + problem);
  }

  // ---- reading operands ----
  const std::byte* take(uint64_t n) {
    if (n > data_.size() - pos_)
      fail("truncated: opcode needs " + std::to_string(n) + " more bytes, but only " +
           std::to_string(data_.size() - pos_) + " remain");
    const std::byte* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  uint64_t u(int bytes) {  // little-endian unsigned
    const std::byte* p = take(bytes);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
    return v;
  }
  std::string_view text(uint64_t n) {
    return {reinterpret_cast<const char*>(take(n)), static_cast<size_t>(n)};
  }
  std::string_view line() {
    const size_t limit = std::min(data_.size(), pos_ + kMaxGlobalLine + 1);
    for (size_t i = pos_; i < limit; ++i)
      if (data_[i] == std::byte{'\n'}) {
        std::string_view s = text(i - pos_);
        ++pos_;
        return s;
      }
    if (limit == data_.size()) fail("truncated: GLOBAL name has no terminating newline");
    fail("GLOBAL name is longer than " + std::to_string(kMaxGlobalLine) + " bytes");
  }

  // ---- building values ----
  PickleValue* make(Kind kind) {
    if (tree_.nodes_.size() >= kMaxPickleNodes)
      fail("more than " + std::to_string(kMaxPickleNodes) + " values; refusing to build more");
    PickleValue& v = tree_.nodes_.emplace_back();
    v.kind = kind;
    return &v;
  }
  // Puts `child` inside `parent`: the child is frozen from then on, which keeps the graph a DAG
  // (a container can only gain children before anything holds it) and its depth exact.
  void adopt(PickleValue* parent, PickleValue* child) {
    child->frozen = true;
    if (parent->frozen)
      fail("cannot add to a " + pickle_kind_name(*parent) +
           " that is already inside another value (self-referencing data is not supported)");
    parent->depth = std::max(parent->depth, child->depth + 1);
    if (parent->depth > kMaxPickleDepth)
      fail("values nest deeper than " + std::to_string(kMaxPickleDepth) + " levels");
  }
  PickleValue* make_tuple(const std::vector<PickleValue*>& items) {
    PickleValue* t = make(Kind::Tuple);
    for (PickleValue* item : items) {
      adopt(t, item);
      t->items.push_back(item);
    }
    return t;
  }
  void set_item(PickleValue* dict, PickleValue* key, PickleValue* value) {
    adopt(dict, key);
    adopt(dict, value);
    if (key->kind == Kind::String) {
      // A key node reused through the memo is found by address, so a long key set many times
      // costs its length once; text views point into nodes, which never move or change.
      DictKeys& keys = dict_keys_[dict];
      auto by_node = keys.by_node.find(key);
      if (by_node == keys.by_node.end()) {
        auto [by_text, added] = keys.by_text.try_emplace(key->text, dict->entries.size());
        by_node = keys.by_node.emplace(key, by_text->second).first;
        if (added) dict->entries.emplace_back(key, value);
      }
      dict->entries[by_node->second].second = value;
      return;
    }
    dict->entries.emplace_back(key, value);
  }

  // ---- the stack; MARK opens a frame that only pop_mark may pop into ----
  void push(PickleValue* v) { stack_.push_back(v); }
  PickleValue* pop() {
    if (stack_.size() <= frame_base()) fail("stack underflow");
    PickleValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PickleValue* top() {
    if (stack_.size() <= frame_base()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<PickleValue*> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to (stack underflow)");
    std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()),
                                    stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
  PickleValue* container(Kind kind, const char* op) {
    PickleValue* c = top();
    if (c->kind != kind)
      fail(std::string(op) + " needs a " + (kind == Kind::List ? "list" : "dict") +
           " below its operands, found a " + pickle_kind_name(*c));
    return c;
  }

  void memo_put(uint64_t index) { memo_[index] = top(); }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo index " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  // One opcode; operands are read as they are needed.
  // clang-format off
  void step(uint8_t op) {
    switch (op) {
      case kProto: {
        const uint64_t v = u(1);
        if (v < 2 || v > kMaxProtocol)
          fail("pickle protocol " + std::to_string(v) + " is not supported (2 to 5 are)");
        return;
      }
      case kFrame: {
        // Frames only batch reads in CPython; a frame that claims more than is left is truncated.
        const uint64_t n = u(8);
        if (n > data_.size() - pos_)
          fail("truncated: FRAME of " + std::to_string(n) + " bytes, only " +
               std::to_string(data_.size() - pos_) + " remain");
        return;
      }
      case kStop: tree_.root_ = pop(); return;
      case kMark:
        if (marks_.size() >= kMaxPickleMarks)
          fail("more than " + std::to_string(kMaxPickleMarks) + " nested MARKs");
        marks_.push_back(stack_.size());
        return;
      case kEmptyDict: return push(make(Kind::Dict));
      case kEmptyList: return push(make(Kind::List));
      case kEmptyTuple: return push(make(Kind::Tuple));
      case kTuple: return push(make_tuple(pop_mark()));
      case kTuple1: case kTuple2: case kTuple3: {
        std::vector<PickleValue*> items(op - kTuple1 + 1);
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        return push(make_tuple(items));
      }
      case kBinput: return memo_put(u(1));
      case kLongBinput: return memo_put(u(4));
      case kMemoize: return memo_put(memo_.size());
      case kBinget: return memo_get(u(1));
      case kLongBinget: return memo_get(u(4));
      case kBinint: return push_int(static_cast<int32_t>(static_cast<uint32_t>(u(4))));
      case kBinint1: return push_int(static_cast<int64_t>(u(1)));
      case kBinint2: return push_int(static_cast<int64_t>(u(2)));
      case kLong1: return push_long(u(1));
      case kBinfloat: {
        const std::byte* p = take(8);  // an IEEE double, big-endian
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | std::to_integer<uint64_t>(p[i]);
        PickleValue* v = make(Kind::Float);
        std::memcpy(&v->real, &bits, sizeof bits);
        return push(v);
      }
      case kNewtrue: case kNewfalse: {
        PickleValue* v = make(Kind::Bool);
        v->boolean = op == kNewtrue;
        return push(v);
      }
      case kNone: return push(make(Kind::None));
      case kShortBinunicode: return push_text(Kind::String, u(1));
      case kBinunicode: return push_text(Kind::String, u(4));
      case kBinunicode8: return push_text(Kind::String, u(8));
      case kShortBinbytes: return push_text(Kind::Bytes, u(1));
      case kBinbytes: return push_text(Kind::Bytes, u(4));
      case kBinbytes8: return push_text(Kind::Bytes, u(8));
      case kAppend: {
        PickleValue* v = pop();
        PickleValue* list = container(Kind::List, "APPEND");
        adopt(list, v);
        list->items.push_back(v);
        return;
      }
      case kAppends: {
        std::vector<PickleValue*> items = pop_mark();
        PickleValue* list = container(Kind::List, "APPENDS");
        for (PickleValue* v : items) {
          adopt(list, v);
          list->items.push_back(v);
        }
        return;
      }
      case kSetitem: {
        PickleValue* value = pop();
        PickleValue* key = pop();
        set_item(container(Kind::Dict, "SETITEM"), key, value);
        return;
      }
      case kSetitems: {
        std::vector<PickleValue*> items = pop_mark();
        if (items.size() % 2) fail("SETITEMS has an odd number of operands");
        PickleValue* dict = container(Kind::Dict, "SETITEMS");
        for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
        return;
      }
      case kGlobal: {
        const std::string_view module = line();
        const std::string_view name = line();
        return push_global(module, name);
      }
      case kStackGlobal: {
        PickleValue* name = pop();
        PickleValue* module = pop();
        if (module->kind != Kind::String || name->kind != Kind::String)
          fail("STACK_GLOBAL needs two strings, found a " + pickle_kind_name(*module) + " and a " +
               pickle_kind_name(*name));
        return push_global(module->text, name->text);
      }
      case kReduce: {
        PickleValue* args = pop();
        PickleValue* callable = pop();
        return push(reduce(callable, args, "REDUCE"));
      }
      case kNewobj: {
        PickleValue* args = pop();
        PickleValue* cls = pop();
        if (cls->kind != Kind::Global || cls->global != PickleGlobal::OrderedDict)
          fail("NEWOBJ may only create a collections.OrderedDict, not a " + pickle_kind_name(*cls));
        return push(reduce(cls, args, "NEWOBJ"));
      }
      case kBuild: {
        PickleValue* state = pop();
        PickleValue* target = top();
        // Only OrderedDict takes state in a state dict: its attributes, i.e. {'_metadata': ...}.
        if (target->kind != Kind::Dict)
          fail("BUILD on a " + pickle_kind_name(*target) + " is not supported");
        if (state->kind != Kind::Dict && state->kind != Kind::None)
          fail("BUILD state for a dict must be a dict, found a " + pickle_kind_name(*state));
        adopt(target, state);
        target->state = state;
        return;
      }
      case kBinpersid: return push(storage(pop()));
      default:
        fail("unknown or unsupported pickle opcode " + hex_byte(op) +
             " (only what torch.save writes for tensors is understood)");
    }
  }
  // clang-format on

  void push_int(int64_t value) {
    PickleValue* v = make(Kind::Int);
    v->integer = value;
    push(v);
  }
  // LONG1: a little-endian two's-complement integer of n bytes.
  void push_long(uint64_t n) {
    if (n > 8) fail("integer of " + std::to_string(n) + " bytes does not fit in 64 bits");
    uint64_t bits = n ? u(static_cast<int>(n)) : 0;
    if (n > 0 && n < 8 && (bits >> (8 * n - 1)) & 1) bits |= ~uint64_t{0} << (8 * n);  // sign
    push_int(static_cast<int64_t>(bits));
  }
  void push_text(Kind kind, uint64_t n) {
    const std::string_view s = text(n);
    PickleValue* v = make(kind);
    v->text.assign(s);
    push(v);
  }
  void push_global(std::string_view module, std::string_view name) {
    const std::string full = std::string(module) + "." + std::string(name);
    const auto allowed = resolve_global(module, name);
    if (!allowed)
      fail("refusing to unpickle global '" + printable(full) +
           "' (only torch tensor data is allowed)");
    PickleValue* v = make(Kind::Global);
    v->text = full;
    v->global = allowed->what;
    v->global_dtype = allowed->dtype;
    push(v);
  }

  // REDUCE on an allowed callable, evaluated as data construction.
  PickleValue* reduce(PickleValue* callable, PickleValue* args, const char* op) {
    if (callable->kind != Kind::Global)
      fail(std::string(op) + " needs a global to call, found a " + pickle_kind_name(*callable));
    if (args->kind != Kind::Tuple)
      fail(std::string(op) + " arguments must be a tuple, found a " + pickle_kind_name(*args));
    const std::string who = "'" + printable(callable->text) + "'";
    const auto& a = args->items;
    switch (callable->global) {
      case PickleGlobal::OrderedDict:
        if (!a.empty()) fail(who + " must be called with no arguments");
        return make(Kind::Dict);
      case PickleGlobal::RebuildTensorV2:
        return tensor(who, a, /*v3=*/false);
      case PickleGlobal::RebuildTensorV3:
        return tensor(who, a, /*v3=*/true);
      case PickleGlobal::RebuildParameter:
      case PickleGlobal::RebuildParameterWithState: {
        const size_t arity = callable->global == PickleGlobal::RebuildParameter ? 3 : 4;
        if (a.size() != arity || a[0]->kind != Kind::Tensor)
          fail(who + " expects (tensor, requires_grad, backward_hooks" +
               (arity == 4 ? ", state)" : ")") + " with " + std::to_string(arity) + " arguments");
        // The parameter is its tensor; the tensor node is immutable, so sharing it is safe.
        return const_cast<PickleValue*>(a[0]);
      }
      case PickleGlobal::StorageType:
      case PickleGlobal::DType:
        break;
    }
    fail("global " + who + " is data, not something that may be called");
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
  // [, metadata]); _v3 puts the dtype before the metadata.
  PickleValue* tensor(const std::string& who, const std::vector<const PickleValue*>& a, bool v3) {
    const size_t min_args = v3 ? 7 : 6;
    if (a.size() < min_args || a.size() > min_args + 1)
      fail(who + " expects " + std::to_string(min_args) + " or " + std::to_string(min_args + 1) +
           " arguments, got " + std::to_string(a.size()));
    auto rec = std::make_unique<TensorRecord>();
    if (a[0]->kind != Kind::Storage)
      fail(who + " argument 0 must be a storage (persistent id), found a " +
           pickle_kind_name(*a[0]));
    rec->storage = a[0];
    if (a[1]->kind != Kind::Int || a[1]->integer < 0)
      fail(who + " argument 1 (storage_offset) must be a non-negative int");
    rec->storage_offset = a[1]->integer;
    rec->size = int_tuple(who, *a[2], "size");
    rec->stride = int_tuple(who, *a[3], "stride");
    if (rec->size.size() != rec->stride.size())
      fail(who + " has " + std::to_string(rec->size.size()) + " sizes but " +
           std::to_string(rec->stride.size()) + " strides");
    if (a[4]->kind != Kind::Bool) fail(who + " argument 4 (requires_grad) must be a bool");
    rec->requires_grad = a[4]->boolean;
    // a[5] (backward_hooks) is always an empty OrderedDict and is ignored, as is the metadata
    // dict (conj/neg bits), which only applies to complex tensors.
    if (v3) {
      if (a[6]->kind != Kind::Global || a[6]->global != PickleGlobal::DType)
        fail(who + " argument 6 must be a torch dtype, found a " + pickle_kind_name(*a[6]));
      rec->has_dtype = true;
      rec->dtype = a[6]->global_dtype;
      rec->dtype_name = a[6]->text;
    }
    PickleValue* t = make(Kind::Tensor);
    t->tensor = std::move(rec);
    return t;
  }

  std::vector<int64_t> int_tuple(const std::string& who, const PickleValue& v, const char* what) {
    if (v.kind != Kind::Tuple)
      fail(who + " " + what + " must be a tuple of ints, found a " + pickle_kind_name(v));
    std::vector<int64_t> out;
    for (const PickleValue* item : v.items) {
      if (item->kind != Kind::Int || item->integer < 0)
        fail(who + " " + what + " must hold non-negative ints");
      out.push_back(item->integer);
    }
    return out;
  }

  // torch.save's persistent_id: ('storage', storage_type, key, location, numel).
  PickleValue* storage(PickleValue* pid) {
    const auto& a = pid->items;
    if (pid->kind != Kind::Tuple || a.size() != 5 || a[0]->kind != Kind::String ||
        a[0]->text != "storage")
      fail("persistent id is not torch's ('storage', type, key, location, numel) tuple");
    if (a[1]->kind != Kind::Global || a[1]->global != PickleGlobal::StorageType)
      fail("persistent id storage type must be a torch storage class, found a " +
           pickle_kind_name(*a[1]));
    if (a[2]->kind != Kind::String) fail("persistent id storage key must be a string");
    if (a[3]->kind != Kind::String) fail("persistent id location must be a string");
    if (a[4]->kind != Kind::Int || a[4]->integer < 0)
      fail("persistent id numel must be a non-negative int");
    auto rec = std::make_unique<StorageRecord>();
    rec->type_name = a[1]->text;
    rec->dtype = a[1]->global_dtype;
    rec->untyped = a[1]->text == "torch.UntypedStorage";
    rec->key = a[2]->text;
    rec->location = a[3]->text;
    rec->numel = a[4]->integer;
    PickleValue* s = make(Kind::Storage);
    s->storage = std::move(rec);
    return s;
  }

  std::span<const std::byte> data_;
  const std::string& label_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  PickleTree tree_;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;  // stack_ sizes at each open MARK
  std::unordered_map<uint64_t, PickleValue*> memo_;
  // String keys already in each dict (-> index in entries), so a repeated key overwrites in
  // place as in Python.
  struct DictKeys {
    std::unordered_map<const PickleValue*, size_t> by_node;
    std::unordered_map<std::string_view, size_t> by_text;
  };
  std::unordered_map<const PickleValue*, DictKeys> dict_keys_;
};

PickleTree unpickle_restricted(std::span<const std::byte> data, const std::string& label) {
  return RestrictedUnpickler(data, label).run();
}

}  // namespace nanovllm
