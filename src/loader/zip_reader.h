// A minimal reader for the zip archives torch.save writes: the central directory is parsed once,
// entries are found by name, and an entry's bytes are a span into the archive itself (never a
// copy), so a multi-gigabyte checkpoint is read lazily through its memory map.
//
// Only what torch's writer (miniz, caffe2/serialize/inline_container.cc) produces is supported:
// single-disk archives, ZIP64 records for archives and entries past 4 GiB, and stored (method 0)
// entries. Local headers are read for each entry because torch pads them with an extra field to
// align tensor data to 64 bytes, so the central directory alone does not say where data starts.
// CRCs are not verified: that would read every byte of every tensor at open time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nanovllm {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored; anything else is compressed and cannot be read
  uint16_t flags = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
};

class ZipReader {
 public:
  // Parses the end-of-central-directory record(s) and every central directory entry. Throws Error
  // naming `label` if the span is not a zip, is truncated, or has entries that point outside it.
  ZipReader(std::span<const std::byte> file, std::string label);

  // In central directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr if there is no entry of that name.
  const ZipEntry* find(std::string_view name) const;
  // The entry's bytes inside the archive. Throws Error naming the entry if it is compressed or
  // encrypted, or if its local header or data lie outside the archive.
  std::span<const std::byte> data(const ZipEntry& entry) const;

  const std::string& label() const { return label_; }

 private:
  struct Directory {
    uint64_t entries = 0, size = 0, offset = 0;
  };
  Directory find_directory() const;
  void read_directory(const Directory& dir);
  [[noreturn]] void fail(const std::string& problem) const;

  std::span<const std::byte> file_;
  std::string label_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace nanovllm
