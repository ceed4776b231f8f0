#include "loader/zip_reader.h"

#include <algorithm>

#include "runtime/error.h"

namespace nanovllm {
namespace {

// Record signatures and fixed sizes from PKWARE's APPNOTE.TXT (sections 4.3.7, 4.3.12, 4.3.14-16).
constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kLocalHeaderBytes = 30;
constexpr uint64_t kCentralHeaderBytes = 46;
constexpr uint64_t kEndBytes = 22;
constexpr uint64_t kZip64EndBytes = 56;
constexpr uint64_t kZip64LocatorBytes = 20;
constexpr uint64_t kMaxCommentBytes = 0xffff;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint16_t kEncryptedFlag = 0x0001;
// A 16- or 32-bit field holding all ones means "the real value is in the ZIP64 record/extra".
constexpr uint32_t kZip64Marker32 = 0xffffffff;
constexpr uint16_t kZip64Marker16 = 0xffff;

uint64_t le(const std::byte* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}
uint16_t le16(const std::byte* p) { return static_cast<uint16_t>(le(p, 2)); }
uint32_t le32(const std::byte* p) { return static_cast<uint32_t>(le(p, 4)); }
uint64_t le64(const std::byte* p) { return le(p, 8); }

// [offset, offset + length) lies within [0, size), without overflowing.
bool fits(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

}  // namespace

ZipReader::ZipReader(std::span<const std::byte> file, std::string label)
    : file_(file), label_(std::move(label)) {
  read_directory(find_directory());
}

void ZipReader::fail(const std::string& problem) const { throw Error(label_ + ": " + problem); }

ZipReader::Directory ZipReader::find_directory() const {
  const uint64_t size = file_.size();
  if (size < kEndBytes)
    fail("not a zip archive: " + std::to_string(size) +
         " bytes is shorter than an end-of-central-directory record");
  // The record is the last thing in the file but for a comment of up to 64 KiB, which may itself
  // contain the signature: the real record is the one whose comment ends exactly at the end of
  // the file (torch writes no comment and nothing after the record).
  const uint64_t lowest =
      size - kEndBytes > kMaxCommentBytes ? size - kEndBytes - kMaxCommentBytes : 0;
  uint64_t end = size;  // not found
  for (uint64_t pos = size - kEndBytes + 1; pos-- > lowest;) {
    const std::byte* p = file_.data() + pos;
    if (le32(p) == kEndSig && le16(p + 20) == size - kEndBytes - pos) {
      end = pos;
      break;
    }
  }
  if (end == size)
    fail("not a zip archive (no end-of-central-directory record; truncated, or another format)");

  const std::byte* e = file_.data() + end;
  if (le16(e + 4) != 0 || le16(e + 6) != 0) fail("multi-disk zip archives are not supported");
  Directory dir{le16(e + 10), le32(e + 12), le32(e + 16)};

  // A ZIP64 locator sits just before the classic record when the archive needs 64-bit fields;
  // miniz writes it whenever any count, size or offset overflows, and its values then win.
  if (end >= kZip64LocatorBytes && le32(e - kZip64LocatorBytes) == kZip64LocatorSig) {
    const std::byte* loc = e - kZip64LocatorBytes;
    const uint64_t record = le64(loc + 8);
    if (le32(loc + 4) != 0 || le32(loc + 16) > 1) fail("multi-disk zip archives are not supported");
    if (!fits(record, kZip64EndBytes, end - kZip64LocatorBytes))
      fail("ZIP64 end-of-central-directory record at offset " + std::to_string(record) +
           " lies outside the archive (truncated?)");
    const std::byte* z = file_.data() + record;
    if (le32(z) != kZip64EndSig)
      fail("no ZIP64 end-of-central-directory record at offset " + std::to_string(record));
    if (le32(z + 16) != 0 || le32(z + 20) != 0) fail("multi-disk zip archives are not supported");
    dir = {le64(z + 32), le64(z + 40), le64(z + 48)};
    if (!fits(dir.offset, dir.size, record))
      fail("central directory [" + std::to_string(dir.offset) + ", +" + std::to_string(dir.size) +
           "] runs past its end record (truncated or corrupt archive)");
    return dir;
  }
  if (dir.entries == kZip64Marker16 || dir.size == kZip64Marker32 || dir.offset == kZip64Marker32)
    fail("end-of-central-directory record asks for ZIP64 values but there is no ZIP64 locator");
  if (!fits(dir.offset, dir.size, end))
    fail("central directory [" + std::to_string(dir.offset) + ", +" + std::to_string(dir.size) +
         "] runs past its end record (truncated or corrupt archive)");
  return dir;
}

void ZipReader::read_directory(const Directory& dir) {
  // Checked before looping so a forged count cannot make us spin or reserve: every entry needs at
  // least a fixed header inside the directory.
  if (dir.entries > dir.size / kCentralHeaderBytes)
    fail("central directory of " + std::to_string(dir.size) + " bytes cannot hold the " +
         std::to_string(dir.entries) + " entries the end record claims");
  const std::byte* base = file_.data() + dir.offset;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < dir.entries; ++i) {
    const std::string where = "central directory entry " + std::to_string(i);
    if (!fits(pos, kCentralHeaderBytes, dir.size)) fail(where + " runs past the directory");
    const std::byte* h = base + pos;
    if (le32(h) != kCentralHeaderSig) fail(where + " has a bad signature (corrupt archive)");
    const uint64_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
    if (!fits(pos + kCentralHeaderBytes, name_len + extra_len + comment_len, dir.size))
      fail(where + " runs past the directory");
    ZipEntry e;
    e.flags = le16(h + 8);
    e.method = le16(h + 10);
    e.compressed_size = le32(h + 20);
    e.uncompressed_size = le32(h + 24);
    e.local_header_offset = le32(h + 42);
    const uint16_t disk = le16(h + 34);
    const auto* name = reinterpret_cast<const char*>(h + kCentralHeaderBytes);
    e.name.assign(name, name_len);
    const std::string entry = "zip entry '" + printable(e.name) + "'";

    // The ZIP64 extra holds, in this order, only the fields whose 32-bit slot is all ones.
    const std::byte* x = h + kCentralHeaderBytes + name_len;
    for (uint64_t off = 0; off + 4 <= extra_len;) {
      const uint16_t id = le16(x + off), len = le16(x + off + 2);
      if (off + 4 + len > extra_len) fail(entry + ": extra field runs past its header");
      if (id == kZip64ExtraId) {
        const std::byte* f = x + off + 4;
        uint64_t used = 0;
        auto take = [&](uint64_t& field) {
          if (used + 8 > len) fail(entry + ": ZIP64 extra field is too short");
          field = le64(f + used);
          used += 8;
        };
        if (e.uncompressed_size == kZip64Marker32) take(e.uncompressed_size);
        if (e.compressed_size == kZip64Marker32) take(e.compressed_size);
        if (e.local_header_offset == kZip64Marker32) take(e.local_header_offset);
      }
      off += 4 + len;
    }
    if (disk != 0 && disk != kZip64Marker16) fail(entry + " lies on another disk");
    if (!fits(e.local_header_offset, kLocalHeaderBytes, dir.offset))
      fail(entry + ": local header offset " + std::to_string(e.local_header_offset) +
           " lies outside the archive's data area");
    if (!by_name_.emplace(e.name, entries_.size()).second)
      fail(entry + " appears twice in the central directory");
    entries_.push_back(std::move(e));
    pos += kCentralHeaderBytes + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> ZipReader::data(const ZipEntry& e) const {
  const std::string entry = "zip entry '" + printable(e.name) + "'";
  if (e.flags & kEncryptedFlag) fail(entry + " is encrypted, which is not supported");
  if (e.method != 0)
    fail(entry + " is compressed (method " + std::to_string(e.method) +
         "); only stored entries are supported, as torch.save writes them");
  if (e.compressed_size != e.uncompressed_size)
    fail(entry + " is stored but its compressed size " + std::to_string(e.compressed_size) +
         " differs from its size " + std::to_string(e.uncompressed_size));
  const uint64_t size = file_.size();
  if (!fits(e.local_header_offset, kLocalHeaderBytes, size))
    fail(entry + ": local header lies outside the archive");
  const std::byte* h = file_.data() + e.local_header_offset;
  if (le32(h) != kLocalHeaderSig) fail(entry + ": local header has a bad signature");
  // The local name and extra lengths may differ from the central ones (torch's alignment padding
  // lives only here), so they decide where the data begins.
  const uint64_t start = e.local_header_offset + kLocalHeaderBytes + le16(h + 26) + le16(h + 28);
  if (!fits(start, e.compressed_size, size))
    fail(entry + ": data [" + std::to_string(start) + ", +" + std::to_string(e.compressed_size) +
         "] runs past the end of the archive (" + std::to_string(size) + " bytes; truncated?)");
  return file_.subspan(start, e.compressed_size);
}

}  // namespace nanovllm
