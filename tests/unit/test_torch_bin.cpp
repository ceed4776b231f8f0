// pytorch_model.bin loading: the zip reader, the restricted unpickler and the state-dict loader.
// Archives are assembled here, laid out as torch.save lays them out (entries under one folder,
// local headers padded so data is 64-byte aligned); their data.pkl streams are either the ones
// tests/fixtures/make_torch_pickles.py made with Python's own pickler, or hand-assembled below in
// the same protocol-2 form. Every failure must be an Error whose message names the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loader/torch_bin.h"
#include "loader/unpickler.h"
#include "loader/zip_reader.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Bytes = std::vector<std::byte>;

// ---------------------------------------------------------------- bytes and little helpers

Bytes bytes_of(std::string_view s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
template <typename T>
Bytes le_bytes(const std::vector<T>& values) {
  Bytes b(values.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), values.data(), b.size());
  return b;
}
void put(Bytes& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

Bytes read_fixture(const std::string& name) {
  std::ifstream in(std::string(NANOVLLM_FIXTURES_DIR) + "/torch_pickles/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes_of(s);
}

// The message of the Error `f` throws; fails the test if it throws nothing or something else.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// ---------------------------------------------------------------- a zip writer (stored entries)

uint32_t crc32(const Bytes& data) {
  uint32_t c = 0xffffffffu;
  for (std::byte b : data) {
    c ^= std::to_integer<uint32_t>(b);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

struct ZipFile {
  std::string name;
  Bytes data;
  uint16_t method = 0;  // a non-zero method marks the entry compressed (data left as is)
};
struct ZipOptions {
  bool zip64 = false;   // write ZIP64 extras and end records even though nothing needs them
  std::string comment;  // archive comment after the end record
};
const ZipOptions kZip64{.zip64 = true, .comment = {}};

// What torch's writer (miniz via caffe2's PyTorchStreamWriter) produces: a local header padded
// with an "FB" extra field so the data starts on a 64-byte boundary, the data, and a central
// directory whose entries carry no padding.
Bytes make_zip(const std::vector<ZipFile>& files, const ZipOptions& opt = {}) {
  Bytes out, dir;
  const uint32_t all_ones = 0xffffffffu;
  for (const ZipFile& f : files) {
    const uint64_t offset = out.size();
    const uint64_t unpadded = offset + 30 + f.name.size() + 4;
    const uint64_t padding = (64 - unpadded % 64) % 64;
    const uint32_t crc = crc32(f.data);
    put(out, 0x04034b50, 4);
    put(out, 20, 2);
    put(out, 0, 2);
    put(out, f.method, 2);
    put(out, 0, 4);  // time, date
    put(out, crc, 4);
    put(out, f.data.size(), 4);
    put(out, f.data.size(), 4);
    put(out, f.name.size(), 2);
    put(out, 4 + padding, 2);
    append(out, bytes_of(f.name));
    put(out, 0x4246, 2);  // "FB"
    put(out, padding, 2);
    out.insert(out.end(), padding, std::byte{'Z'});
    append(out, f.data);

    Bytes extra;
    if (opt.zip64) {
      put(extra, 0x0001, 2);
      put(extra, 24, 2);
      put(extra, f.data.size(), 8);
      put(extra, f.data.size(), 8);
      put(extra, offset, 8);
    }
    put(dir, 0x02014b50, 4);
    put(dir, 45, 2);
    put(dir, 20, 2);
    put(dir, 0, 2);
    put(dir, f.method, 2);
    put(dir, 0, 4);
    put(dir, crc, 4);
    put(dir, opt.zip64 ? all_ones : f.data.size(), 4);
    put(dir, opt.zip64 ? all_ones : f.data.size(), 4);
    put(dir, f.name.size(), 2);
    put(dir, extra.size(), 2);
    put(dir, 0, 2);  // comment length
    put(dir, 0, 2);  // disk
    put(dir, 0, 2);
    put(dir, 0, 4);
    put(dir, opt.zip64 ? all_ones : offset, 4);
    append(dir, bytes_of(f.name));
    append(dir, extra);
  }
  const uint64_t dir_offset = out.size();
  append(out, dir);
  if (opt.zip64) {
    const uint64_t record = out.size();
    put(out, 0x06064b50, 4);
    put(out, 44, 8);
    put(out, 45, 2);
    put(out, 45, 2);
    put(out, 0, 4);
    put(out, 0, 4);
    put(out, files.size(), 8);
    put(out, files.size(), 8);
    put(out, dir.size(), 8);
    put(out, dir_offset, 8);
    put(out, 0x07064b50, 4);
    put(out, 0, 4);
    put(out, record, 8);
    put(out, 1, 4);
  }
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, opt.zip64 ? 0xffff : files.size(), 2);
  put(out, opt.zip64 ? 0xffff : files.size(), 2);
  put(out, opt.zip64 ? all_ones : dir.size(), 4);
  put(out, opt.zip64 ? all_ones : dir_offset, 4);
  put(out, opt.comment.size(), 2);
  append(out, bytes_of(opt.comment));
  return out;
}

// ---------------------------------------------------------------- hand-assembled pickles

// Emits pickle opcodes in the protocol-2 forms torch.save uses (BINUNICODE strings, GLOBAL).
struct Pickle {
  Bytes b;
  Pickle& op(uint8_t c) {
    b.push_back(std::byte{c});
    return *this;
  }
  Pickle& raw(std::string_view s) {
    append(b, bytes_of(s));
    return *this;
  }
  Pickle& proto() { return op(0x80).op(2); }
  Pickle& str(std::string_view s) {
    op('X');
    put(b, s.size(), 4);
    return raw(s);
  }
  Pickle& global(std::string_view module, std::string_view name) {
    return op('c').raw(module).op('\n').raw(name).op('\n');
  }
  Pickle& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').op(static_cast<uint8_t>(v));
    op(0x8a).op(8);
    put(b, static_cast<uint64_t>(v), 8);
    return *this;
  }
  Pickle& ints(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    return op('t');
  }
  Pickle& stop() { return op('.'); }
};

// One tensor as torch.save pickles it: _rebuild_tensor_v2(persistent storage, offset, size,
// stride, False, OrderedDict()).
struct PickledTensor {
  std::string name;
  std::string storage_class = "FloatStorage";
  std::string key = "0";
  int64_t numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

void pickle_tensor(Pickle& p, const PickledTensor& t) {
  p.global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').str("storage").global("torch", t.storage_class).str(t.key).str("cpu");
  p.integer(t.numel).op('t').op('Q');
  p.integer(t.offset).ints(t.size).ints(t.stride).op(0x89);
  p.global("collections", "OrderedDict").op(')').op('R');
  p.op('t').op('R');
}

// OrderedDict([...]) of the tensors, as torch.save(model.state_dict()) writes it (without the
// _metadata BUILD, which the Python fixtures cover).
Bytes state_dict_pickle(const std::vector<PickledTensor>& tensors) {
  Pickle p;
  p.proto().global("collections", "OrderedDict").op(')').op('R').op('(');
  for (const auto& t : tensors) {
    p.str(t.name);
    pickle_tensor(p, t);
  }
  return p.op('u').stop().b;
}

// torch.save's archive around a data.pkl and storages "0", "1", ...
Bytes torch_archive(const Bytes& pkl, const std::vector<Bytes>& storages,
                    const std::string& prefix = "archive", const ZipOptions& opt = {}) {
  std::vector<ZipFile> files{{prefix + "/data.pkl", pkl},
                             {prefix + "/byteorder", bytes_of("little")}};
  for (size_t i = 0; i < storages.size(); ++i)
    files.push_back({prefix + "/data/" + std::to_string(i), storages[i]});
  files.push_back({prefix + "/version", bytes_of("3\n")});
  files.push_back({prefix + "/.data/serialization_id", bytes_of("1234567890")});
  return make_zip(files, opt);
}

std::vector<float> as_f32(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  convert_to_f32(v.dtype, v.data, out.data(), out.size());
  return out;
}

bool inside(const TensorView& v, const Bytes& file) {
  return v.data >= file.data() && v.data + v.nbytes <= file.data() + file.size();
}

// ---------------------------------------------------------------- the Python-made state dict

// The storages that make_torch_pickles.py's state_dict() names (keys "0".."4").
std::vector<Bytes> state_dict_storages() {
  std::vector<uint16_t> bf16, f16;
  for (float f : {1.0f, -2.0f, 3.0f}) bf16.push_back(f32_to_bf16(f));
  for (int i = 0; i < 8; ++i) f16.push_back(f32_to_f16(static_cast<float>(i)));
  std::vector<float> big;
  for (int i = 0; i < 10; ++i) big.push_back(100.0f + i);
  return {le_bytes(std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}), le_bytes(bf16), le_bytes(f16),
          le_bytes(big), le_bytes(std::vector<int64_t>{7})};
}

void expect_state_dict(const TensorMap& m, const Bytes& file) {
  ASSERT_EQ(m.size(), 7u);
  const TensorView& w = m.at("layer.weight");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(as_f32(w), (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}));
  EXPECT_TRUE(inside(w, file)) << "a contiguous tensor is a view into the file";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data) % 64,
            reinterpret_cast<uintptr_t>(file.data()) % 64);

  const TensorView& b = m.at("layer.bias");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(as_f32(b), (std::vector<float>{1, -2, 3}));

  const TensorView& e = m.at("embed.weight");
  EXPECT_EQ(e.dtype, DType::F16);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(as_f32(e), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(e.nbytes, 16u);

  const TensorView& n = m.at("bn.num_batches_tracked");
  EXPECT_EQ(n.dtype, DType::I64);
  EXPECT_TRUE(n.shape.empty());
  ASSERT_EQ(n.nbytes, 8u);
  int64_t count = 0;
  std::memcpy(&count, n.data, 8);
  EXPECT_EQ(count, 7);
}

TEST(TorchBin, LoadsStateDictPickledByPythonProtocol2) {
  const Bytes file = torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages());
  auto owner = std::make_shared<int>(0);
  const TensorMap m = parse_torch_bin(file, "model.bin", owner);
  expect_state_dict(m, file);
  EXPECT_EQ(m.at("layer.weight").owner, owner);
  EXPECT_EQ(m.at("layer.weight").source, "model.bin");
}

TEST(TorchBin, LoadsStateDictPickledByPythonProtocol4) {
  const Bytes file = torch_archive(read_fixture("state_dict_p4.pkl"), state_dict_storages());
  expect_state_dict(parse_torch_bin(file, "model.bin"), file);
}

TEST(TorchBin, TiedWeightsShareOneStorage) {
  const Bytes file = torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages());
  const TensorMap m = parse_torch_bin(file, "model.bin");
  EXPECT_EQ(m.at("lm_head.weight").data, m.at("embed.weight").data);
  EXPECT_EQ(m.at("lm_head.weight").shape, m.at("embed.weight").shape);
}

TEST(TorchBin, StorageOffsetSelectsTheViewedElements) {
  const Bytes file = torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages());
  const TensorMap m = parse_torch_bin(file, "model.bin");
  const TensorView& s = m.at("sliced");  // storage "3" = [100..109], offset 4, size 3
  EXPECT_EQ(as_f32(s), (std::vector<float>{104, 105, 106}));
  EXPECT_TRUE(inside(s, file));
}

TEST(TorchBin, NonContiguousTensorIsCopiedInRowMajorOrder) {
  const Bytes file = torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages());
  auto owner = std::make_shared<int>(0);
  const TensorMap m = parse_torch_bin(file, "model.bin", owner);
  const TensorView& t = m.at("transposed");  // layer.weight.t(): size (3, 2), stride (1, 3)
  EXPECT_EQ(t.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(as_f32(t), (std::vector<float>{0, 1.5f, 0.5f, 2, 1, 2.5f}));
  EXPECT_FALSE(inside(t, file));
  EXPECT_NE(t.owner, owner) << "the copy must own its buffer";
  EXPECT_NE(t.owner, nullptr);
}

TEST(TorchBin, LoadsParametersRebuiltFromTensors) {
  const Bytes file =
      torch_archive(read_fixture("parameters_p2.pkl"), {le_bytes(std::vector<float>{1, 2, 3, 4})});
  const TensorMap m = parse_torch_bin(file, "params.bin");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m.at("w").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(as_f32(m.at("w")), (std::vector<float>{1, 2, 3, 4}));
}

TEST(TorchBin, ArchiveFolderMayHaveAnyName) {
  // Newer torch names the folder after the file's stem.
  const Bytes file =
      torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages(), "pytorch_model");
  expect_state_dict(parse_torch_bin(file, "pytorch_model.bin"), file);
}

TEST(TorchBin, LoadsZip64Archive) {
  const Bytes file =
      torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages(), "archive", kZip64);
  expect_state_dict(parse_torch_bin(file, "big.bin"), file);
}

TEST(TorchBin, LoadsStateDictNestedUnderStateDictKey) {
  Pickle p;
  p.proto().op('}').op('(').str("epoch").integer(3).str("state_dict");
  p.global("collections", "OrderedDict").op(')').op('R').op('(').str("w");
  pickle_tensor(p, {"w", "FloatStorage", "0", 2, 0, {2}, {1}});
  p.op('u').op('u').stop();
  const Bytes file = torch_archive(p.b, {le_bytes(std::vector<float>{5, 6})});
  const TensorMap m = parse_torch_bin(file, "ckpt.bin");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(as_f32(m.at("w")), (std::vector<float>{5, 6}));
}

TEST(TorchBin, LoadsRebuildTensorV3WithUntypedStorage) {
  // torch writes dtypes that have no typed storage this way: an UntypedStorage (numel = bytes)
  // and the dtype as the 7th argument.
  Pickle p;
  p.proto().op('}').str("w").global("torch._utils", "_rebuild_tensor_v3").op('(');
  p.op('(').str("storage").global("torch", "UntypedStorage").str("0").str("cpu").integer(8);
  p.op('t').op('Q').integer(1).ints({3}).ints({1}).op(0x89);
  p.global("collections", "OrderedDict").op(')').op('R').global("torch", "bfloat16");
  p.op('t').op('R').op('s').stop();
  std::vector<uint16_t> h;
  for (float f : {9.0f, 1.0f, 2.0f, 3.0f}) h.push_back(f32_to_bf16(f));
  const Bytes file = torch_archive(p.b, {le_bytes(h)});  // views point into it: keep it alive
  const TensorMap m = parse_torch_bin(file, "v3.bin");
  EXPECT_EQ(m.at("w").dtype, DType::BF16);
  EXPECT_EQ(as_f32(m.at("w")), (std::vector<float>{1, 2, 3}));
}

// ---------------------------------------------------------------- files and shards on disk

class TorchBinFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nanovllm_torch_bin_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const Bytes& data) {
    std::ofstream out(dir_ / name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
    return dir_ / name;
  }
  fs::path write(const std::string& name, const std::string& text) {
    return write(name, bytes_of(text));
  }
  fs::path dir_;
};

TEST_F(TorchBinFiles, LoadsShardedIndex) {
  write("pytorch_model-00001-of-00002.bin",
        torch_archive(state_dict_pickle({{"a", "FloatStorage", "0", 2, 0, {2}, {1}}}),
                      {le_bytes(std::vector<float>{1, 2})}, "pytorch_model-00001-of-00002"));
  write("pytorch_model-00002-of-00002.bin",
        torch_archive(state_dict_pickle({{"b", "FloatStorage", "0", 1, 0, {1}, {1}}}),
                      {le_bytes(std::vector<float>{3})}, "pytorch_model-00002-of-00002"));
  const auto index = write("pytorch_model.bin.index.json", std::string(R"({"metadata": {},
      "weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                     "b": "pytorch_model-00002-of-00002.bin"}})"));
  const TensorMap m = load_torch_bin_index(index);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(as_f32(m.at("a")), (std::vector<float>{1, 2}));
  EXPECT_EQ(as_f32(m.at("b")), (std::vector<float>{3}));
  EXPECT_THAT(m.at("b").source, HasSubstr("pytorch_model-00002-of-00002.bin"));
  EXPECT_NE(m.at("a").owner, nullptr) << "views keep the mapped file alive";
}

// Files torch 2.11 wrote (tests/fixtures/make_fixtures.py, versions in VERSIONS.json). The pinned
// values are what Python's own unpickler and zipfile read from the same files.
TEST(TorchBin, LoadsRealTorchSaveFile) {
  const fs::path path =
      fs::path(NANOVLLM_FIXTURES_DIR) / "models/qwen3-untied-f32-g4-d64-bin" / "pytorch_model.bin";
  const TensorMap m = load_torch_bin_file(path);
  ASSERT_EQ(m.size(), 25u);  // untied: lm_head.weight is its own tensor
  for (const auto& [name, v] : m) {
    EXPECT_EQ(v.dtype, DType::F32) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % 64, 0u) << name << ": torch aligns storages";
    EXPECT_EQ(v.source, path.string());
  }
  const TensorView& head = m.at("lm_head.weight");
  EXPECT_EQ(head.shape, (std::vector<int64_t>{512, 64}));
  EXPECT_FLOAT_EQ(as_f32(head)[0], -0.09788820892572403f);
  EXPECT_FLOAT_EQ(as_f32(head)[1], 0.03794512152671814f);
  EXPECT_FLOAT_EQ(as_f32(m.at("model.norm.weight"))[1], 1.0284541845321655f);
}

TEST(TorchBin, LoadsRealTorchSaveShards) {
  const TensorMap m = load_torch_bin_index(fs::path(NANOVLLM_FIXTURES_DIR) /
                                           "models/qwen3-tied-bf16-g1-d128-bin-sharded" /
                                           "pytorch_model.bin.index.json");
  ASSERT_EQ(m.size(), 24u);  // tied: the shards leave lm_head.weight out
  EXPECT_EQ(m.count("lm_head.weight"), 0u);
  const TensorView& e = m.at("model.embed_tokens.weight");
  EXPECT_EQ(e.dtype, DType::BF16);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{512, 64}));
  uint16_t first[2];
  std::memcpy(first, e.data, sizeof first);
  EXPECT_EQ(first[0], 0xbd5f);
  EXPECT_EQ(first[1], 0xbd57);
}

TEST_F(TorchBinFiles, MissingShardIsAnError) {
  write("pytorch_model-00001-of-00002.bin",
        torch_archive(state_dict_pickle({{"a", "FloatStorage", "0", 2, 0, {2}, {1}}}),
                      {le_bytes(std::vector<float>{1, 2})}));
  const auto index = write("pytorch_model.bin.index.json", std::string(R"({"weight_map": {
      "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}})"));
  EXPECT_THAT(error_of([&] { load_torch_bin_index(index); }),
              AllOf(HasSubstr("pytorch_model.bin.index.json"),
                    HasSubstr("'pytorch_model-00002-of-00002.bin', which does not exist")));
}

TEST_F(TorchBinFiles, LegacyFormatIsAnError) {
  // torch < 1.6 started the file with pickle.dump(MAGIC_NUMBER, protocol=2).
  const auto path = write("old.bin", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a"
                                                 "\xa8\x50\x19.\x80\x02M\xe9\x03.",
                                                 21));
  EXPECT_THAT(error_of([&] { load_torch_bin_file(path); }),
              AllOf(HasSubstr("old.bin"), HasSubstr("legacy torch.save format"),
                    HasSubstr("torch >= 1.6")));
  Bytes tar(1024, std::byte{0});
  std::memcpy(tar.data() + 257, "ustar", 5);
  EXPECT_THAT(error_of([&] { parse_torch_bin(tar, "older.bin"); }),
              AllOf(HasSubstr("older.bin"), HasSubstr("legacy tar-based torch.save format")));
}

// ---------------------------------------------------------------- malformed archives

Bytes one_tensor_archive(const PickledTensor& t, const Bytes& storage) {
  return torch_archive(state_dict_pickle({t}), {storage});
}
const Bytes kSixFloats = le_bytes(std::vector<float>{0, 1, 2, 3, 4, 5});

TEST(TorchBin, RefusesMaliciousGlobalInDataPkl) {
  Pickle p;
  p.proto().global("posix", "system").str("echo pwned").op(0x85).op('R').stop();
  EXPECT_THAT(error_of([&] { parse_torch_bin(torch_archive(p.b, {}), "evil.bin"); }),
              AllOf(HasSubstr("evil.bin: archive/data.pkl"),
                    HasSubstr("refusing to unpickle global 'posix.system' "
                              "(only torch tensor data is allowed)")));
}

TEST(TorchBin, RefusesTruncatedFile) {
  const Bytes good = torch_archive(read_fixture("state_dict_p2.pkl"), state_dict_storages());
  for (size_t cut : {good.size() - 1, good.size() - 22, good.size() / 2, size_t{40}}) {
    const Bytes bad(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_THAT(error_of([&] { parse_torch_bin(bad, "cut.bin"); }),
                AllOf(HasSubstr("cut.bin: "), HasSubstr("truncated")))
        << "cut at " << cut;
  }
}

TEST(TorchBin, RefusesNotAZip) {
  EXPECT_THAT(error_of([&] { parse_torch_bin(bytes_of("{\"not\": \"a zip\"}"), "x.bin"); }),
              HasSubstr("x.bin: not a torch.save checkpoint (no zip local header at the start)"));
  EXPECT_THAT(error_of([&] { parse_torch_bin({}, "empty.bin"); }),
              HasSubstr("empty.bin: not a torch.save checkpoint"));
}

TEST(TorchBin, RefusesArchiveWithoutDataPkl) {
  const Bytes file = make_zip({{"archive/data/0", kSixFloats}});
  EXPECT_THAT(
      error_of([&] { parse_torch_bin(file, "m.bin"); }),
      HasSubstr("m.bin: no 'archive/data.pkl' entry, so this is not a torch.save checkpoint"));
}

TEST(TorchBin, RefusesMissingStorageEntry) {
  const Bytes file =
      one_tensor_archive({"w", "FloatStorage", "5", 6, 0, {2, 3}, {3, 1}}, kSixFloats);
  EXPECT_THAT(
      error_of([&] { parse_torch_bin(file, "m.bin"); }),
      HasSubstr("m.bin: tensor 'w': storage entry 'archive/data/5' is missing from the archive"));
}

TEST(TorchBin, RefusesCompressedEntry) {
  const Bytes file = make_zip({{"archive/data.pkl", read_fixture("parameters_p2.pkl")},
                               {"archive/data/0", le_bytes(std::vector<float>{1, 2, 3, 4}), 8}});
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("m.bin: zip entry 'archive/data/0' is compressed (method 8); only stored "
                        "entries are supported"));
}

TEST(TorchBin, RefusesStorageTooSmallForSize) {
  const Bytes file =
      one_tensor_archive({"w", "FloatStorage", "0", 6, 0, {2, 4}, {4, 1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("m.bin: tensor 'w': size [2, 4], stride [4, 1], storage_offset 0 reaches "
                        "element 8, but storage 'archive/data/0' (torch.FloatStorage) holds only 6 "
                        "F32 elements"));
}

TEST(TorchBin, RefusesStorageTooSmallForStrideAndOffset) {
  const Bytes stride =
      one_tensor_archive({"w", "FloatStorage", "0", 6, 0, {2, 2}, {5, 1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(stride, "m.bin"); }),
              HasSubstr("size [2, 2], stride [5, 1], storage_offset 0 reaches element 7"));
  const Bytes offset = one_tensor_archive({"w", "FloatStorage", "0", 6, 4, {3}, {1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(offset, "m.bin"); }),
              HasSubstr("size [3], stride [1], storage_offset 4 reaches element 7"));
  const Bytes huge = one_tensor_archive(
      {"w", "FloatStorage", "0", 6, 0, {2, 2}, {int64_t{1} << 62, 1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(huge, "m.bin"); }),
              HasSubstr("tensor 'w': size [2, 2], stride [4611686018427387904, 1], "
                        "storage_offset 0 reaches element 4611686018427387906"));
}

TEST(TorchBin, RefusesExpandedTensorLargerThanTheFile) {
  // size (2^20, 2^20) with stride (0, 0) reaches one element but would copy 4 TiB.
  const Bytes file =
      one_tensor_archive({"w", "FloatStorage", "0", 6, 0, {1 << 20, 1 << 20}, {0, 0}}, kSixFloats);
  EXPECT_THAT(
      error_of([&] { parse_torch_bin(file, "m.bin"); }),
      AllOf(HasSubstr("tensor 'w': size [1048576, 1048576], stride [0, 0], storage_offset 0 "
                      "is not contiguous and would need a 4398046511104-byte copy"),
            HasSubstr("bytes left for copies")));
}

TEST(TorchBin, RefusesStorageEntryShorterThanItsNumel) {
  const Bytes file = one_tensor_archive({"w", "FloatStorage", "0", 8, 0, {2}, {1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("tensor 'w': storage 'archive/data/0' holds 24 bytes, but its persistent "
                        "id declares 8 x torch.FloatStorage = 32 bytes"));
}

TEST(TorchBin, RefusesOneStorageUsedAsTwoTypes) {
  const Bytes file = torch_archive(state_dict_pickle({{"a", "FloatStorage", "0", 6, 0, {6}, {1}},
                                                      {"b", "HalfStorage", "0", 12, 0, {12}, {1}}}),
                                   {kSixFloats});
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("tensor 'b': storage 'archive/data/0' is used as both torch.FloatStorage "
                        "and torch.HalfStorage"));
}

TEST(TorchBin, RefusesUnsupportedDtype) {
  const Bytes file =
      one_tensor_archive({"w", "ComplexFloatStorage", "0", 3, 0, {3}, {1}}, kSixFloats);
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("tensor 'w': storage type torch.ComplexFloatStorage is not supported"));
}

TEST(TorchBin, RefusesUnknownOpcodeInDataPkl) {
  Pickle p;
  p.proto().op('}').op(0xff).stop();
  EXPECT_THAT(
      error_of([&] { parse_torch_bin(torch_archive(p.b, {}), "m.bin"); }),
      HasSubstr("m.bin: archive/data.pkl: byte 3: unknown or unsupported pickle opcode 0xff"));
}

TEST(TorchBin, RefusesStackUnderflowInDataPkl) {
  Pickle p;
  p.proto().op('}').op('s').stop();  // SETITEM with nothing but the dict on the stack
  EXPECT_THAT(error_of([&] { parse_torch_bin(torch_archive(p.b, {}), "m.bin"); }),
              HasSubstr("m.bin: archive/data.pkl: byte 3: stack underflow"));
}

TEST(TorchBin, RefusesBigEndianStorages) {
  const Bytes file = make_zip({{"archive/data.pkl", read_fixture("parameters_p2.pkl")},
                               {"archive/byteorder", bytes_of("big")}});
  EXPECT_THAT(error_of([&] { parse_torch_bin(file, "m.bin"); }),
              HasSubstr("m.bin: storages are in 'big' byte order; only little-endian"));
}

TEST(TorchBin, RefusesTorchScriptArchive) {
  const Bytes file = make_zip(
      {{"model/constants.pkl", bytes_of("\x80\x02).")}, {"model/code/__torch__.py", bytes_of("")}});
  EXPECT_THAT(
      error_of([&] { parse_torch_bin(file, "m.pt"); }),
      HasSubstr("m.pt: a TorchScript archive (torch.jit.save), not a torch.save checkpoint"));
}

// ---------------------------------------------------------------- the unpickler on its own

PickleTree unpickle(const Bytes& b) { return unpickle_restricted(b, "t.pkl"); }
PickleTree unpickle(const Pickle& p) { return unpickle(p.b); }
std::string unpickle_error(const Bytes& b) {
  return error_of([&] { unpickle(b); });
}
std::string unpickle_error(const std::string& s) { return unpickle_error(bytes_of(s)); }
// For literals with embedded NULs: the array's length, not strlen, is the pickle's length.
template <size_t N>
std::string unpickle_error(const char (&s)[N]) {
  return unpickle_error(bytes_of(std::string_view(s, N - 1)));
}

using K = PickleValue::Kind;

void expect_plain_values(const PickleValue& root, bool with_bytes) {
  ASSERT_EQ(root.kind, K::Dict);
  const PickleValue* values = root.get("values");
  ASSERT_NE(values, nullptr);
  ASSERT_EQ(values->kind, K::List);
  const std::vector<int64_t> ints{0,
                                  255,
                                  256,
                                  65535,
                                  65536,
                                  -1,
                                  -129,
                                  2147483647,
                                  -2147483648LL,
                                  2147483648LL,
                                  int64_t{1} << 40,
                                  -(int64_t{1} << 40),
                                  INT64_MAX,
                                  INT64_MIN};
  ASSERT_EQ(values->items.size(), ints.size() + 13 + (with_bytes ? 3 : 0));
  for (size_t i = 0; i < ints.size(); ++i) {
    ASSERT_EQ(values->items[i]->kind, K::Int) << i;
    EXPECT_EQ(values->items[i]->integer, ints[i]) << i;
  }
  const auto* v = values->items.data() + ints.size();
  EXPECT_EQ(v[0]->real, 1.5);
  EXPECT_EQ(v[1]->real, -0.25);
  EXPECT_TRUE(v[2]->kind == K::Bool && v[2]->boolean);
  EXPECT_TRUE(v[3]->kind == K::Bool && !v[3]->boolean);
  EXPECT_EQ(v[4]->kind, K::None);
  EXPECT_EQ(v[5]->text, "");
  EXPECT_EQ(v[6]->text, "h\xc3\xa9llo");
  for (size_t n = 0; n <= 4; ++n) {
    ASSERT_EQ(v[7 + n]->kind, K::Tuple);
    EXPECT_EQ(v[7 + n]->items.size(), n);
  }
  EXPECT_EQ(v[12]->kind, K::List);
  if (with_bytes) {
    EXPECT_EQ(v[13]->kind, K::Bytes);
    EXPECT_EQ(v[14]->text, "ab");
    EXPECT_EQ(v[15]->text, std::string(300, 'x'));
  }
  const PickleValue* shared = root.get("shared");
  ASSERT_TRUE(shared && shared->items.size() == 2);
  EXPECT_EQ(shared->items[0], shared->items[1]) << "the memo shares one value";
  EXPECT_EQ(shared->items[0]->items.at(0)->integer, 7);
  const PickleValue* order = root.get("order");
  ASSERT_TRUE(order && order->entries.size() == 3);
  EXPECT_EQ(order->entries[0].first->text, "z");
  EXPECT_EQ(order->entries[1].first->text, "a");
  EXPECT_EQ(order->entries[2].first->text, "m");
}

TEST(Unpickler, ReadsWhatPythonPicklesWithProtocol2) {
  expect_plain_values(unpickle(read_fixture("plain_p2.pkl")).root(), false);
}

TEST(Unpickler, ReadsWhatPythonPicklesWithProtocol5) {
  expect_plain_values(unpickle(read_fixture("plain_p5.pkl")).root(), true);
}

TEST(Unpickler, KeepsStateDictMetadataFromBuild) {
  const PickleTree t = unpickle(read_fixture("state_dict_p2.pkl"));
  ASSERT_NE(t.root().state, nullptr);
  const PickleValue* meta = t.root().state->get("_metadata");
  ASSERT_TRUE(meta && meta->kind == K::Dict);
  EXPECT_EQ(meta->get("layer")->get("version")->integer, 1);
  const PickleValue* w = t.root().get("layer.weight");
  ASSERT_TRUE(w && w->kind == K::Tensor);
  EXPECT_EQ(w->tensor->size, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->tensor->stride, (std::vector<int64_t>{3, 1}));
  const StorageRecord& s = *w->tensor->storage->storage;
  EXPECT_EQ(s.type_name, "torch.FloatStorage");
  EXPECT_EQ(s.key, "0");
  EXPECT_EQ(s.location, "cpu");
  EXPECT_EQ(s.numel, 6);
}

TEST(Unpickler, RepeatedDictKeyKeepsFirstPlaceAndLastValue) {
  Pickle p;
  p.proto().op('}').op('(').str("a").integer(1).str("b").integer(2).str("a").integer(3);
  const PickleTree t = unpickle(p.op('u').stop());
  ASSERT_EQ(t.root().entries.size(), 2u);
  EXPECT_EQ(t.root().entries[0].first->text, "a");
  EXPECT_EQ(t.root().entries[0].second->integer, 3);

  // The same key node again through the memo (BINPUT 0 ... BINGET 0), then an equal new one.
  Pickle memo;
  memo.proto().op('}').str("k").op('q').op(0).integer(1).op('s');
  memo.op('h').op(0).integer(2).op('s').str("k").integer(4).op('s').stop();
  const PickleTree m = unpickle(memo);
  ASSERT_EQ(m.root().entries.size(), 1u);
  EXPECT_EQ(m.root().entries[0].second->integer, 4);
}

TEST(Unpickler, RefusesDangerousGlobalsByName) {
  for (const auto& [module, name] :
       std::vector<std::pair<std::string, std::string>>{{"posix", "system"},
                                                        {"os", "system"},
                                                        {"builtins", "eval"},
                                                        {"__builtin__", "exec"},
                                                        {"subprocess", "Popen"},
                                                        {"_codecs", "encode"},
                                                        {"torch", "load"},
                                                        {"torch.storage", "_load_from_bytes"},
                                                        {"collections", "defaultdict"}}) {
    const std::string expected = "refusing to unpickle global '" + module + "." + name +
                                 "' (only torch tensor data is allowed)";
    Pickle by_global;
    by_global.proto().global(module, name).stop();
    EXPECT_THAT(unpickle_error(by_global.b),
                AllOf(HasSubstr("t.pkl: byte 2: "), HasSubstr(expected)));
    Pickle by_stack;  // protocol 4's STACK_GLOBAL takes the names from the stack
    by_stack.proto().str(module).str(name).op(0x93).stop();
    EXPECT_THAT(unpickle_error(by_stack.b), HasSubstr(expected));
  }
  // The stream Python writes for b"ab" under protocol 2 goes through _codecs.encode.
  EXPECT_THAT(unpickle_error(read_fixture("bytes_p2.pkl")),
              HasSubstr("refusing to unpickle global '_codecs.encode'"));
}

TEST(Unpickler, RefusesCallingDataGlobals) {
  Pickle p;
  p.proto().global("torch", "FloatStorage").op(')').op('R').stop();
  EXPECT_THAT(
      unpickle_error(p.b),
      HasSubstr("byte 23: global 'torch.FloatStorage' is data, not something that may be called"));
}

TEST(Unpickler, RefusesUnknownOpcodeNamingItInHex) {
  EXPECT_THAT(unpickle_error("\x80\x02\xff."),
              HasSubstr("t.pkl: byte 2: unknown or unsupported pickle opcode 0xff"));
  // INST and OBJ (protocol 0/1 object creation) are not among what torch.save writes.
  EXPECT_THAT(unpickle_error("\x80\x02ios\nsystem\n."),
              HasSubstr("unknown or unsupported pickle opcode 0x69"));
  EXPECT_THAT(unpickle_error("\x80\x02(o."),
              HasSubstr("unknown or unsupported pickle opcode 0x6f"));
}

TEST(Unpickler, RefusesStackUnderflow) {
  EXPECT_THAT(unpickle_error("\x80\x02."), HasSubstr("t.pkl: byte 2: stack underflow"));
  EXPECT_THAT(unpickle_error("\x80\x02]a."), HasSubstr("byte 3: stack underflow"));
  EXPECT_THAT(unpickle_error("\x80\x02K\x01t."),
              HasSubstr("byte 4: no MARK to pop to (stack underflow)"));
  // A MARK hides what is below it: SETITEM cannot reach the dict through it.
  EXPECT_THAT(unpickle_error("\x80\x02}(K\x01K\x02s."), HasSubstr("byte 8: stack underflow"));
}

TEST(Unpickler, RefusesBadMemoIndex) {
  EXPECT_THAT(unpickle_error("\x80\x02h\x05."), HasSubstr("byte 2: memo index 5 was never stored"));
  EXPECT_THAT(unpickle_error("\x80\x02j\x00\x00\x01\x00."),
              HasSubstr("memo index 65536 was never stored"));
  EXPECT_THAT(unpickle_error("\x80\x02q\x00."), HasSubstr("stack underflow"));
}

TEST(Unpickler, RefusesTruncatedDataAtEveryLength) {
  for (const char* fixture : {"state_dict_p2.pkl", "state_dict_p4.pkl", "plain_p5.pkl"}) {
    const Bytes good = read_fixture(fixture);
    for (size_t n = 0; n < good.size(); ++n) {
      const Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_THAT(unpickle_error(cut), AllOf(HasSubstr("t.pkl: byte "), HasSubstr("truncated")))
          << fixture << " cut at " << n;
    }
  }
  EXPECT_THAT(unpickle_error("\x80\x02X\xff\xff\xff\x7f"),
              HasSubstr("truncated: opcode needs 2147483647 more bytes"));
  EXPECT_THAT(unpickle_error("\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00."),
              HasSubstr("truncated: FRAME of 256 bytes"));
}

TEST(Unpickler, RefusesDeepNesting) {
  EXPECT_THAT(unpickle_error("\x80\x02)" + std::string(100, '\x85') + "."),
              HasSubstr("values nest deeper than 64 levels"));
  EXPECT_THAT(unpickle_error("\x80\x02" + std::string(100, '(')),
              HasSubstr("more than 64 nested MARKs"));
}

TEST(Unpickler, RefusesSelfReferencingContainers) {
  // l = []; l.append(l)
  EXPECT_THAT(unpickle_error("\x80\x02]q\x00h\x00"
                             "a."),
              HasSubstr("byte 7: cannot add to a list that is already inside another value"));
  // d = {}; t = (d,); d['k'] = t
  EXPECT_THAT(unpickle_error("\x80\x02}q\x00X\x01\x00\x00\x00kh\x00\x85s."),
              HasSubstr("cannot add to a dict that is already inside another value"));
}

TEST(Unpickler, RefusesMalformedTorchRecords) {
  EXPECT_THAT(
      unpickle_error("\x80\x02X\x01\x00\x00\x00xQ."),
      HasSubstr("persistent id is not torch's ('storage', type, key, location, numel) tuple"));
  Pickle p;
  p.proto().global("torch._utils", "_rebuild_tensor_v2").op('(').integer(1).op('t').op('R').stop();
  EXPECT_THAT(unpickle_error(p.b),
              HasSubstr("'torch._utils._rebuild_tensor_v2' expects 6 or 7 arguments, got 1"));
  EXPECT_THAT(unpickle_error("\x80\x02\x8a\x09" + std::string(9, '\x01') + "."),
              HasSubstr("integer of 9 bytes does not fit in 64 bits"));
  EXPECT_THAT(unpickle_error("\x80\x07."), HasSubstr("pickle protocol 7 is not supported"));
}

// ---------------------------------------------------------------- the zip reader on its own

TEST(ZipReader, FindsEntryDataPastTorchsLocalPadding) {
  const Bytes file = make_zip({{"a/x", bytes_of("hello")}, {"a/data/0", bytes_of("0123456789")}});
  const ZipReader zip(file, "z.zip");
  ASSERT_EQ(zip.entries().size(), 2u);
  EXPECT_EQ(zip.entries()[1].name, "a/data/0");
  const auto data = zip.data(*zip.find("a/data/0"));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data.data()), data.size()), "0123456789");
  EXPECT_EQ((data.data() - file.data()) % 64, 0) << "the writer aligns data like torch";
  EXPECT_EQ(zip.find("a/missing"), nullptr);
}

TEST(ZipReader, ReadsZip64RecordsAndExtras) {
  const Bytes file = make_zip({{"a/x", bytes_of("hello")}, {"a/y", bytes_of("world!")}}, kZip64);
  const ZipReader zip(file, "z.zip");
  ASSERT_EQ(zip.entries().size(), 2u);
  EXPECT_EQ(zip.entries()[1].uncompressed_size, 6u);
  EXPECT_EQ(zip.data(*zip.find("a/y")).size(), 6u);
}

TEST(ZipReader, FindsEndRecordBehindAComment) {
  // The longest comment a zip allows, starting with an end-record signature that must not be
  // mistaken for the real record (its comment length would run past the end of the file).
  const std::string comment = std::string("PK\x05\x06 tail", 9) + std::string(0xffff - 9, 'c');
  const Bytes file =
      make_zip({{"a/x", bytes_of("hello")}}, ZipOptions{.zip64 = false, .comment = comment});
  const ZipReader zip(file, "z.zip");
  EXPECT_EQ(zip.data(*zip.find("a/x")).size(), 5u);
}

TEST(ZipReader, RefusesCompressedEntryByName) {
  const Bytes file = make_zip({{"a/deflated", bytes_of("xx"), 8}});
  const ZipReader zip(file, "z.zip");
  EXPECT_THAT(error_of([&] { zip.data(zip.entries()[0]); }),
              HasSubstr("z.zip: zip entry 'a/deflated' is compressed (method 8)"));
}

TEST(ZipReader, RefusesNotAZip) {
  EXPECT_THAT(
      error_of([&] { ZipReader(bytes_of("PK\x03\x04 but nothing else follows here"), "z.zip"); }),
      HasSubstr("z.zip: not a zip archive (no end-of-central-directory record"));
  EXPECT_THAT(
      error_of([&] { ZipReader(bytes_of("tiny"), "z.zip"); }),
      HasSubstr(
          "z.zip: not a zip archive: 4 bytes is shorter than an end-of-central-directory record"));
}

TEST(ZipReader, RefusesEveryTruncation) {
  for (bool zip64 : {false, true}) {
    const Bytes good = make_zip({{"a/x", bytes_of("hello")}, {"a/y", Bytes(100, std::byte{1})}},
                                ZipOptions{.zip64 = zip64, .comment = {}});
    for (size_t n = 0; n < good.size(); ++n) {
      const Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_THAT(error_of([&] {
                    const ZipReader zip(cut, "z.zip");
                    for (const auto& e : zip.entries()) zip.data(e);
                  }),
                  HasSubstr("z.zip: "))
          << "cut at " << n;
    }
  }
}

TEST(ZipReader, RefusesOffsetsAndSizesOutsideTheFile) {
  Bytes file = make_zip({{"a/x", bytes_of("hello")}});
  const size_t dir = file.size() - 22 - (46 + 3);
  Bytes big_size = file;  // central sizes say 4 GiB - 2
  for (size_t at : {dir + 20, dir + 24}) {
    big_size[at] = std::byte{0xfe};
    for (size_t i = 1; i < 4; ++i) big_size[at + i] = std::byte{0xff};
  }
  const ZipReader zip(big_size, "z.zip");
  EXPECT_THAT(
      error_of([&] { zip.data(zip.entries()[0]); }),
      HasSubstr("zip entry 'a/x': data [64, +4294967294] runs past the end of the archive"));

  Bytes many = file;  // the end record claims 1000 entries
  many[file.size() - 22 + 10] = std::byte{0xe8};
  many[file.size() - 22 + 11] = std::byte{0x03};
  EXPECT_THAT(error_of([&] { ZipReader(many, "z.zip"); }),
              HasSubstr("cannot hold the 1000 entries the end record claims"));

  Bytes far = file;  // the central directory offset points past its own end record
  far[file.size() - 22 + 19] = std::byte{0x7f};
  EXPECT_THAT(error_of([&] { ZipReader(far, "z.zip"); }), HasSubstr("runs past its end record"));
}

TEST(ZipReader, RefusesDuplicateEntryNames) {
  const Bytes file = make_zip({{"a/x", bytes_of("1")}, {"a/x", bytes_of("2")}});
  EXPECT_THAT(error_of([&] { ZipReader(file, "z.zip"); }),
              HasSubstr("zip entry 'a/x' appears twice in the central directory"));
}

}  // namespace
}  // namespace nanovllm
