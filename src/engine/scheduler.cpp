#include "engine/scheduler.h"

#include <algorithm>

#include "runtime/error.h"

namespace nanovllm {

Scheduler::Scheduler(const Config& c, BlockManager& blocks)
    : max_num_seqs_(c.max_num_seqs), max_batched_tokens_(c.max_num_batched_tokens), max_model_len_(c.max_model_len),
      chunked_prefill_(c.enable_chunked_prefill), blocks_(blocks) {}

void Scheduler::add(Sequence* seq) {
  seq->status = SequenceStatus::Waiting;
  waiting_.push_back(seq);
}

void Scheduler::preempt(Sequence* seq) {
  blocks_.deallocate(*seq);
  seq->status = SequenceStatus::Waiting;
  ++seq->num_preemptions;
  ++preemptions_;
  waiting_.push_front(seq);
}

SchedulerOutput Scheduler::schedule() {
  SchedulerOutput out;
  int budget = max_batched_tokens_;
  // 1. Running sequences, oldest first.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    if (seq->pending && seq->reached_length(max_model_len_)) {  // its pending token is its last
      ++i;
      continue;
    }
    int n = std::min(seq->num_uncomputed(), budget);
    if (!chunked_prefill_ && n < seq->num_uncomputed()) break;  // an unchunked prefill must fit whole
    bool self_preempted = false;
    while (!blocks_.can_append(*seq, seq->num_computed_tokens + n)) {
      Sequence* victim = running_.back();
      running_.pop_back();
      preempt(victim);
      ++out.num_preempted;
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // it was the newest: nothing after it remains
    blocks_.append(*seq, seq->num_computed_tokens + n);
    out.scheduled.push_back({seq, n, seq->num_computed_tokens + n == seq->num_tokens()});
    budget -= n;
    ++i;
  }
  // 2. Waiting sequences, in order, unless this step had to preempt.
  while (out.num_preempted == 0 && !waiting_.empty() && budget > 0 &&
         static_cast<int>(running_.size()) < max_num_seqs_) {
    Sequence* seq = waiting_.front();
    if (!blocks_.can_allocate(*seq)) break;
    blocks_.allocate(*seq);  // finds the cached prefix: num_computed_tokens starts past it
    int n = std::min(seq->num_uncomputed(), budget);
    if (!chunked_prefill_ && n < seq->num_uncomputed()) {
      blocks_.deallocate(*seq);
      break;
    }
    waiting_.pop_front();
    seq->status = SequenceStatus::Running;
    running_.push_back(seq);
    out.scheduled.push_back({seq, n, seq->num_computed_tokens + n == seq->num_tokens()});
    budget -= n;
  }
  out.num_batched_tokens = max_batched_tokens_ - budget;
  return out;
}

void Scheduler::update_computed(const SchedulerOutput& out) {
  for (const auto& s : out.scheduled) {
    if (s.seq->is_finished()) continue;  // stopped (async scheduling) while the step ran
    s.seq->num_computed_tokens += s.num_tokens;
    blocks_.commit(*s.seq);
  }
}

void Scheduler::finish(Sequence* seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
  if (!seq->block_table.empty()) blocks_.deallocate(*seq);
  seq->status = SequenceStatus::Finished;
}

std::vector<const Sequence*> Scheduler::live() const {
  std::vector<const Sequence*> v(running_.begin(), running_.end());
  v.insert(v.end(), waiting_.begin(), waiting_.end());
  return v;
}

}  // namespace nanovllm
