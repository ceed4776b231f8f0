// A read-only memory map of a whole file. Checkpoint tensors are views into these maps, kept
// alive by shared ownership, so loading a model reads each byte from disk once, when it is
// converted into the backend's own memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace nanovllm {

class MappedFile {
 public:
  // Throws Error naming the path if the file cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }
  // Drops this file's pages from the OS page cache (for cold-load measurements).
  void evict_from_page_cache() const;

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
};

}  // namespace nanovllm
