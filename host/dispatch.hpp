// The variant registry and the choice of a (variant, policy) for a call.
//
// The registry is the single list that the API, the tests, the benchmarks and the tuner
// iterate: a variant is tested and benchmarked by being registered here.
#pragma once

#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "handle.hpp"
#include "kernels/launch.hpp"
#include "kernels/launch_given_stats.hpp"
#include "kernels/launch_per_sample.hpp"
#include "status.hpp"

namespace bnorm {

// One call as dispatch sees it, after validation.
struct Problem {
  bnorm_op_t op = BNORM_OP_FORWARD_TRAINING;
  bnorm_tensor_t desc{};
  kern::Shape shape;       // NCHW view: n, c, hw
  bool aligned16 = false;  // every tensor pointer of the call is 16-byte aligned
  bool relu = false;       // fused ReLU (its backward holds y as a third input)
  bool add = false;        // fused add of z (forward)
  int64_t groups = 1;      // the group norms' group count
};

// Sets pr->shape to the view the op's kernels take of pr->desc (set_op_view): batch
// norm's own NCHW view for the batch-norm ops; for the per-sample norms the rows of their
// statistics (group norm forward: n*groups rows of (c/groups)*h*w; its backward: n*c
// rows of h*w; layer norm: n rows of c*h*w); for folding, {1, c_out, k}. Its c is the
// number of tickets a split reduction may take.
void set_op_view(Problem* pr);

// The per-sample norms' view of the problem (launch_per_sample.hpp).
kern::SampleShape sample_shape(const Problem& pr);

// The tensors and scalars of a call; the member for the call's op is used.
struct OpArgs {
  kern::ForwardTrainingArgs fwd{};
  kern::ForwardInferenceArgs inf{};
  kern::BackwardArgs bwd{};
  kern::FrozenBackwardArgs frozen{};
  kern::FoldArgs fold{};
  kern::SyncLocalStatsArgs sync_stats{};
  kern::SyncForwardArgs sync_fwd{};
  kern::SyncBackwardSumsArgs sync_sums{};
  kern::SyncBackwardArgs sync_bwd{};
  kern::SampleForwardArgs sample_fwd{};
  kern::SampleBackwardArgs sample_bwd{};
};

struct Variant {
  const char* name;
  bnorm_op_t op;
  // Why not, or "" when the variant runs this problem with this policy.
  std::string (*why_not)(const Problem&, const kern::Policy&, const kern::Device&);
  // The policy this variant would pick for the problem.
  kern::Policy (*heuristic)(const Problem&, const kern::Device&);
  // Every policy worth timing for the problem (the tuner's space), before why_not.
  std::vector<kern::Policy> (*space)(const Problem&, const kern::Device&);
  // Bytes of workspace scratch for (problem, policy); every call also gets C tickets.
  size_t (*workspace)(const Problem&, const kern::Policy&);
  cudaError_t (*launch)(const Problem&, const kern::Policy&, const kern::Device&, const OpArgs&,
                        const kern::Workspace&, cudaStream_t);
};

const std::vector<Variant>& registry();
// The variants of the operations after batch norm's own three (dispatch_toolbox.cpp),
// part of registry().
const std::vector<Variant>& toolbox_variants();

// Batch norm's rules per kernel family (dispatch.cpp), for the operations that run the
// same engines with other reducers and ops (frozen and synchronized batch norm).
enum class Family { kBlock, kSplit, kRows, kNormalize, kRowsMap };
struct FamilyRules {
  std::string (*why_not)(const Problem&, const kern::Policy&, const kern::Device&);
  kern::Policy (*heuristic)(const Problem&, const kern::Device&);
  std::vector<kern::Policy> (*space)(const Problem&, const kern::Device&);
};
FamilyRules family_rules(Family f);
// The op's name in specs, logs, the tuning cache and the tools ("forward_training", ...).
const char* op_name(bnorm_op_t op);
const Variant* find_variant(bnorm_op_t op, const std::string& name);

// "name:t256:v4:s8"
std::string format_spec(const Variant& v, const kern::Policy& p);
// Parses a spec against the registry; parts left out come from the heuristic.
Status parse_spec(const std::string& spec, bnorm_op_t op, const Problem* pr, const kern::Device& d,
                  const Variant** v, kern::Policy* p);
// Whether spec names a variant of op (its policy part well formed).
bool spec_names_op(const std::string& spec, bnorm_op_t op);

struct Choice {
  const Variant* variant = nullptr;
  kern::Policy policy;
  bnorm_choice_t why = BNORM_CHOICE_HEURISTIC;
};

// The op-level heuristic of the operations in toolbox_variants().
Choice toolbox_heuristic_choice(const Problem& pr, const kern::Device& d);

// Override, then tuning cache, then heuristic; fails only when an override does not
// support the call.
Status choose(const bnorm_handle& h, const Problem& pr, Choice* out);

// Every supporting configuration, the heuristic's choice first.
std::vector<Choice> supported_configs(const bnorm_handle& h, const Problem& pr);

}  // namespace bnorm
