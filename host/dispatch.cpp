// The variant registry, spec strings, and the choice of a variant for a call.
#include "dispatch.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "tuning_cache.hpp"

namespace bnorm {
namespace {

using kern::Device;
using kern::Policy;

// Values per 16-byte access for the problem's dtype (4 floats, 8 halves).
int wide(const Problem& pr) { return kern::wide_vec(pr.shape.dtype); }

bool wide_allowed(const Problem& pr) { return pr.aligned16 && pr.shape.hw % wide(pr) == 0; }

int best_vec(const Problem& pr) { return wide_allowed(pr) ? wide(pr) : 1; }

int64_t wave_ctas(const Device& d, int threads) {
  return static_cast<int64_t>(d.sm_count) * std::max(1, d.max_threads_per_sm / threads);
}

// Rows of channels: NHWC, or NCHW with h*w = 1 (the same (N, C) matrix).
bool is_rows(const Problem& pr) { return pr.desc.layout == BNORM_LAYOUT_NHWC || pr.shape.hw == 1; }

// What every kernel requires, whatever the policy (the NCHW families).
std::string why_not_common(const Problem& pr, const Policy& p) {
  if (pr.desc.layout != BNORM_LAYOUT_NCHW && pr.shape.hw != 1) return "an NCHW kernel; the tensor is NHWC";
  if (!kern::policy_compiled(p, pr.shape.dtype)) return "no kernel compiled for this threads/vec pair and dtype";
  if (p.vec > 1 && pr.shape.hw % p.vec != 0) return "16-byte vectors need h*w divisible by the vector width";
  if (p.vec > 1 && !pr.aligned16) return "16-byte vectors need 16-byte aligned pointers";
  if (pr.shape.c > INT32_MAX) return "more than 2^31-1 channels";
  return "";
}

// ---- two-pass reductions (forward training, backward) ----------------------------

std::string why_not_block(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_common(pr, p);
  if (r.empty() && p.splits != 1) r = "two_pass_block runs one CTA per channel (s1)";
  return r;
}

std::string why_not_split(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_common(pr, p);
  if (r.empty() && (p.splits < 2 || p.splits > kern::kMaxSplits))
    r = "two_pass_split needs 2 to 128 CTAs per channel";
  return r;
}

Policy heuristic_block(const Problem& pr, const Device&) {
  Policy p;
  p.vec = best_vec(pr);
  p.threads = pr.shape.m() >= 64 * 1024 ? 512 : 256;
  p.splits = 1;
  return p;
}

// Enough CTAs per channel for one wave over the GPU, but every thread with at least two
// vectors to load: past that, the merge and the idle lanes cost more than they save.
Policy heuristic_split(const Problem& pr, const Device& d) {
  Policy p;
  p.vec = best_vec(pr);
  p.threads = 256;
  const int64_t vectors = pr.shape.m() / p.vec;
  const int64_t by_work = std::max<int64_t>(1, vectors / (int64_t{p.threads} * 2));
  // Two CTAs per SM in all: measured on the H100, more splits only add merge work
  // (N=256, C=64, 112x112: s4 0.86 ms against s17 0.93 ms).
  const int64_t by_wave = (2 * int64_t{d.sm_count} + pr.shape.c - 1) / pr.shape.c;
  p.splits = static_cast<int>(std::clamp<int64_t>(std::min(by_work, by_wave), 2, kern::kMaxSplits));
  return p;
}

std::vector<Policy> space_reduce(const Problem& pr, bool split) {
  std::vector<Policy> out;
  const int vecs[2] = {wide(pr), 1};
  for (int vec : vecs) {
    if (vec > 1 && !wide_allowed(pr)) continue;
    for (int threads : {128, 256, 512}) {
      if (!split) {
        out.push_back(Policy{threads, vec, 1});
        continue;
      }
      const int64_t vectors = pr.shape.m() / vec;
      for (int s = 2; s <= kern::kMaxSplits; s *= 2) {
        if (static_cast<int64_t>(s - 1) * threads >= vectors) break;  // idle CTAs
        out.push_back(Policy{threads, vec, s});
      }
    }
  }
  return out;
}

std::vector<Policy> space_block(const Problem& pr, const Device&) { return space_reduce(pr, false); }
std::vector<Policy> space_split(const Problem& pr, const Device&) { return space_reduce(pr, true); }

size_t ws_reduce(const Problem& pr, const Policy& p) { return kern::two_pass_workspace_bytes(pr.shape, p); }
size_t ws_none(const Problem&, const Policy&) { return 0; }

cudaError_t launch_fwd_two_pass(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                const kern::Workspace& ws, cudaStream_t st) {
  return kern::forward_training_two_pass(pr.shape, p, d, a.fwd, ws, st);
}
cudaError_t launch_bwd_two_pass(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                const kern::Workspace& ws, cudaStream_t st) {
  return kern::backward_two_pass(pr.shape, p, d, a.bwd, ws, st);
}

// ---- single-pass persistent (forward training, backward) --------------------------

// Tensors the persistent tile holds: x; dy and x; dy, x and y behind a fused ReLU.
int held_inputs(const Problem& pr) {
  if (pr.op != BNORM_OP_BACKWARD) return 1;
  return pr.relu ? 3 : 2;
}

// Co-resident CTAs: the device's real occupancy, or the launch bounds' promise (two per
// SM) when no device is present to ask (dispatch tests on a CPU machine).
int resident_ctas(const Problem& pr, const Policy& p, const Device& d) {
  const int r = kern::persistent_resident_ctas(p, pr.shape.dtype, held_inputs(pr));
  return r > 0 ? r : 2 * d.sm_count;
}

int64_t persistent_min_splits(const Problem& pr, const Policy& p) {
  const int64_t per_cta = kern::persistent_vectors_per_cta(p, held_inputs(pr));
  return (pr.shape.m() / p.vec + per_cta - 1) / per_cta;
}

std::string why_not_persistent(const Problem& pr, const Policy& p, const Device& d) {
  std::string r = why_not_common(pr, p);
  if (!r.empty()) return r;
  if (p.threads != 512) return "persistent runs 512 threads per CTA";
  kern::PersistentPlan plan;
  if (!kern::persistent_plan(pr.shape, p, resident_ctas(pr, p, d), held_inputs(pr), &plan)) {
    std::ostringstream m;
    m << "persistent needs " << persistent_min_splits(pr, p) << " to " << resident_ctas(pr, p, d)
      << " CTAs per channel with t" << p.threads << " v" << p.vec << " (got s" << p.splits << ")";
    return m.str();
  }
  return "";
}

// Time model for choosing S: rounds * (per-thread vectors + a barrier's worth), i.e.
// fewer rounds first, then the fullest use of every CTA in the last one.
int64_t persistent_cost(const Problem& pr, const Policy& p, int resident) {
  const int64_t vectors = pr.shape.m() / p.vec;
  const int64_t g = std::min<int64_t>(pr.shape.c, resident / p.splits);
  const int64_t rounds = (pr.shape.c + g - 1) / g;
  const int64_t per_thread = (vectors + int64_t{p.splits} * p.threads - 1) / (int64_t{p.splits} * p.threads);
  return rounds * (per_thread + 4);
}

Policy heuristic_persistent(const Problem& pr, const Device& d) {
  Policy p;
  p.vec = best_vec(pr);
  p.threads = 512;
  const int resident = resident_ctas(pr, p, d);
  const int64_t lo = std::max<int64_t>(1, persistent_min_splits(pr, p));
  // Past one vector per thread, more CTAs only add merge work.
  const int64_t hi = std::min<int64_t>(resident, std::max<int64_t>(lo, pr.shape.m() / p.vec / p.threads));
  p.splits = static_cast<int>(lo);
  int64_t best = INT64_MAX;
  for (int64_t s = lo; s <= hi; ++s) {
    Policy q = p;
    q.splits = static_cast<int>(s);
    const int64_t cost = persistent_cost(pr, q, resident);
    if (cost < best) {
      best = cost;
      p.splits = q.splits;
    }
  }
  return p;
}

std::vector<Policy> space_persistent(const Problem& pr, const Device& d) {
  std::vector<Policy> out;
  for (int vec : {wide(pr), 1}) {
    if (vec > 1 && !wide_allowed(pr)) continue;
    for (int threads : {512}) {
      Policy p{threads, vec, 1};
      const int resident = resident_ctas(pr, p, d);
      const int64_t lo = std::max<int64_t>(1, persistent_min_splits(pr, p));
      if (lo > resident) continue;
      // The fewest CTAs per channel, powers of two above, and the count that fills the
      // device with as many channels per round as the fewest allows.
      std::vector<int64_t> splits = {lo};
      for (int64_t s = 2; s <= resident; s *= 2)
        if (s > lo) splits.push_back(s);
      splits.push_back(resident / std::min<int64_t>(pr.shape.c, resident / lo));
      if (threads == 512 && vec == heuristic_persistent(pr, d).vec)
        splits.push_back(heuristic_persistent(pr, d).splits);
      std::sort(splits.begin(), splits.end());
      splits.erase(std::unique(splits.begin(), splits.end()), splits.end());
      for (int64_t s : splits) out.push_back(Policy{threads, vec, static_cast<int>(s)});
    }
  }
  return out;
}

size_t ws_persistent(const Problem& pr, const Policy& p) { return kern::persistent_workspace_bytes(pr.shape, p); }

cudaError_t launch_fwd_persistent(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                                  const kern::Workspace& ws, cudaStream_t st) {
  return kern::forward_training_persistent(pr.shape, p, a.fwd, ws, st);
}
cudaError_t launch_bwd_persistent(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                                  const kern::Workspace& ws, cudaStream_t st) {
  return kern::backward_persistent(pr.shape, p, a.bwd, ws, st);
}

// ---- channels-last (NHWC and (N, C)) ---------------------------------------------

std::string why_not_rows(const Problem& pr, const Policy& p) {
  if (!is_rows(pr)) return "a channels-last kernel; the tensor is NCHW with h*w > 1";
  if (!kern::policy_compiled(p, pr.shape.dtype)) return "no kernel compiled for this threads/vec pair and dtype";
  if (p.vec > 1 && pr.shape.c % p.vec != 0) return "16-byte vectors need C divisible by the vector width";
  if (p.vec > 1 && !pr.aligned16) return "16-byte vectors need 16-byte aligned pointers";
  if (p.splits < 1 || p.splits > 65535) return "1 to 65535 CTAs per channel block";
  const int64_t per_block = int64_t{kern::nhwc_lanes(pr.shape, p)} * p.vec;
  if ((pr.shape.c + per_block - 1) / per_block > INT32_MAX) return "too many channel blocks";
  return "";
}

bool rows_wide_allowed(const Problem& pr) { return pr.aligned16 && pr.shape.c % wide(pr) == 0; }

// CTAs down the rows: two per SM over all channel blocks, but every thread with a few
// rows of its own.
Policy heuristic_rows(const Problem& pr, const Device& d) {
  Policy p;
  p.vec = rows_wide_allowed(pr) ? wide(pr) : 1;
  p.threads = 256;
  const int lanes = kern::nhwc_lanes(pr.shape, p);
  const int64_t blocks = (pr.shape.c + int64_t{lanes} * p.vec - 1) / (int64_t{lanes} * p.vec);
  const int64_t rows_per_cta = (p.threads / lanes) * 8;
  const int64_t by_work = std::max<int64_t>(1, pr.shape.m() / rows_per_cta);
  const int64_t by_wave = std::max<int64_t>(1, (2 * int64_t{d.sm_count} + blocks - 1) / blocks);
  p.splits = static_cast<int>(std::min<int64_t>({by_work, by_wave, kern::kMaxSplits}));
  return p;
}

std::vector<Policy> space_rows(const Problem& pr, const Device& d) {
  std::vector<Policy> out;
  const int h = heuristic_rows(pr, d).splits;
  for (int vec : {wide(pr), 1}) {
    if (vec > 1 && !rows_wide_allowed(pr)) continue;
    for (int threads : {128, 256, 512}) {
      std::vector<int> splits = {1, h};
      for (int s = 2; s <= kern::kMaxSplits && s < pr.shape.m(); s *= 4) splits.push_back(s);
      std::sort(splits.begin(), splits.end());
      splits.erase(std::unique(splits.begin(), splits.end()), splits.end());
      for (int s : splits) out.push_back(Policy{threads, vec, s});
    }
  }
  return out;
}

std::vector<Policy> space_rows_map(const Problem& pr, const Device& d) {
  std::vector<Policy> out;
  for (const Policy& p : space_rows(pr, d))
    if (p.splits == 1) out.push_back(p);
  return out;
}

std::string why_not_rows_map(const Problem& pr, const Policy& p, const Device& d) {
  std::string r = why_not_rows(pr, p);
  if (r.empty() && p.splits != 1) r = "nhwc_normalize has no CTAs-per-channel knob (s1)";
  (void)d;
  return r;
}

std::string why_not_rows_reduce(const Problem& pr, const Policy& p, const Device&) { return why_not_rows(pr, p); }

Policy heuristic_rows_map(const Problem& pr, const Device& d) {
  Policy p = heuristic_rows(pr, d);
  p.splits = 1;
  return p;
}

cudaError_t launch_fwd_rows(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                            const kern::Workspace& ws, cudaStream_t st) {
  return kern::nhwc_forward_training(pr.shape, p, d, a.fwd, ws, st);
}
cudaError_t launch_inf_rows(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                            const kern::Workspace&, cudaStream_t st) {
  return kern::nhwc_forward_inference(pr.shape, p, d, a.inf, st);
}
cudaError_t launch_bwd_rows(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                            const kern::Workspace& ws, cudaStream_t st) {
  return kern::nhwc_backward(pr.shape, p, d, a.bwd, ws, st);
}

// ---- elementwise (inference) -----------------------------------------------------

std::string why_not_normalize(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_common(pr, p);
  if (r.empty() && p.splits != 1) r = "normalize has no CTAs-per-channel knob (s1)";
  return r;
}
Policy heuristic_normalize(const Problem& pr, const Device&) {
  return Policy{256, best_vec(pr), 1};
}
std::vector<Policy> space_normalize(const Problem& pr, const Device&) {
  return space_reduce(pr, false);
}
cudaError_t launch_inference(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                             const kern::Workspace&, cudaStream_t st) {
  return kern::forward_inference(pr.shape, p, d, a.inf, st);
}

bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("BNORM_VERBOSE");
    return e && *e && *e != '0';
  }();
  return v;
}


const char* choice_name(bnorm_choice_t c) {
  switch (c) {
    case BNORM_CHOICE_OVERRIDE: return "override";
    case BNORM_CHOICE_CACHE: return "cache";
    case BNORM_CHOICE_NEAREST: return "nearest";
    case BNORM_CHOICE_HEURISTIC: return "heuristic";
    case BNORM_CHOICE_ONLY: return "only";
  }
  return "?";
}

// The op-level heuristic: split the reduction when one CTA per channel would leave
// most of the GPU idle and the channels are long enough to share.
Choice heuristic_choice(const Problem& pr, const Device& d) {
  if (pr.op > BNORM_OP_BACKWARD) return toolbox_heuristic_choice(pr, d);
  Choice c;
  c.why = BNORM_CHOICE_HEURISTIC;
  if (is_rows(pr)) {
    // Channels-last and (N, C): coalesced across the row's channels.
    c.variant = find_variant(pr.op, pr.op == BNORM_OP_FORWARD_INFERENCE ? "nhwc_normalize" : "nhwc_two_pass");
    c.policy = c.variant->heuristic(pr, d);
    return c;
  }
  const char* name = "normalize";
  if (pr.op != BNORM_OP_FORWARD_INFERENCE) {
    const bool few_channels = pr.shape.c < wave_ctas(d, 256) / 2;
    const bool long_channels = pr.shape.m() >= 4 * 256 * 16;
    name = few_channels && long_channels ? "two_pass_split" : "two_pass_block";
    // One pass over the data when a channel fits on chip and the pass pays: always for
    // backward with 16-byte loads (x and dy read once instead of twice), for forward only
    // on tensors small enough that launches dominate. Measured on the H100 (bench/results):
    // the round-and-barrier schedule streams at ~60% of copy bandwidth, below two-pass
    // forward's ~97% of bandwidth over 3S bytes, once forward passes ~4M values.
    const Variant* p = find_variant(pr.op, "persistent");
    const Policy pp = p->heuristic(pr, d);
    const bool pays = pp.vec > 1 && (pr.op == BNORM_OP_BACKWARD || pr.shape.numel() <= (int64_t{4} << 20));
    if (pays && p->why_not(pr, pp, d).empty()) {
      c.variant = p;
      c.policy = pp;
      return c;
    }
  }
  c.variant = find_variant(pr.op, name);
  c.policy = c.variant->heuristic(pr, d);
  return c;
}

}  // namespace

const char* op_name(bnorm_op_t op) {
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING: return "forward_training";
    case BNORM_OP_FORWARD_INFERENCE: return "forward_inference";
    case BNORM_OP_BACKWARD: return "backward";
    case BNORM_OP_BACKWARD_FROZEN: return "backward_frozen";
    case BNORM_OP_GROUP_NORM_FORWARD: return "group_norm_forward";
    case BNORM_OP_GROUP_NORM_BACKWARD: return "group_norm_backward";
    case BNORM_OP_LAYER_NORM_FORWARD: return "layer_norm_forward";
    case BNORM_OP_LAYER_NORM_BACKWARD: return "layer_norm_backward";
    case BNORM_OP_FOLD: return "fold";
    case BNORM_OP_SYNC_LOCAL_STATS: return "sync_local_stats";
    case BNORM_OP_SYNC_FORWARD: return "sync_forward";
    case BNORM_OP_SYNC_BACKWARD_SUMS: return "sync_backward_sums";
    case BNORM_OP_SYNC_BACKWARD: return "sync_backward";
  }
  return "?";
}

// Batch norm's own three operations.
static const std::vector<Variant>& batch_norm_variants() {
  static const std::vector<Variant> r = {
      {"two_pass_block", BNORM_OP_FORWARD_TRAINING, why_not_block, heuristic_block, space_block,
       ws_reduce, launch_fwd_two_pass},
      {"two_pass_split", BNORM_OP_FORWARD_TRAINING, why_not_split, heuristic_split, space_split,
       ws_reduce, launch_fwd_two_pass},
      {"nhwc_two_pass", BNORM_OP_FORWARD_TRAINING, why_not_rows_reduce, heuristic_rows, space_rows, ws_reduce,
       launch_fwd_rows},
      {"normalize", BNORM_OP_FORWARD_INFERENCE, why_not_normalize, heuristic_normalize,
       space_normalize, ws_none, launch_inference},
      {"nhwc_normalize", BNORM_OP_FORWARD_INFERENCE, why_not_rows_map, heuristic_rows_map, space_rows_map,
       ws_none, launch_inf_rows},
      {"persistent", BNORM_OP_FORWARD_TRAINING, why_not_persistent, heuristic_persistent,
       space_persistent, ws_persistent, launch_fwd_persistent},
      {"two_pass_block", BNORM_OP_BACKWARD, why_not_block, heuristic_block, space_block, ws_reduce,
       launch_bwd_two_pass},
      {"two_pass_split", BNORM_OP_BACKWARD, why_not_split, heuristic_split, space_split, ws_reduce,
       launch_bwd_two_pass},
      {"persistent", BNORM_OP_BACKWARD, why_not_persistent, heuristic_persistent, space_persistent,
       ws_persistent, launch_bwd_persistent},
      {"nhwc_two_pass", BNORM_OP_BACKWARD, why_not_rows_reduce, heuristic_rows, space_rows, ws_reduce,
       launch_bwd_rows},
  };
  return r;
}

const std::vector<Variant>& registry() {
  static const std::vector<Variant> all = [] {
    std::vector<Variant> v = batch_norm_variants();
    v.insert(v.end(), toolbox_variants().begin(), toolbox_variants().end());
    return v;
  }();
  return all;
}

FamilyRules family_rules(Family f) {
  switch (f) {
    case Family::kBlock: return {why_not_block, heuristic_block, space_block};
    case Family::kSplit: return {why_not_split, heuristic_split, space_split};
    case Family::kRows: return {why_not_rows_reduce, heuristic_rows, space_rows};
    case Family::kNormalize: return {why_not_normalize, heuristic_normalize, space_normalize};
    case Family::kRowsMap: return {why_not_rows_map, heuristic_rows_map, space_rows_map};
  }
  return {why_not_block, heuristic_block, space_block};
}

const Variant* find_variant(bnorm_op_t op, const std::string& name) {
  for (const Variant& v : registry())
    if (v.op == op && name == v.name) return &v;
  return nullptr;
}

std::string format_spec(const Variant& v, const Policy& p) {
  std::ostringstream s;
  s << v.name << ":t" << p.threads << ":v" << p.vec << ":s" << p.splits;
  return s.str();
}

namespace {

// Splits "name:t256:v4" into the name and its (key, value) parts.
bool split_spec(const std::string& spec, std::string* name, std::vector<std::pair<char, long>>* parts) {
  if (spec.empty() || spec.back() == ':') return false;
  std::istringstream in(spec);
  std::string tok;
  if (!std::getline(in, *name, ':') || name->empty()) return false;
  while (std::getline(in, tok, ':')) {
    if (tok.size() < 2 || (tok[0] != 't' && tok[0] != 'v' && tok[0] != 's')) return false;
    char* end = nullptr;
    const long val = std::strtol(tok.c_str() + 1, &end, 10);
    if (*end != '\0' || val <= 0 || val > 1 << 20) return false;
    parts->emplace_back(tok[0], val);
  }
  return true;
}

}  // namespace

bool spec_names_op(const std::string& spec, bnorm_op_t op) {
  std::string name;
  std::vector<std::pair<char, long>> parts;
  return split_spec(spec, &name, &parts) && find_variant(op, name) != nullptr;
}

Status parse_spec(const std::string& spec, bnorm_op_t op, const Problem* pr, const Device& d,
                  const Variant** v, Policy* p) {
  std::string name;
  std::vector<std::pair<char, long>> parts;
  if (!split_spec(spec, &name, &parts))
    return make_status(BNORM_STATUS_INVALID_VALUE,
                       "variant spec '%s' is malformed: expected name[:tN][:vN][:sN]", spec.c_str());
  *v = find_variant(op, name);
  if (!*v)
    return make_status(BNORM_STATUS_INVALID_VALUE, "no variant '%s' for %s", name.c_str(),
                       op_name(op));
  *p = pr ? (*v)->heuristic(*pr, d) : Policy{};
  for (const auto& [k, val] : parts) {
    if (k == 't') p->threads = static_cast<int>(val);
    if (k == 'v') p->vec = static_cast<int>(val);
    if (k == 's') p->splits = static_cast<int>(val);
  }
  return ok_status();
}

Status choose(const bnorm_handle& h, const Problem& pr, Choice* out) {
  const Device& d = h.dev;
  std::string forced = h.forced[pr.op];
  if (forced.empty()) {
    const char* env = std::getenv("BNORM_VARIANT");
    if (env && spec_names_op(env, pr.op)) forced = env;
  }
  if (!forced.empty()) {
    Choice c;
    c.why = BNORM_CHOICE_OVERRIDE;
    BNORM_TRY(parse_spec(forced, pr.op, &pr, d, &c.variant, &c.policy));
    const std::string why = c.variant->why_not(pr, c.policy, d);
    if (!why.empty())
      return make_status(BNORM_STATUS_NOT_SUPPORTED, "forced variant %s does not support this call: %s",
                         format_spec(*c.variant, c.policy).c_str(), why.c_str());
    *out = c;
  } else {
    Choice c;
    // The tuning cache's key has no group count: group norm is never looked up.
    const bool cacheable = pr.op != BNORM_OP_GROUP_NORM_FORWARD && pr.op != BNORM_OP_GROUP_NORM_BACKWARD;
    if (!cacheable || !tuning::lookup(h, pr, &c)) c = heuristic_choice(pr, d);
    const std::string why = c.variant->why_not(pr, c.policy, d);
    if (!why.empty()) {
      // The heuristic only names variants of this generation's layout and dtype.
      return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s: %s", op_name(pr.op), why.c_str());
    }
    *out = c;
  }
  if (verbose())
    std::fprintf(stderr, "bnorm: %s n=%lld c=%lld h=%lld w=%lld -> %s (%s)\n", op_name(pr.op),
                 static_cast<long long>(pr.desc.n), static_cast<long long>(pr.desc.c),
                 static_cast<long long>(pr.desc.h), static_cast<long long>(pr.desc.w),
                 format_spec(*out->variant, out->policy).c_str(), choice_name(out->why));
  return ok_status();
}

std::vector<Choice> supported_configs(const bnorm_handle& h, const Problem& pr) {
  std::vector<Choice> out;
  const Choice first = heuristic_choice(pr, h.dev);
  if (first.variant->why_not(pr, first.policy, h.dev).empty()) out.push_back(first);
  for (const Variant& v : registry()) {
    if (v.op != pr.op) continue;
    for (const Policy& p : v.space(pr, h.dev)) {
      if (!v.why_not(pr, p, h.dev).empty()) continue;
      if (!out.empty() && out[0].variant == &v && out[0].policy.threads == p.threads &&
          out[0].policy.vec == p.vec && out[0].policy.splits == p.splits)
        continue;
      out.push_back(Choice{&v, p, BNORM_CHOICE_HEURISTIC});
    }
  }
  return out;
}

}  // namespace bnorm
