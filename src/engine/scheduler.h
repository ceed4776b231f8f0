// Continuous batching. Each step is planned under two limits, max_num_seqs sequences and
// max_num_batched_tokens tokens, first come first served:
//   1. running sequences first, oldest first: a decode takes 1 token, an unfinished prefill
//      the rest of its prompt (cut to the budget: chunked prefill). A sequence that needs a new
//      block when none is free preempts the newest running sequence (possibly itself): its
//      blocks are freed and it goes back to the front of the queue, to be recomputed;
//   2. then, if nothing was preempted, waiting sequences in arrival order, while their blocks
//      can be had; the first one that cannot be admitted stops admission (no overtaking).
// Prefill chunks and decodes mix in one step. With async scheduling a running sequence may end
// in a pending token (Sequence::pending): it decodes that token like any other, unless the
// token will stop it by length anyway.
#pragma once

#include <deque>
#include <vector>

#include "engine/block_manager.h"
#include "nanovllm/config.h"

namespace nanovllm {

struct ScheduledSequence {
  Sequence* seq;
  int num_tokens;  // tokens computed this step, from seq->num_computed_tokens on
  bool samples;    // whether the step reaches the end of its tokens, so it samples the next
};

struct SchedulerOutput {
  std::vector<ScheduledSequence> scheduled;
  int num_batched_tokens = 0;
  int num_preempted = 0;
  bool empty() const { return scheduled.empty(); }
};

class Scheduler {
 public:
  Scheduler(const Config& config, BlockManager& blocks);

  void add(Sequence* seq);
  bool has_unfinished() const { return !waiting_.empty() || !running_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  SchedulerOutput schedule();
  // After the model ran (or, async, was queued for) the step: advances computed tokens and
  // publishes full blocks to the prefix cache (their tokens are known: a pending token is the
  // step's last, past them). Skips sequences finished meanwhile. Sampled tokens are appended by
  // the engine, which then calls finish() for sequences that stop.
  void update_computed(const SchedulerOutput& out);
  // Removes a running or waiting sequence and returns its blocks.
  void finish(Sequence* seq);
  std::vector<const Sequence*> live() const;
  uint64_t total_preemptions() const { return preemptions_; }

 private:
  void preempt(Sequence* seq);

  int max_num_seqs_, max_batched_tokens_, max_model_len_;
  bool chunked_prefill_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order: back() is the newest
  uint64_t preemptions_ = 0;
};

}  // namespace nanovllm
