// The safetensors loader: valid files read back exactly, and every malformed file is an Error
// that names the file, the tensor and the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loader/mapped_file.h"
#include "loader/safetensors.h"
#include "runtime/error.h"

namespace nanovllm {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Bytes = std::vector<std::byte>;

// One tensor for the file builder: its bytes are already in the file's dtype.
struct TestTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  Bytes bytes;
};

template <typename T>
Bytes to_bytes(const std::vector<T>& values) {
  Bytes b(values.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), values.data(), b.size());
  return b;
}
Bytes f32_bytes(const std::vector<float>& v) { return to_bytes(v); }
Bytes bf16_bytes(const std::vector<float>& v) {
  std::vector<uint16_t> h;
  for (float f : v) h.push_back(f32_to_bf16(f));
  return to_bytes(h);
}
Bytes f16_bytes(const std::vector<float>& v) {
  std::vector<uint16_t> h;
  for (float f : v) h.push_back(f32_to_f16(f));
  return to_bytes(h);
}

// An 8-byte little-endian length, the header text as given, then the data.
Bytes raw_file(uint64_t header_len, const std::string& header, const Bytes& data = {}) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((header_len >> (8 * i)) & 0xff));
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
Bytes raw_file(const std::string& header, const Bytes& data = {}) {
  return raw_file(header.size(), header, data);
}

// A valid file laid out as the reference writer does: tensors back to back in list order.
Bytes build_file(const std::vector<TestTensor>& tensors, const nlohmann::json& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  Bytes data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  return raw_file(header.dump(), data);
}

std::vector<float> read_f32(const TensorView& v) {
  std::vector<float> out(v.nbytes / dtype_size(v.dtype));
  convert_to_f32(v.dtype, v.data, out.data(), out.size());
  return out;
}

// The message of the Error that `f` throws; fails the test if it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a nanovllm::Error, got none";
  return "";
}

std::string parse_error(const Bytes& file, const std::string& label = "model.safetensors") {
  return error_of([&] { parse_safetensors(file, label); });
}

class SafetensorsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("nanovllm_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const Bytes& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  fs::path write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  // A two-shard checkpoint: a.weight in shard 1, b.weight in shard 2, and an index for both.
  fs::path write_index(const nlohmann::json& weight_map) {
    return write("model.safetensors.index.json",
                 nlohmann::json{{"metadata", {{"total_size", 24}}}, {"weight_map", weight_map}}.dump());
  }

  fs::path dir_;
};

// ---- reading valid files ----

TEST_F(SafetensorsFiles, ReadsValuesShapesAndDtypesExactly) {
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0e-8f, 65504.0f, -0.0f, 7.0f};
  const std::vector<float> bf16 = {1.0f, -0.5f, 3.140625f, -1024.0f};  // exact in bf16
  const std::vector<float> f16 = {0.5f, -65504.0f, 5.9604645e-8f};     // incl. a subnormal
  const auto path = write("model.safetensors",
                          build_file({{"w.f32", "F32", {2, 3}, f32_bytes(f32)},
                                      {"w.bf16", "BF16", {4}, bf16_bytes(bf16)},
                                      {"w.f16", "F16", {3, 1}, f16_bytes(f16)}}));
  const TensorMap m = load_safetensors_file(path);
  ASSERT_EQ(m.size(), 3u);

  const TensorView& a = m.at("w.f32");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(read_f32(a), f32);
  EXPECT_EQ(0, std::memcmp(a.data, f32_bytes(f32).data(), a.nbytes));  // bit-exact, -0 too

  const TensorView& b = m.at("w.bf16");
  EXPECT_EQ(b.dtype, DType::BF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(read_f32(b), bf16);
  EXPECT_EQ(0, std::memcmp(b.data, bf16_bytes(bf16).data(), b.nbytes));

  const TensorView& c = m.at("w.f16");
  EXPECT_EQ(c.dtype, DType::F16);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(read_f32(c), f16);
  EXPECT_EQ(0, std::memcmp(c.data, f16_bytes(f16).data(), c.nbytes));
}

TEST_F(SafetensorsFiles, ViewsPointIntoTheMapAndKeepItAlive) {
  const auto path = write("model.safetensors", build_file({{"x", "F32", {1}, f32_bytes({4.0f})}}));
  TensorView v;
  {
    const TensorMap m = load_safetensors_file(path);
    v = m.at("x");
  }
  // The map is gone; the view's owner must still hold the mapped file open.
  auto mapped = std::static_pointer_cast<const MappedFile>(v.owner);
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(v.source, path.string());
  EXPECT_GE(v.data, mapped->data());
  EXPECT_LE(v.data + v.nbytes, mapped->data() + mapped->size());
  EXPECT_EQ(read_f32(v), std::vector<float>{4.0f});
}

TEST(SafetensorsParse, ScalarHasEmptyShapeAndOneElement) {
  // Views into an in-memory buffer are only valid while the buffer lives: keep it named.
  const Bytes file = build_file({{"s", "F32", {}, f32_bytes({42.0f})}});
  const TensorMap m = parse_safetensors(file, "mem");
  const TensorView& s = m.at("s");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.nbytes, 4u);
  EXPECT_EQ(read_f32(s), std::vector<float>{42.0f});
}

TEST(SafetensorsParse, ZeroSizeTensorsNeitherFailNorOverlap) {
  // Two empty tensors at the same offset as a real one: they share no bytes.
  const Bytes file = build_file({{"empty", "BF16", {0, 5}, {}},
                                 {"also_empty", "I64", {3, 0}, {}},
                                 {"x", "F32", {2}, f32_bytes({1.0f, 2.0f})}});
  const TensorMap m = parse_safetensors(file, "mem");
  EXPECT_EQ(m.at("empty").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(m.at("empty").nbytes, 0u);
  EXPECT_EQ(m.at("empty").numel(), 0);
  EXPECT_EQ(m.at("also_empty").dtype, DType::I64);
  EXPECT_EQ(read_f32(m.at("x")), (std::vector<float>{1.0f, 2.0f}));
}

TEST(SafetensorsParse, SkipsMetadataAndSetsSourceAndOwner) {
  auto owner = std::make_shared<int>(7);
  const Bytes file =
      build_file({{"x", "U8", {3}, {std::byte{1}, std::byte{2}, std::byte{3}}}}, {{"format", "pt"}});
  const TensorMap m = parse_safetensors(file, "label.safetensors", owner);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_FALSE(m.count("__metadata__"));
  EXPECT_EQ(m.at("x").source, "label.safetensors");
  EXPECT_EQ(m.at("x").owner, owner);
  EXPECT_EQ(m.at("x").data[2], std::byte{3});
}

TEST(SafetensorsParse, UnalignedDataIsReadBytewise) {
  // A 5-byte-shifted header puts the F32 data at an odd address inside the buffer.
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}}   )";
  Bytes data = {std::byte{0xee}};
  const Bytes payload = f32_bytes({-1.0f, 0.25f});
  data.insert(data.end(), payload.begin(), payload.end());
  const Bytes file = raw_file(header, data);
  const TensorMap m = parse_safetensors(file, "mem");
  EXPECT_EQ(read_f32(m.at("x")), (std::vector<float>{-1.0f, 0.25f}));
}

TEST_F(SafetensorsFiles, ShardedPairWithIndexLoadsEveryTensor) {
  write("model-00001-of-00002.safetensors",
        build_file({{"a.weight", "F32", {2}, f32_bytes({1.0f, 2.0f})}}));
  write("model-00002-of-00002.safetensors",
        build_file({{"b.weight", "BF16", {2, 2}, bf16_bytes({3.0f, 4.0f, 5.0f, 6.0f})}}));
  const auto index = write_index({{"a.weight", "model-00001-of-00002.safetensors"},
                                  {"b.weight", "model-00002-of-00002.safetensors"}});
  const TensorMap m = load_safetensors_index(index);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(read_f32(m.at("a.weight")), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(m.at("b.weight").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(read_f32(m.at("b.weight")), (std::vector<float>{3.0f, 4.0f, 5.0f, 6.0f}));
  EXPECT_THAT(m.at("b.weight").source, HasSubstr("model-00002-of-00002.safetensors"));
}

// ---- malformed files: each is an Error naming the file and the problem ----

TEST(SafetensorsErrors, FileShorterThanTheLengthField) {
  EXPECT_THAT(parse_error(Bytes(5), "tiny.safetensors"),
              AllOf(HasSubstr("tiny.safetensors"), HasSubstr("truncated"), HasSubstr("5 bytes"),
                    HasSubstr("shorter than the 8-byte header length")));
  EXPECT_THAT(parse_error(Bytes{}, "empty.safetensors"),
              AllOf(HasSubstr("empty.safetensors"), HasSubstr("0 bytes")));
}

TEST_F(SafetensorsFiles, EmptyFileOnDiskIsTruncated) {
  const auto p = write("empty.safetensors", Bytes{});
  EXPECT_THAT(error_of([&] { load_safetensors_file(p); }),
              AllOf(HasSubstr(p.string()), HasSubstr("shorter than the 8-byte header length")));
}

TEST_F(SafetensorsFiles, MissingFileIsAnErrorNamingIt) {
  const auto p = dir_ / "absent.safetensors";
  EXPECT_THAT(error_of([&] { load_safetensors_file(p); }),
              AllOf(HasSubstr(p.string()), HasSubstr("cannot open")));
}

TEST(SafetensorsErrors, HeaderLengthPastTheEndOfTheFile) {
  EXPECT_THAT(parse_error(raw_file(1000, "{}")),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("header length 1000"),
                    HasSubstr("past the end of the file"), HasSubstr("2 bytes follow")));
}

TEST(SafetensorsErrors, AbsurdHeaderLength) {
  EXPECT_THAT(parse_error(raw_file(0xffffffffffffffffull, "{}")),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("18446744073709551615"),
                    HasSubstr("100000000-byte limit")));
  EXPECT_THAT(parse_error(raw_file(100'000'001, "{}")), HasSubstr("100000000-byte limit"));
}

TEST(SafetensorsErrors, HeaderIsNotJson) {
  EXPECT_THAT(parse_error(raw_file(R"({"x": {"dtype": )")),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("not valid JSON")));
  EXPECT_THAT(parse_error(raw_file("")), HasSubstr("not valid JSON"));
  // Trailing bytes after the object are not JSON either.
  EXPECT_THAT(parse_error(raw_file("{} x")), HasSubstr("not valid JSON"));
}

TEST(SafetensorsErrors, HeaderIsNotAnObject) {
  EXPECT_THAT(parse_error(raw_file("[1, 2]")),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("array"), HasSubstr("not an object")));
}

TEST(SafetensorsErrors, EntryIsNotAnObject) {
  EXPECT_THAT(parse_error(raw_file(R"({"w": [1]})")),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"),
                    HasSubstr("entry is not an object")));
}

TEST(SafetensorsErrors, EntryMissingDtype) {
  EXPECT_THAT(parse_error(raw_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", Bytes(4))),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"), HasSubstr("missing \"dtype\"")));
}

TEST(SafetensorsErrors, EntryMissingShape) {
  EXPECT_THAT(parse_error(raw_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", Bytes(4))),
              AllOf(HasSubstr("'w'"), HasSubstr("missing \"shape\"")));
}

TEST(SafetensorsErrors, EntryMissingDataOffsets) {
  EXPECT_THAT(parse_error(raw_file(R"({"w": {"dtype": "F32", "shape": [1]}})", Bytes(4))),
              AllOf(HasSubstr("'w'"), HasSubstr("missing \"data_offsets\"")));
}

TEST(SafetensorsErrors, DtypeIsNotAString) {
  EXPECT_THAT(
      parse_error(raw_file(R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", Bytes(4))),
      AllOf(HasSubstr("'w'"), HasSubstr("\"dtype\" is not a string")));
}

TEST(SafetensorsErrors, ShapeWithWrongTypes) {
  const auto with_shape = [](const std::string& shape) {
    return parse_error(raw_file(
        R"({"w": {"dtype": "U8", "shape": )" + shape + R"(, "data_offsets": [0, 1]}})", Bytes(1)));
  };
  EXPECT_THAT(with_shape("1"), AllOf(HasSubstr("'w'"), HasSubstr("\"shape\" is not an array")));
  EXPECT_THAT(with_shape("[1, -1]"),
              AllOf(HasSubstr("'w'"), HasSubstr("non-negative"), HasSubstr("element 1")));
  EXPECT_THAT(with_shape("[1.0]"), AllOf(HasSubstr("non-negative"), HasSubstr("element 0")));
  EXPECT_THAT(with_shape(R"(["1"])"), HasSubstr("element 0"));
  EXPECT_THAT(with_shape("[9223372036854775808]"), HasSubstr("64-bit"));  // 2^63
}

TEST(SafetensorsErrors, DataOffsetsWithWrongTypes) {
  const auto with_offsets = [](const std::string& offsets) {
    return parse_error(raw_file(
        R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": )" + offsets + "}}", Bytes(1)));
  };
  for (const char* bad : {"0", "[0]", "[0, 1, 2]", "[-1, 1]", R"([0, "1"])", "[0.0, 1]", "{}"})
    EXPECT_THAT(with_offsets(bad),
                AllOf(HasSubstr("'w'"), HasSubstr("[begin, end] pair of non-negative integers")))
        << bad;
}

TEST(SafetensorsErrors, UnknownDtypeIsNamed) {
  EXPECT_THAT(parse_error(raw_file(
                  R"({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})", Bytes(1))),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"),
                    HasSubstr("unknown dtype 'F8_E4M3'")));
}

TEST(SafetensorsErrors, OffsetsOutsideTheDataArea) {
  EXPECT_THAT(
      parse_error(raw_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", Bytes(8))),
      AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"), HasSubstr("[4, 12]"),
            HasSubstr("outside the data area of 8 bytes")));
  // An end near 2^64 must not wrap around into range.
  EXPECT_THAT(parse_error(raw_file(
                  R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [18446744073709551615, 18446744073709551615]}})",
                  Bytes(8))),
              HasSubstr("outside the data area"));
}

TEST(SafetensorsErrors, BeginAfterEnd) {
  EXPECT_THAT(
      parse_error(raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", Bytes(8))),
      AllOf(HasSubstr("'w'"), HasSubstr("[8, 4]"), HasSubstr("begin > end")));
}

TEST(SafetensorsErrors, OverlappingTensorsNameBoth) {
  const std::string header =
      R"({"first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"( "second": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(parse_error(raw_file(header, Bytes(12))),
              AllOf(HasSubstr("model.safetensors"), HasSubstr("'first' [0, 8]"),
                    HasSubstr("'second' [4, 12]"), HasSubstr("overlap")));
  // Identical ranges overlap too, whatever the names sort as.
  const std::string same =
      R"({"b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
      R"( "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})";
  EXPECT_THAT(parse_error(raw_file(same, Bytes(4))),
              AllOf(HasSubstr("'a'"), HasSubstr("'b'"), HasSubstr("overlap")));
}

TEST(SafetensorsErrors, ByteCountDoesNotMatchShape) {
  EXPECT_THAT(
      parse_error(raw_file(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 10]}})",
                           Bytes(10))),
      AllOf(HasSubstr("model.safetensors"), HasSubstr("'w'"), HasSubstr("hold 10 bytes"),
            HasSubstr("BF16 x [2, 3] needs 12 bytes")));
}

TEST(SafetensorsErrors, ShapeProductOverflowIsCaught) {
  // 2^32 * 2^32 wraps to 0 in 64 bits; so does 2^62 * 4 bytes. Neither may pass as 0 bytes.
  EXPECT_THAT(parse_error(raw_file(
                  R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})")),
              AllOf(HasSubstr("'w'"), HasSubstr("more elements than fit in 64 bits")));
  EXPECT_THAT(parse_error(raw_file(
                  R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})")),
              AllOf(HasSubstr("'w'"), HasSubstr("more bytes than fit in 64 bits")));
  // A trailing zero does not excuse an overflowing prefix: numel() multiplies in order.
  EXPECT_THAT(parse_error(raw_file(
                  R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})")),
              HasSubstr("more elements than fit in 64 bits"));
}

// ---- sharded checkpoints ----

TEST_F(SafetensorsFiles, IndexNamesAMissingShard) {
  write("model-00001-of-00002.safetensors",
        build_file({{"a.weight", "F32", {1}, f32_bytes({1.0f})}}));
  const auto index = write_index({{"a.weight", "model-00001-of-00002.safetensors"},
                                  {"b.weight", "model-00002-of-00002.safetensors"}});
  EXPECT_THAT(error_of([&] { load_safetensors_index(index); }),
              AllOf(HasSubstr("model.safetensors.index.json"),
                    HasSubstr("model-00002-of-00002.safetensors"), HasSubstr("does not exist")));
}

TEST_F(SafetensorsFiles, IndexNamesATensorTheShardLacks) {
  write("model.safetensors", build_file({{"a.weight", "F32", {1}, f32_bytes({1.0f})}}));
  const auto index =
      write_index({{"a.weight", "model.safetensors"}, {"ghost.weight", "model.safetensors"}});
  EXPECT_THAT(error_of([&] { load_safetensors_index(index); }),
              AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("'ghost.weight'"),
                    HasSubstr("does not contain it")));
}

TEST_F(SafetensorsFiles, IndexIsNotJson) {
  const auto index = write("model.safetensors.index.json", std::string(R"({"weight_map": {)"));
  EXPECT_THAT(error_of([&] { load_safetensors_index(index); }),
              AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("not valid JSON")));
}

TEST_F(SafetensorsFiles, IndexShardNameWithSlashOrDotDot) {
  for (const char* bad : {"../model.safetensors", "sub/model.safetensors", ".."}) {
    const auto index = write_index({{"a.weight", bad}});
    EXPECT_THAT(error_of([&] { load_safetensors_index(index); }),
                AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("'a.weight'"),
                      HasSubstr(std::string("'") + bad + "'"),
                      HasSubstr("not a plain file name")))
        << bad;
  }
}

TEST_F(SafetensorsFiles, MalformedShardErrorNamesTheShard) {
  write("model.safetensors", raw_file("not json"));
  const auto index = write_index({{"a.weight", "model.safetensors"}});
  EXPECT_THAT(error_of([&] { load_safetensors_index(index); }),
              AllOf(HasSubstr((dir_ / "model.safetensors").string()), HasSubstr("not valid JSON")));
}

}  // namespace
}  // namespace nanovllm
