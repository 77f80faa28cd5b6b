// See toolbox.hpp.
#include "toolbox.hpp"

#include <algorithm>
#include <random>
#include <sstream>

#include "cuda_util.hpp"
#include "variants.hpp"

namespace bnorm_bench {
namespace {

bool is_group_norm(bnorm_op_t op) {
  return op == BNORM_OP_GROUP_NORM_FORWARD || op == BNORM_OP_GROUP_NORM_BACKWARD;
}
bool is_layer_norm(bnorm_op_t op) {
  return op == BNORM_OP_LAYER_NORM_FORWARD || op == BNORM_OP_LAYER_NORM_BACKWARD;
}
bool is_sync(bnorm_op_t op) { return op >= BNORM_OP_SYNC_LOCAL_STATS && op <= BNORM_OP_SYNC_BACKWARD; }

Shape shape(int64_t n, int64_t c, int64_t h, int64_t w, bnorm_dtype_t t = BNORM_DTYPE_F32,
            bnorm_layout_t l = BNORM_LAYOUT_NCHW) {
  Shape s;
  s.n = n, s.c = c, s.h = h, s.w = w, s.dtype = t, s.layout = l;
  s.group = "toolbox";
  return s;
}

}  // namespace

std::string ToolboxCase::name() const {
  std::string s = shape.name();
  if (is_group_norm(op)) s += "_g" + std::to_string(groups);
  return s;
}

int64_t ToolboxCase::slot_floats() const {
  const Shape& s = shape;
  return std::max({3 * s.c, s.n * groups, s.c * s.h * s.w, s.n, int64_t{1}});
}

const std::vector<bnorm_op_t>& toolbox_ops() {
  static const std::vector<bnorm_op_t> ops = {
      BNORM_OP_BACKWARD_FROZEN,  BNORM_OP_GROUP_NORM_FORWARD, BNORM_OP_GROUP_NORM_BACKWARD,
      BNORM_OP_LAYER_NORM_FORWARD, BNORM_OP_LAYER_NORM_BACKWARD, BNORM_OP_FOLD,
      BNORM_OP_SYNC_LOCAL_STATS, BNORM_OP_SYNC_FORWARD,       BNORM_OP_SYNC_BACKWARD_SUMS,
      BNORM_OP_SYNC_BACKWARD};
  return ops;
}

bool is_toolbox_op(bnorm_op_t op) {
  for (bnorm_op_t o : toolbox_ops())
    if (o == op) return true;
  return false;
}

const std::vector<ToolboxCase>& toolbox_suite() {
  static const std::vector<ToolboxCase> cases = [] {
    std::vector<ToolboxCase> v;
    // ResNet-50's layers at N = 32 (frozen and synchronized batch norm replace batch norm
    // there; group norm is its usual replacement at small batches, 32 groups).
    const int64_t resnet[5][2] = {{64, 56}, {256, 56}, {512, 28}, {1024, 14}, {2048, 7}};
    for (const auto& ch : resnet) v.push_back({BNORM_OP_BACKWARD_FROZEN, shape(32, ch[0], ch[1], ch[1]), 1});
    v.push_back({BNORM_OP_BACKWARD_FROZEN, shape(32, 256, 56, 56, BNORM_DTYPE_F16, BNORM_LAYOUT_NHWC), 1});
    for (bnorm_op_t op : {BNORM_OP_GROUP_NORM_FORWARD, BNORM_OP_GROUP_NORM_BACKWARD}) {
      for (const auto& ch : resnet) v.push_back({op, shape(32, ch[0], ch[1], ch[1]), 32});
      v.push_back({op, shape(32, 256, 56, 56, BNORM_DTYPE_BF16), 32});
      v.push_back({op, shape(32, 64, 56, 56), 64});  // instance norm
    }
    // Transformers' (tokens, D) layer norms; one past the one-pass kernels' reach, and
    // one over C*H*W of a feature map.
    for (bnorm_op_t op : {BNORM_OP_LAYER_NORM_FORWARD, BNORM_OP_LAYER_NORM_BACKWARD}) {
      for (const auto& nd : {std::pair<int64_t, int64_t>{8192, 768}, {8192, 1024}, {4096, 4096}, {1024, 12288}})
        v.push_back({op, shape(nd.first, nd.second, 1, 1), 1});
      v.push_back({op, shape(8192, 1024, 1, 1, BNORM_DTYPE_BF16), 1});
      v.push_back({op, shape(32, 64, 56, 56), 1});
    }
    // Convolution and linear weights being folded (a one-off, timed for completeness).
    for (const Shape& w : {shape(512, 512, 3, 3), shape(2048, 512, 1, 1), shape(64, 3, 7, 7)})
      v.push_back({BNORM_OP_FOLD, w, 1});
    // Synchronized batch norm's four passes on one rank's slice (the communication is
    // the caller's and is not timed).
    for (bnorm_op_t op : {BNORM_OP_SYNC_LOCAL_STATS, BNORM_OP_SYNC_FORWARD, BNORM_OP_SYNC_BACKWARD_SUMS,
                          BNORM_OP_SYNC_BACKWARD}) {
      for (const auto& ch : {resnet[0], resnet[1], resnet[4]}) v.push_back({op, shape(32, ch[0], ch[1], ch[1]), 1});
      v.push_back({op, shape(32, 256, 56, 56, BNORM_DTYPE_F16, BNORM_LAYOUT_NHWC), 1});
    }
    return v;
  }();
  return cases;
}

std::string toolbox_json(const std::vector<ToolboxCase>& cases) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < cases.size(); ++i)
    o << (i ? "," : "") << "\n  {\"op\": \"" << op_name(cases[i].op) << "\", \"name\": \"" << cases[i].name()
      << "\", \"shape\": \"" << cases[i].shape.name() << "\", \"groups\": " << cases[i].groups << "}";
  o << "\n]\n";
  return o.str();
}

double toolbox_bytes_moved(const ToolboxCase& tc) {
  const double S = static_cast<double>(tc.shape.bytes());
  switch (tc.op) {
    case BNORM_OP_SYNC_LOCAL_STATS: return S;
    case BNORM_OP_GROUP_NORM_BACKWARD:
    case BNORM_OP_LAYER_NORM_BACKWARD:
    case BNORM_OP_BACKWARD_FROZEN:
    case BNORM_OP_SYNC_BACKWARD: return 3 * S;
    default: return 2 * S;
  }
}

bnorm_status_t run_toolbox(bnorm_handle_t h, const ToolboxCase& tc, const ToolboxArgs& a) {
  const bnorm_tensor_t d = tc.shape.desc();
  float* const* s = a.a;
  switch (tc.op) {
    case BNORM_OP_BACKWARD_FROZEN:
      return bnorm_backward_frozen(h, &d, a.x, a.dy, s[0], s[2], s[3], kEps, a.out, s[4], s[5]);
    case BNORM_OP_GROUP_NORM_FORWARD:
      return bnorm_group_norm_forward(h, &d, tc.groups, a.x, a.out, s[0], s[1], kEps, s[4], s[5]);
    case BNORM_OP_GROUP_NORM_BACKWARD:
      return bnorm_group_norm_backward(h, &d, tc.groups, a.x, a.dy, s[0], s[2], s[3], a.out, s[4], s[5]);
    case BNORM_OP_LAYER_NORM_FORWARD:
      return bnorm_layer_norm_forward(h, &d, a.x, a.out, s[0], s[1], kEps, s[4], s[5]);
    case BNORM_OP_LAYER_NORM_BACKWARD:
      return bnorm_layer_norm_backward(h, &d, a.x, a.dy, s[0], s[2], s[3], a.out, s[4], s[5]);
    case BNORM_OP_FOLD:
      return bnorm_fold_into_weights(h, &d, a.x, s[6], s[0], s[1], s[2], s[3], kEps, a.out, s[4]);
    case BNORM_OP_SYNC_LOCAL_STATS: return bnorm_sync_local_stats(h, &d, a.x, s[4]);
    case BNORM_OP_SYNC_FORWARD:
      return bnorm_sync_forward(h, &d, a.x, a.out, s[0], s[1], s[6], kMomentum, kEps, s[2], s[3], s[4], s[5]);
    case BNORM_OP_SYNC_BACKWARD_SUMS: return bnorm_sync_backward_sums(h, &d, a.x, a.dy, s[2], s[4]);
    case BNORM_OP_SYNC_BACKWARD:
      return bnorm_sync_backward(h, &d, a.x, a.dy, s[0], s[2], s[3], s[6], s[7], a.out, s[4], s[5]);
    default: return BNORM_STATUS_INVALID_VALUE;
  }
}

std::vector<float> fill_slot(const ToolboxCase& tc, int i, uint64_t seed) {
  std::mt19937_64 rng(seed * 8 + i);
  auto uniform = [&](double lo, double hi) {
    std::vector<float> v(tc.slot_floats());
    std::uniform_real_distribution<double> u(lo, hi);
    for (float& e : v) e = static_cast<float>(u(rng));
    return v;
  };
  switch (i) {
    case 0: return uniform(0.5, 1.5);   // gamma
    case 1: return uniform(-0.5, 0.5);  // beta
    case 2: return uniform(-0.5, 0.5);  // means
    case 3: return uniform(0.5, 2.0);   // variances, saved invstd
    case 6:
      if (is_sync(tc.op)) {  // global states: every channel's count, mean and M2
        std::vector<float> v = uniform(0.5, 2.0);
        const float count = static_cast<float>(tc.shape.per_channel() * 4);  // four such ranks
        for (int64_t c = 0; c < tc.shape.c; ++c) {
          v[3 * c + 1] = v[3 * c] - 1.25f;
          v[3 * c + 2] = v[3 * c + 2] * count;
          v[3 * c] = count;
        }
        return v;
      }
      return uniform(-0.5, 0.5);  // the bias being folded
    default: return uniform(-1.0, 1.0);  // outputs, global sums
  }
}

ToolboxOutputs toolbox_outputs(const ToolboxCase& tc) {
  const Shape& s = tc.shape;
  const int64_t rows = is_layer_norm(tc.op) ? s.n : s.n * tc.groups;
  const int64_t features = is_layer_norm(tc.op) ? s.c * s.h * s.w : s.c;
  switch (tc.op) {
    case BNORM_OP_BACKWARD_FROZEN: return {true, {{4, s.c}, {5, s.c}}};
    case BNORM_OP_GROUP_NORM_FORWARD:
    case BNORM_OP_LAYER_NORM_FORWARD: return {true, {{4, rows}, {5, rows}}};
    case BNORM_OP_GROUP_NORM_BACKWARD:
    case BNORM_OP_LAYER_NORM_BACKWARD: return {true, {{4, features}, {5, features}}};
    case BNORM_OP_FOLD: return {true, {{4, s.n}}};
    case BNORM_OP_SYNC_LOCAL_STATS: return {false, {{4, 3 * s.c}}};
    case BNORM_OP_SYNC_FORWARD: return {true, {{2, s.c}, {3, s.c}, {4, s.c}, {5, s.c}}};
    case BNORM_OP_SYNC_BACKWARD_SUMS: return {false, {{4, 2 * s.c}}};
    case BNORM_OP_SYNC_BACKWARD: return {true, {{4, s.c}, {5, s.c}}};
    default: return {false, {}};
  }
}

void ToolboxBuffers::release() {
  tensors_.release();
  slots_.release();
  ready_ = false;
}

void ToolboxBuffers::prepare(const ToolboxCase& tc, size_t l2_bytes, cudaStream_t stream) {
  if (ready_ && tc.op == case_.op && tc.groups == case_.groups && tc.shape.same(case_.shape)) return;
  release();
  case_ = tc;
  tensors_.prepare(tc.shape, l2_bytes, nullptr, stream);  // no statistics needed: slots hold them
  stride_ = (static_cast<size_t>(tc.slot_floats()) + 63) / 64 * 64;
  slots_.reset(8 * stride_ * sizeof(float));
  for (int i = 0; i < 8; ++i) {
    const std::vector<float> v = fill_slot(tc, i, 0x7001);
    BNB_CUDA(cudaMemcpyAsync(array(i), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
  }
  BNB_CUDA(cudaStreamSynchronize(stream));
  ready_ = true;
}

ToolboxArgs ToolboxBuffers::args(int64_t k) const {
  ToolboxArgs a{tensors_.x(k), tensors_.dy(k), tensors_.dx(k), {}};
  for (int i = 0; i < 8; ++i) a.a[i] = array(i);
  return a;
}

void split_toolbox_group(const std::string& groups, bool* toolbox, std::string* suite_part) {
  *toolbox = groups == "all";
  suite_part->clear();
  std::istringstream in(groups);
  for (std::string tok; std::getline(in, tok, ',');) {
    if (tok == "toolbox") *toolbox = true;
    else *suite_part += (suite_part->empty() ? "" : ",") + tok;
  }
}

void split_toolbox_ops(const std::vector<bnorm_op_t>& ops, std::vector<bnorm_op_t>* batch_norm,
                       std::vector<bnorm_op_t>* toolbox) {
  batch_norm->clear();
  toolbox->clear();
  for (bnorm_op_t op : ops) (is_toolbox_op(op) ? toolbox : batch_norm)->push_back(op);
}

std::vector<std::string> list_toolbox_specs(bnorm_handle_t h, const ToolboxCase& tc) {
  const bnorm_tensor_t d = tc.shape.desc();
  int count = 0;
  size_t needed = 0;
  BNB_BNORM(bnorm_list_variants_grouped(h, tc.op, &d, tc.groups, 1, nullptr, 0, &count, &needed));
  std::string buf(needed, '\0');
  BNB_BNORM(bnorm_list_variants_grouped(h, tc.op, &d, tc.groups, 1, buf.data(), buf.size(), &count, &needed));
  std::vector<std::string> out;
  std::istringstream in(buf.c_str());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

}  // namespace bnorm_bench
