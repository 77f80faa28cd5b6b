// The variants of the operations beyond batch norm's own three: frozen and synchronized
// batch norm (batch norm's engines with other reducers, so batch norm's rules per
// family), folding, and the per-sample norms (their own rules: a row of a per-sample
// norm is one group of one sample). Each variant's why_not, heuristic, space, workspace
// and launcher, the op-level heuristic, and the views of set_op_view (dispatch.hpp).
#include <algorithm>
#include <sstream>

#include "dispatch.hpp"

namespace bnorm {
namespace {

using kern::Device;
using kern::Policy;

bool is_rows(const Problem& pr) { return pr.desc.layout == BNORM_LAYOUT_NHWC || pr.shape.hw == 1; }
int wide(const Problem& pr) { return kern::wide_vec(pr.shape.dtype); }
int64_t wave_ctas(const Device& d, int threads) {
  return static_cast<int64_t>(d.sm_count) * std::max(1, d.max_threads_per_sm / threads);
}

// ---- batch norm's engines with given statistics -----------------------------------

size_t ws_channels(const Problem& pr, const Policy& p) { return kern::two_pass_workspace_bytes(pr.shape, p); }

template <bool ROWS>
cudaError_t launch_frozen(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                          const kern::Workspace& ws, cudaStream_t st) {
  return kern::frozen_backward(pr.shape, ROWS, p, d, a.frozen, ws, st);
}
template <bool ROWS>
cudaError_t launch_sync_stats(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                              const kern::Workspace& ws, cudaStream_t st) {
  return kern::sync_local_stats(pr.shape, ROWS, p, a.sync_stats, ws, st);
}
template <bool ROWS>
cudaError_t launch_sync_forward(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                const kern::Workspace& ws, cudaStream_t st) {
  return kern::sync_forward(pr.shape, ROWS, p, d, a.sync_fwd, ws, st);
}
template <bool ROWS>
cudaError_t launch_sync_sums(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                             const kern::Workspace& ws, cudaStream_t st) {
  return kern::sync_backward_sums(pr.shape, ROWS, p, a.sync_sums, ws, st);
}
template <bool ROWS>
cudaError_t launch_sync_backward(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                 const kern::Workspace& ws, cudaStream_t st) {
  return kern::sync_backward(pr.shape, ROWS, p, d, a.sync_bwd, ws, st);
}

// ---- folding ------------------------------------------------------------------------

// The weights as c_out rows of k: any layout (an output channel's weights are contiguous
// in both), 16-byte vectors where k and the pointers allow.
std::string why_not_fold(const Problem& pr, const Policy& p, const Device&) {
  if (!kern::policy_compiled(p, pr.shape.dtype)) return "no kernel compiled for this threads/vec pair and dtype";
  if (p.splits != 1) return "fold_map has no CTAs-per-channel knob (s1)";
  if (p.vec > 1 && pr.shape.hw % p.vec != 0) return "16-byte vectors need k divisible by the vector width";
  if (p.vec > 1 && !pr.aligned16) return "16-byte vectors need 16-byte aligned pointers";
  if (pr.shape.c > INT32_MAX) return "more than 2^31-1 output channels";
  return "";
}
Policy heuristic_fold(const Problem& pr, const Device&) {
  const bool vec = pr.aligned16 && pr.shape.hw % wide(pr) == 0;
  return Policy{256, vec ? wide(pr) : 1, 1};
}
std::vector<Policy> space_fold(const Problem& pr, const Device& d) {
  std::vector<Policy> out;
  for (int vec : {wide(pr), 1})
    for (int threads : {128, 256, 512}) out.push_back(Policy{threads, vec, 1});
  (void)d;
  return out;
}
size_t ws_none(const Problem&, const Policy&) { return 0; }
cudaError_t launch_fold(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                        const kern::Workspace&, cudaStream_t st) {
  return kern::fold_into_weights(pr.shape, p, d, a.fold, st);
}

// ---- the per-sample norms ----------------------------------------------------------

bool is_layer_norm(const Problem& pr) {
  return pr.op == BNORM_OP_LAYER_NORM_FORWARD || pr.op == BNORM_OP_LAYER_NORM_BACKWARD;
}

// What every per-sample kernel requires: contiguous rows, vectors within a row and of
// one feature (or of consecutive features), 32-bit rows and places in a sample.
std::string why_not_sample_common(const Problem& pr, const Policy& p) {
  const kern::SampleShape s = sample_shape(pr);
  if (pr.desc.layout != BNORM_LAYOUT_NCHW && s.hw != 1)
    return is_layer_norm(pr) ? "the per-sample kernels read NCHW rows: a channels-last sample's values are "
                               "permuted against layer norm's (c, h, w) parameters"
                             : "the per-sample kernels read NCHW rows: a channels-last tensor's groups are strided";
  if (!kern::policy_compiled(p, pr.shape.dtype)) return "no kernel compiled for this threads/vec pair and dtype";
  if (p.vec > 1 && s.row_len() % p.vec != 0) return "16-byte vectors need the row length divisible by the vector width";
  if (p.vec > 1 && s.affine_stride % p.vec != 0 && s.affine_stride != 1)
    return "16-byte vectors need h*w divisible by the vector width (a vector within one channel)";
  if (p.vec > 1 && !pr.aligned16) return "16-byte vectors need 16-byte aligned pointers";
  if (s.sample_len() > INT32_MAX) return "more than 2^31-1 values per sample";
  if (s.n * s.c > INT32_MAX) return "more than 2^31-1 (sample, channel) pairs";
  return "";
}

// Group norm's backward also reduces (sample, channel) rows of h*w values: a vector must
// stay within one, whatever the affine stride.
bool group_rows_split(const Problem& pr, int vec) {
  return pr.op == BNORM_OP_GROUP_NORM_BACKWARD && sample_shape(pr).hw % vec != 0;
}

bool sample_wide_allowed(const Problem& pr) {
  const kern::SampleShape s = sample_shape(pr);
  return pr.aligned16 && s.row_len() % wide(pr) == 0 &&
         (s.affine_stride == 1 || s.affine_stride % wide(pr) == 0) && !group_rows_split(pr, wide(pr));
}
int sample_best_vec(const Problem& pr) { return sample_wide_allowed(pr) ? wide(pr) : 1; }
std::vector<int> sample_vecs(const Problem& pr) {
  return sample_wide_allowed(pr) ? std::vector<int>{wide(pr), 1} : std::vector<int>{1};
}

// S CTAs per row of `row_len` values over `rows` rows: a wave of CTAs in all, but every
// thread with a couple of vectors.
int splits_for(int64_t rows, int64_t row_len, const Policy& p, const Device& d) {
  const int64_t by_work = std::max<int64_t>(1, row_len / p.vec / (int64_t{p.threads} * 2));
  const int64_t by_wave = (2 * int64_t{d.sm_count} + rows - 1) / rows;
  return static_cast<int>(std::clamp<int64_t>(std::min(by_work, by_wave), 1, kern::kMaxSplits));
}
std::vector<Policy> split_space(const Problem& pr, int64_t row_len, int heuristic_splits) {
  std::vector<Policy> out;
  for (int vec : sample_vecs(pr))
    for (int threads : {128, 256, 512}) {
      std::vector<int> splits = {heuristic_splits};
      for (int s = 1; s <= kern::kMaxSplits; s *= 2) {
        if (s > 1 && static_cast<int64_t>(s - 1) * threads >= row_len / vec) break;  // idle CTAs
        splits.push_back(s);
      }
      std::sort(splits.begin(), splits.end());
      splits.erase(std::unique(splits.begin(), splits.end()), splits.end());
      for (int s : splits) out.push_back(Policy{threads, vec, s});
    }
  return out;
}

// Forward, two passes.
std::string why_not_sample_two_pass(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_sample_common(pr, p);
  if (r.empty() && (p.splits < 1 || p.splits > kern::kMaxSplits)) r = "sample_two_pass needs 1 to 128 CTAs per row";
  return r;
}
Policy heuristic_sample_two_pass(const Problem& pr, const Device& d) {
  Policy p{256, sample_best_vec(pr), 1};
  const kern::SampleShape s = sample_shape(pr);
  p.splits = splits_for(s.rows(), s.row_len(), p, d);
  return p;
}
std::vector<Policy> space_sample_two_pass(const Problem& pr, const Device& d) {
  return split_space(pr, sample_shape(pr).row_len(), heuristic_sample_two_pass(pr, d).splits);
}
size_t ws_sample_two_pass(const Problem& pr, const Policy& p) {
  return kern::sample_forward_two_pass_workspace_bytes(sample_shape(pr), p);
}
cudaError_t launch_sample_two_pass(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                   const kern::Workspace& ws, cudaStream_t st) {
  return kern::sample_forward_two_pass(sample_shape(pr), p, d, a.sample_fwd, ws, st);
}

// The fused kernels: one CTA per row, the row in registers. `inputs` tensors held.
std::string why_not_fused(const Problem& pr, const Policy& p, int inputs, const char* name) {
  std::string r = why_not_sample_common(pr, p);
  if (!r.empty()) return r;
  if (p.splits != 1) return std::string(name) + " runs one CTA per row (s1)";
  const int64_t cap = kern::sample_fused_capacity(p, inputs);
  if (sample_shape(pr).row_len() > cap) {
    std::ostringstream m;
    m << name << " holds " << cap << " values of a row with t" << p.threads << " v" << p.vec << "; the row has "
      << sample_shape(pr).row_len();
    return m.str();
  }
  return "";
}
// The fewest threads that hold the row: more rows per SM at once.
Policy fused_heuristic(const Problem& pr, int inputs) {
  Policy p{512, sample_best_vec(pr), 1};
  for (int threads : {128, 256, 512}) {
    p.threads = threads;
    if (sample_shape(pr).row_len() <= kern::sample_fused_capacity(p, inputs)) break;
  }
  return p;
}
std::vector<Policy> fused_space(const Problem& pr) {
  std::vector<Policy> out;
  for (int vec : sample_vecs(pr))
    for (int threads : {128, 256, 512}) out.push_back(Policy{threads, vec, 1});
  return out;
}

std::string why_not_sample_fused(const Problem& pr, const Policy& p, const Device&) {
  return why_not_fused(pr, p, 1, "sample_fused");
}
Policy heuristic_sample_fused(const Problem& pr, const Device&) { return fused_heuristic(pr, 1); }
std::vector<Policy> space_sample_fused(const Problem& pr, const Device&) { return fused_space(pr); }
cudaError_t launch_sample_fused(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                                const kern::Workspace&, cudaStream_t st) {
  return kern::sample_forward_fused(sample_shape(pr), p, a.sample_fwd, st);
}

// Group norm backward: the (sample, channel) rows of h*w values.
std::string why_not_group_two_pass(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_sample_common(pr, p);
  if (r.empty() && p.vec > 1 && group_rows_split(pr, p.vec))
    r = "16-byte vectors need h*w divisible by the vector width (the sums run per sample and channel)";
  if (r.empty() && (p.splits < 1 || p.splits > kern::kMaxSplits)) r = "group_two_pass needs 1 to 128 CTAs per row";
  return r;
}
Policy heuristic_group_two_pass(const Problem& pr, const Device& d) {
  Policy p{256, sample_best_vec(pr), 1};
  const kern::SampleShape s = sample_shape(pr);
  p.splits = splits_for(s.n * s.c, s.hw, p, d);
  return p;
}
std::vector<Policy> space_group_two_pass(const Problem& pr, const Device& d) {
  return split_space(pr, sample_shape(pr).hw, heuristic_group_two_pass(pr, d).splits);
}
size_t ws_group_two_pass(const Problem& pr, const Policy& p) {
  return kern::group_norm_backward_workspace_bytes(sample_shape(pr), p);
}
cudaError_t launch_group_two_pass(const Problem& pr, const Policy& p, const Device& d, const OpArgs& a,
                                  const kern::Workspace& ws, cudaStream_t st) {
  return kern::group_norm_backward(sample_shape(pr), p, d, a.sample_bwd, ws, st);
}

// Layer norm backward.
std::string why_not_ln_fused(const Problem& pr, const Policy& p, const Device&) {
  return why_not_fused(pr, p, 2, "ln_fused");
}
Policy heuristic_ln_fused(const Problem& pr, const Device&) { return fused_heuristic(pr, 2); }
std::vector<Policy> space_ln_fused(const Problem& pr, const Device&) { return fused_space(pr); }
size_t ws_ln_fused(const Problem& pr, const Policy& p) {
  return kern::layer_norm_backward_workspace_bytes(sample_shape(pr), p, true);
}
cudaError_t launch_ln_fused(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                            const kern::Workspace& ws, cudaStream_t st) {
  return kern::layer_norm_backward_fused(sample_shape(pr), p, a.sample_bwd, ws, st);
}

std::string why_not_ln_two_pass(const Problem& pr, const Policy& p, const Device&) {
  std::string r = why_not_sample_common(pr, p);
  if (r.empty() && (p.splits < 1 || p.splits > kern::kMaxSplits))
    r = "ln_two_pass needs 1 to 128 CTAs down the rows";
  return r;
}
// CTAs down the rows: two per SM over the column blocks, every thread with a few rows.
Policy heuristic_ln_two_pass(const Problem& pr, const Device& d) {
  Policy p{256, sample_best_vec(pr), 1};
  const kern::SampleShape s = sample_shape(pr);
  const kern::Shape cols{s.rows(), s.row_len(), 1, pr.shape.dtype};
  const int lanes = kern::nhwc_lanes(cols, p);
  const int64_t blocks = (s.row_len() + int64_t{lanes} * p.vec - 1) / (int64_t{lanes} * p.vec);
  const int64_t by_work = std::max<int64_t>(1, s.rows() / ((p.threads / lanes) * 8));
  const int64_t by_wave = std::max<int64_t>(1, (2 * int64_t{d.sm_count} + blocks - 1) / blocks);
  p.splits = static_cast<int>(std::min<int64_t>({by_work, by_wave, kern::kMaxSplits}));
  return p;
}
std::vector<Policy> space_ln_two_pass(const Problem& pr, const Device& d) {
  std::vector<Policy> out;
  const int h = heuristic_ln_two_pass(pr, d).splits;
  for (int vec : sample_vecs(pr))
    for (int threads : {128, 256, 512}) {
      std::vector<int> splits = {1, h};
      for (int s = 4; s <= kern::kMaxSplits && s < sample_shape(pr).rows(); s *= 4) splits.push_back(s);
      std::sort(splits.begin(), splits.end());
      splits.erase(std::unique(splits.begin(), splits.end()), splits.end());
      for (int s : splits) out.push_back(Policy{threads, vec, s});
    }
  return out;
}
size_t ws_ln_two_pass(const Problem& pr, const Policy& p) {
  return kern::layer_norm_backward_workspace_bytes(sample_shape(pr), p, false);
}
cudaError_t launch_ln_two_pass(const Problem& pr, const Policy& p, const Device&, const OpArgs& a,
                               const kern::Workspace& ws, cudaStream_t st) {
  return kern::layer_norm_backward_two_pass(sample_shape(pr), p, a.sample_bwd, ws, st);
}

}  // namespace

const std::vector<Variant>& toolbox_variants() {
  // Built on first use, after batch norm's rules exist.
  static const std::vector<Variant> v = [] {
    const FamilyRules kBlock = family_rules(Family::kBlock), kSplit = family_rules(Family::kSplit),
                      kRows = family_rules(Family::kRows), kNormalize = family_rules(Family::kNormalize),
                      kRowsMap = family_rules(Family::kRowsMap);
    return std::vector<Variant>{
      // frozen batch norm: backward's engines with the running statistics
      {"two_pass_block", BNORM_OP_BACKWARD_FROZEN, kBlock.why_not, kBlock.heuristic, kBlock.space, ws_channels,
       launch_frozen<false>},
      {"two_pass_split", BNORM_OP_BACKWARD_FROZEN, kSplit.why_not, kSplit.heuristic, kSplit.space, ws_channels,
       launch_frozen<false>},
      {"nhwc_two_pass", BNORM_OP_BACKWARD_FROZEN, kRows.why_not, kRows.heuristic, kRows.space, ws_channels,
       launch_frozen<true>},
      // the per-sample norms
      {"sample_two_pass", BNORM_OP_GROUP_NORM_FORWARD, why_not_sample_two_pass, heuristic_sample_two_pass,
       space_sample_two_pass, ws_sample_two_pass, launch_sample_two_pass},
      {"sample_fused", BNORM_OP_GROUP_NORM_FORWARD, why_not_sample_fused, heuristic_sample_fused,
       space_sample_fused, ws_none, launch_sample_fused},
      {"group_two_pass", BNORM_OP_GROUP_NORM_BACKWARD, why_not_group_two_pass, heuristic_group_two_pass,
       space_group_two_pass, ws_group_two_pass, launch_group_two_pass},
      {"sample_two_pass", BNORM_OP_LAYER_NORM_FORWARD, why_not_sample_two_pass, heuristic_sample_two_pass,
       space_sample_two_pass, ws_sample_two_pass, launch_sample_two_pass},
      {"sample_fused", BNORM_OP_LAYER_NORM_FORWARD, why_not_sample_fused, heuristic_sample_fused,
       space_sample_fused, ws_none, launch_sample_fused},
      {"ln_fused", BNORM_OP_LAYER_NORM_BACKWARD, why_not_ln_fused, heuristic_ln_fused, space_ln_fused, ws_ln_fused,
       launch_ln_fused},
      {"ln_two_pass", BNORM_OP_LAYER_NORM_BACKWARD, why_not_ln_two_pass, heuristic_ln_two_pass, space_ln_two_pass,
       ws_ln_two_pass, launch_ln_two_pass},
      // folding
      {"fold_map", BNORM_OP_FOLD, why_not_fold, heuristic_fold, space_fold, ws_none, launch_fold},
      // synchronized batch norm: the local reductions, then the passes with global statistics
      {"reduce_block", BNORM_OP_SYNC_LOCAL_STATS, kBlock.why_not, kBlock.heuristic, kBlock.space, ws_channels,
       launch_sync_stats<false>},
      {"reduce_split", BNORM_OP_SYNC_LOCAL_STATS, kSplit.why_not, kSplit.heuristic, kSplit.space, ws_channels,
       launch_sync_stats<false>},
      {"nhwc_reduce", BNORM_OP_SYNC_LOCAL_STATS, kRows.why_not, kRows.heuristic, kRows.space, ws_channels,
       launch_sync_stats<true>},
      {"normalize", BNORM_OP_SYNC_FORWARD, kNormalize.why_not, kNormalize.heuristic, kNormalize.space, ws_channels,
       launch_sync_forward<false>},
      {"nhwc_normalize", BNORM_OP_SYNC_FORWARD, kRowsMap.why_not, kRowsMap.heuristic, kRowsMap.space, ws_channels,
       launch_sync_forward<true>},
      {"reduce_block", BNORM_OP_SYNC_BACKWARD_SUMS, kBlock.why_not, kBlock.heuristic, kBlock.space, ws_channels,
       launch_sync_sums<false>},
      {"reduce_split", BNORM_OP_SYNC_BACKWARD_SUMS, kSplit.why_not, kSplit.heuristic, kSplit.space, ws_channels,
       launch_sync_sums<false>},
      {"nhwc_reduce", BNORM_OP_SYNC_BACKWARD_SUMS, kRows.why_not, kRows.heuristic, kRows.space, ws_channels,
       launch_sync_sums<true>},
      {"normalize", BNORM_OP_SYNC_BACKWARD, kNormalize.why_not, kNormalize.heuristic, kNormalize.space, ws_channels,
       launch_sync_backward<false>},
      {"nhwc_normalize", BNORM_OP_SYNC_BACKWARD, kRowsMap.why_not, kRowsMap.heuristic, kRowsMap.space, ws_channels,
       launch_sync_backward<true>},
    };
  }();
  return v;
}

Choice toolbox_heuristic_choice(const Problem& pr, const Device& d) {
  const char* name = "?";
  switch (pr.op) {
    case BNORM_OP_BACKWARD_FROZEN:
    case BNORM_OP_SYNC_LOCAL_STATS:
    case BNORM_OP_SYNC_BACKWARD_SUMS: {
      // As batch norm's two-pass choice: split the reduction when one CTA per channel
      // would leave most of the GPU idle and the channels are long enough to share.
      const bool frozen = pr.op == BNORM_OP_BACKWARD_FROZEN;
      const bool few_channels = pr.shape.c < wave_ctas(d, 256) / 2;
      const bool long_channels = pr.shape.m() >= 4 * 256 * 16;
      if (is_rows(pr))
        name = frozen ? "nhwc_two_pass" : "nhwc_reduce";
      else if (few_channels && long_channels)
        name = frozen ? "two_pass_split" : "reduce_split";
      else
        name = frozen ? "two_pass_block" : "reduce_block";
      break;
    }
    case BNORM_OP_SYNC_FORWARD:
    case BNORM_OP_SYNC_BACKWARD: name = is_rows(pr) ? "nhwc_normalize" : "normalize"; break;
    case BNORM_OP_FOLD: name = "fold_map"; break;
    case BNORM_OP_GROUP_NORM_FORWARD:
    case BNORM_OP_LAYER_NORM_FORWARD:
      // One pass whenever the row fits on chip: fewer bytes and one launch.
      name = why_not_sample_fused(pr, heuristic_sample_fused(pr, d), d).empty() ? "sample_fused" : "sample_two_pass";
      break;
    case BNORM_OP_GROUP_NORM_BACKWARD: name = "group_two_pass"; break;
    case BNORM_OP_LAYER_NORM_BACKWARD:
      name = why_not_ln_fused(pr, heuristic_ln_fused(pr, d), d).empty() ? "ln_fused" : "ln_two_pass";
      break;
    default: break;
  }
  Choice c;
  c.why = BNORM_CHOICE_HEURISTIC;
  c.variant = find_variant(pr.op, name);
  c.policy = c.variant->heuristic(pr, d);
  return c;
}

kern::SampleShape sample_shape(const Problem& pr) {
  kern::SampleShape s;
  s.n = pr.desc.n;
  s.c = pr.desc.c;
  s.hw = pr.desc.h * pr.desc.w;
  const bool layer = pr.op == BNORM_OP_LAYER_NORM_FORWARD || pr.op == BNORM_OP_LAYER_NORM_BACKWARD;
  s.groups = layer ? 1 : pr.groups;
  s.affine_stride = layer ? 1 : s.hw;
  s.dtype = pr.shape.dtype;
  return s;
}

void set_op_view(Problem* pr) {
  const bnorm_tensor_t& d = pr->desc;
  const int64_t hw = d.h * d.w;
  switch (pr->op) {
    case BNORM_OP_GROUP_NORM_FORWARD:
      pr->shape = kern::Shape{1, d.n * pr->groups, d.c / pr->groups * hw, pr->shape.dtype};
      break;
    case BNORM_OP_GROUP_NORM_BACKWARD: pr->shape = kern::Shape{1, d.n * d.c, hw, pr->shape.dtype}; break;
    case BNORM_OP_LAYER_NORM_FORWARD:
    case BNORM_OP_LAYER_NORM_BACKWARD:
    case BNORM_OP_FOLD: pr->shape = kern::Shape{1, d.n, d.c * hw, pr->shape.dtype}; break;
    default: pr->shape = kern::Shape{d.n, d.c, hw, pr->shape.dtype}; break;
  }
}

}  // namespace bnorm
