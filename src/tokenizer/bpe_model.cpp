#include "tokenizer/bpe_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>

#include "runtime/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"

namespace nanovllm {

using nlohmann::json;

namespace {

constexpr int32_t kMaxTokenId = (1 << 24) - 1;  // refuse absurd ids rather than allocate for them
constexpr size_t kCacheMaxKeyBytes = 256;       // as HF: longer pre-tokens are not cached
constexpr char32_t kMetaspace = 0x2581;  // "▁", SentencePiece's word marker
constexpr std::string_view kMetaspaceUtf8 = "\xE2\x96\x81";
constexpr size_t kCacheCapacity = 1 << 16;      // words per cache generation (two per thread and model)

std::atomic<uint64_t> next_cache_owner{1};

// A thread's cache of pre-token -> ids for one model. Per thread, as Hugging Face does: no
// locks on the hot path, and each encoding thread warms its own. Two generations bound its
// size without forgetting the common words: when the current one fills up it becomes the old
// one, and old entries that are used again move back into the current one.
struct CacheGeneration {
  StringIdMap index;                 // key -> entry number
  std::vector<uint32_t> offsets{0};  // entry i's ids are ids[offsets[i] .. offsets[i + 1])
  std::vector<int32_t> ids;
  bool append(std::string_view key, std::vector<int32_t>& out) const {
    int32_t e = index.find(key);
    if (e < 0) return false;
    out.insert(out.end(), ids.begin() + offsets[e], ids.begin() + offsets[e + 1]);
    return true;
  }
  void insert(std::string_view key, const int32_t* first, size_t n) {
    index.insert(key, static_cast<int32_t>(offsets.size() - 1));
    ids.insert(ids.end(), first, first + n);
    offsets.push_back(static_cast<uint32_t>(ids.size()));
  }
};

struct LocalCache {
  CacheGeneration current, old;
  bool lookup(std::string_view key, std::vector<int32_t>& out) {
    if (current.append(key, out)) return true;
    const size_t before = out.size();
    if (!old.append(key, out)) return false;
    insert(key, out.data() + before, out.size() - before);
    return true;
  }
  void insert(std::string_view key, const int32_t* first, size_t n) {
    if (key.size() >= kCacheMaxKeyBytes) return;
    if (current.index.size() >= kCacheCapacity) {
      old = std::move(current);
      current = CacheGeneration{};
    }
    current.insert(key, first, n);
  }
};

LocalCache& local_cache(uint64_t owner) {
  struct Slot {
    uint64_t owner;
    std::unique_ptr<LocalCache> cache;
  };
  thread_local std::vector<Slot> slots;
  thread_local LocalCache* last = nullptr;
  thread_local uint64_t last_owner = 0;
  if (last && last_owner == owner) return *last;
  auto it = std::find_if(slots.begin(), slots.end(), [&](const Slot& s) { return s.owner == owner; });
  if (it == slots.end()) {
    if (slots.size() >= 8) slots.erase(slots.begin());  // models come and go; keep the newest
    slots.push_back({owner, std::make_unique<LocalCache>()});
    it = slots.end() - 1;
  }
  last = it->cache.get();
  last_owner = owner;
  return *last;
}

std::optional<std::string> optional_string(const json& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw Error(std::string("tokenizer.json: model.") + key + " must be a string or null");
  return it->get<std::string>();
}

bool optional_bool(const json& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw Error(std::string("tokenizer.json: model.") + key + " must be a boolean or null");
  return it->get<bool>();
}

struct Symbol {
  int32_t id, prev, next;
  bool alive;
};

// A candidate merge: lowest rank first, then leftmost, in one 64-bit key (rank << 32 | pos).
struct HeapEntry {
  uint64_t key;
  int32_t new_id;
  uint32_t pos() const { return static_cast<uint32_t>(key); }
  // std heap algorithms build a max-heap: "less" here means a later merge.
  bool operator<(const HeapEntry& o) const { return key > o.key; }
};

HeapEntry heap_entry(uint32_t rank, uint32_t pos, int32_t new_id) {
  return {(static_cast<uint64_t>(rank) << 32) | pos, new_id};
}

}  // namespace

BpeModel::BpeModel(const json& m) : cache_owner_(next_cache_owner.fetch_add(2)) {
  auto vit = m.find("vocab");
  auto mit = m.find("merges");
  if (vit == m.end() || !vit->is_object()) throw Error("tokenizer.json: BPE model has no \"vocab\" object");
  if (mit == m.end() || !mit->is_array()) throw Error("tokenizer.json: BPE model has no \"merges\" array");
  if (auto d = m.find("dropout"); d != m.end() && !d->is_null()) {
    if (!d->is_number()) throw Error("tokenizer.json: model.dropout must be a number or null");
    double p = d->get<double>();
    if (p < 0.0 || p > 1.0) throw Error("tokenizer.json: model.dropout must be in [0, 1]");
    // Dropout makes encoding random (a training device); inference tokenizers have none.
    if (p > 0.0) throw Error("tokenizer.json: BPE dropout " + std::to_string(p) + " is not supported");
  }
  unk_token_ = optional_string(m, "unk_token");
  continuing_subword_prefix_ = optional_string(m, "continuing_subword_prefix").value_or("");
  end_of_word_suffix_ = optional_string(m, "end_of_word_suffix").value_or("");
  fuse_unk_ = optional_bool(m, "fuse_unk");
  byte_fallback_ = optional_bool(m, "byte_fallback");
  ignore_merges_ = optional_bool(m, "ignore_merges");

  vocab_.reserve(vit->size());
  int32_t max_id = -1;
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer()) throw Error("tokenizer.json: vocab entry '" + it.key() + "' has no integer id");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) throw Error("tokenizer.json: vocab id " + std::to_string(id) + " of '" + it.key() + "' is out of range");
    vocab_.insert(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  id_to_token_.assign(max_id + 1, std::string());
  has_id_.assign(max_id + 1, false);
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    int32_t id = it.value().get<int32_t>();
    id_to_token_[id] = it.key();
    has_id_[id] = true;
  }

  merges_.reserve(mit->size());
  const size_t prefix_len = continuing_subword_prefix_.size();
  uint32_t rank = 0;
  std::string merged;
  for (const json& entry : *mit) {
    std::string a, b;
    if (entry.is_string()) {
      const std::string& line = entry.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;  // merges.txt header, skipped without a rank
      size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        throw Error("tokenizer.json: merge " + std::to_string(rank + 1) + " ('" + line + "') is not two tokens separated by one space");
      a = line.substr(0, sp);
      b = line.substr(sp + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    } else {
      throw Error("tokenizer.json: merge " + std::to_string(rank + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    int32_t a_id = vocab_.find(a), b_id = vocab_.find(b);
    if (a_id < 0) throw Error("tokenizer.json: merge token '" + a + "' is not in the vocabulary");
    if (b_id < 0) throw Error("tokenizer.json: merge token '" + b + "' is not in the vocabulary");
    if (b.size() < prefix_len) throw Error("tokenizer.json: merge token '" + b + "' is shorter than continuing_subword_prefix");
    merged.assign(a).append(b, prefix_len);
    int32_t new_id = vocab_.find(merged);
    if (new_id < 0) throw Error("tokenizer.json: merged token '" + merged + "' is not in the vocabulary");
    merges_.insert(a_id, b_id, {rank, new_id});
    ++rank;
  }

  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_fallback_ids_[b] = vocab_.find(name);
    byte_level_ids_[b] = vocab_.find(byte_level::tables().byte_to_utf8[b]);
  }
  const bool plain_chars = continuing_subword_prefix_.empty() && end_of_word_suffix_.empty();
  byte_level_direct_ = plain_chars && std::all_of(byte_level_ids_.begin(), byte_level_ids_.end(), [](int32_t id) { return id >= 0; });
  if (plain_chars) {
    // Single-character tokens, for the per-character lookups of SentencePiece-style words.
    bmp_char_ids_.assign(0x10000, -1);
    for (int32_t id = 0; id <= max_id; ++id) {
      if (!has_id_[id]) continue;
      const std::string& t = id_to_token_[id];
      if (t.empty() || unicode::find_invalid_utf8(t) != std::string::npos) continue;
      size_t i = 0;
      char32_t cp = unicode::next_char(t, i);
      if (i == t.size() && cp < 0x10000) bmp_char_ids_[cp] = vocab_.find(t);
    }
    if (!ignore_merges_ && bmp_char_ids_[kMetaspace] >= 0) {
      metaspace_cuts_ = true;
      for (int32_t id = 0; id <= max_id; ++id) {
        if (!has_id_[id]) continue;
        const std::string& t = id_to_token_[id];
        for (size_t at = t.find(kMetaspaceUtf8, 1); at != std::string::npos; at = t.find(kMetaspaceUtf8, at + 1)) {
          size_t k = at - 1;
          while (k > 0 && (static_cast<unsigned char>(t[k]) & 0xC0) == 0x80) --k;
          size_t j = k;
          before_metaspace_.push_back(unicode::next_char(t, j));
        }
      }
      std::sort(before_metaspace_.begin(), before_metaspace_.end());
      before_metaspace_.erase(std::unique(before_metaspace_.begin(), before_metaspace_.end()), before_metaspace_.end());
      auto in_f = [&](char32_t c) { return std::binary_search(before_metaspace_.begin(), before_metaspace_.end(), c); };
      // An unknown character's symbol is a byte token (ends in '>') or unk; with neither it is
      // dropped and the symbol before it could end in anything.
      const bool all_bytes = std::all_of(byte_fallback_ids_.begin(), byte_fallback_ids_.end(), [](int32_t id) { return id >= 0; });
      cut_after_unknown_ok_ = ((byte_fallback_ && all_bytes) || unk_token_) && !in_f('>');
      if (unk_token_ && !unk_token_->empty()) {
        size_t k = unk_token_->size() - 1;
        while (k > 0 && (static_cast<unsigned char>((*unk_token_)[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (in_f(unicode::next_char(*unk_token_, j))) cut_after_unknown_ok_ = false;
      }
    }
  }
}

bool BpeModel::can_cut_after(char32_t c) const {
  if (c == kMetaspace) return false;
  bool known;
  if (c < 0x10000) {
    known = bmp_char_ids_[c] >= 0;
  } else {
    std::string s;
    unicode::append_utf8(s, c);
    known = vocab_.find(s) >= 0;
  }
  if (!known) return cut_after_unknown_ok_;
  return !std::binary_search(before_metaspace_.begin(), before_metaspace_.end(), c);
}

bool BpeModel::cache_lookup(std::string_view key, std::vector<int32_t>& out) const {
  return local_cache(cache_owner_).lookup(key, out);
}

void BpeModel::cache_insert(std::string_view key, const int32_t* ids, size_t n) const {
  local_cache(cache_owner_).insert(key, ids, n);
}

void BpeModel::word_ids(std::string_view w, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> symbols;
  thread_local std::string piece;
  symbols.clear();
  const bool plain = !bmp_char_ids_.empty();
  int32_t unk_id = -1;
  size_t unk_pending = 0;  // HF keeps one pending (fused) unk until a known character follows
  auto resolve_unk = [&]() -> int32_t {
    int32_t id = vocab_.find(*unk_token_);
    if (id < 0) throw Error("tokenizer: unk token '" + *unk_token_ + "' is not in the vocabulary");
    return id;
  };
  for (size_t i = 0; i < w.size();) {
    const size_t start = i;
    const char32_t cp = unicode::next_char(w, i);
    const bool first = start == 0, last = i == w.size();
    int32_t id;
    std::string_view s;
    if (plain) {
      s = w.substr(start, i - start);
      id = cp < 0x10000 ? bmp_char_ids_[cp] : vocab_.find(s);
    } else {
      piece.clear();
      if (!first) piece += continuing_subword_prefix_;
      piece.append(w, start, i - start);
      if (last) piece += end_of_word_suffix_;
      s = piece;
      id = vocab_.find(s);
    }
    if (id >= 0) {
      if (unk_pending) {
        symbols.push_back(unk_id);
        unk_pending = 0;
      }
      symbols.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : s) all = all && byte_fallback_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : s) symbols.push_back(byte_fallback_ids_[b]);
        continue;
      }
    }
    if (unk_token_) {
      if (unk_pending && fuse_unk_) continue;  // extends the pending unk
      if (unk_pending) symbols.push_back(unk_id);
      unk_id = resolve_unk();
      unk_pending = 1;
    }
    // With neither byte fallback nor unk, HF drops the character.
  }
  if (unk_pending) symbols.push_back(unk_id);
  merge(symbols, out);
}

void BpeModel::merge(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  const size_t n = ids.size();
  if (n <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<HeapEntry> heap;
  sym.resize(n);
  heap.clear();
  for (size_t i = 0; i < n; ++i)
    sym[i] = {ids[i], static_cast<int32_t>(i) - 1, i + 1 < n ? static_cast<int32_t>(i + 1) : -1, true};
  for (size_t i = 0; i + 1 < n; ++i)
    if (const MergeMap::Value* m = merges_.find(ids[i], ids[i + 1])) heap.push_back(heap_entry(m->rank, static_cast<uint32_t>(i), m->new_id));
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const HeapEntry top = heap.back();
    heap.pop_back();
    const uint32_t pos = top.pos();
    Symbol& cur = sym[pos];
    if (!cur.alive || cur.next < 0) continue;
    Symbol& right = sym[cur.next];
    const MergeMap::Value* m = merges_.find(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // a stale entry
    cur.id = top.new_id;
    right.alive = false;
    cur.next = right.next;
    if (cur.next >= 0) sym[cur.next].prev = static_cast<int32_t>(pos);
    if (cur.prev >= 0) {
      if (const MergeMap::Value* p = merges_.find(sym[cur.prev].id, cur.id)) {
        heap.push_back(heap_entry(p->rank, static_cast<uint32_t>(cur.prev), p->new_id));
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (cur.next >= 0) {
      if (const MergeMap::Value* q = merges_.find(cur.id, sym[cur.next].id)) {
        heap.push_back(heap_entry(q->rank, pos, q->new_id));
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void BpeModel::merge_by_metaspace_words(std::string_view w, std::vector<int32_t>& out) const {
  auto piece = [&](std::string_view seg) {
    if (cache_lookup(seg, out)) return;
    const size_t before = out.size();
    word_ids(seg, out);
    cache_insert(seg, out.data() + before, out.size() - before);
  };
  size_t start = 0;
  char32_t prev = kMetaspace;
  for (size_t i = 0; i < w.size();) {
    const size_t at = i;
    const char32_t c = unicode::next_char(w, i);
    if (c == kMetaspace && at > start && can_cut_after(prev)) {
      piece(w.substr(start, at - start));
      start = at;
    }
    prev = c;
  }
  piece(w.substr(start));
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (cache_lookup(word, out)) return;
  const size_t before = out.size();
  int32_t whole = ignore_merges_ ? vocab_.find(word) : -1;
  if (whole >= 0) {
    out.push_back(whole);
  } else if (metaspace_cuts_ && word.find(kMetaspaceUtf8, 1) != std::string_view::npos) {
    merge_by_metaspace_words(word, out);
  } else {
    word_ids(word, out);
  }
  cache_insert(word, out.data() + before, out.size() - before);
}

void BpeModel::tokenize_byte_level(std::string_view raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  LocalCache& c = local_cache(cache_owner_ + 1);  // raw-byte keys: a cache of their own
  if (c.lookup(raw, out)) return;
  const size_t before = out.size();
  thread_local std::string mapped;
  int32_t whole = -1;
  if (ignore_merges_ || !byte_level_direct_) {
    mapped.clear();
    byte_level::append_mapped(mapped, raw);
    if (ignore_merges_) whole = vocab_.find(mapped);
  }
  if (whole >= 0) {
    out.push_back(whole);
  } else if (byte_level_direct_) {
    thread_local std::vector<int32_t> symbols;
    symbols.clear();
    for (unsigned char b : raw) symbols.push_back(byte_level_ids_[b]);
    merge(symbols, out);
  } else {
    word_ids(mapped, out);
  }
  c.insert(raw, out.data() + before, out.size() - before);
}

}  // namespace nanovllm
