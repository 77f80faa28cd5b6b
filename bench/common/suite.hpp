// The shape suite of DESIGN.md and what each op must move: the one list the benchmark,
// the tuner and bench/peers/pytorch_bn.py (which keeps a copy, checked by
// bnorm-bench --print_suite) iterate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"

namespace bnorm_bench {

struct Shape {
  int64_t n = 0, c = 0, h = 1, w = 1;
  std::string group;  // "resnet50", "resnet50-f16", ..., "lenet", "odd", or "user"
  bnorm_dtype_t dtype = BNORM_DTYPE_F32;      // of x, y, dy, dx (and z, dz); statistics are fp32
  bnorm_layout_t layout = BNORM_LAYOUT_NCHW;
  // Rows of the fused residual block instead of the plain ops: forward training is
  // y = relu(bn(x) + z) (bnorm_forward_training_fused), backward its gradient through
  // the ReLU with dz (bnorm_backward_fused); no inference row.
  bool fused = false;

  int64_t numel() const { return n * c * h * w; }
  int64_t per_channel() const { return n * h * w; }
  size_t elem_bytes() const { return dtype == BNORM_DTYPE_F32 ? 4 : 2; }
  size_t bytes() const { return static_cast<size_t>(numel()) * elem_bytes(); }  // S: stored bytes of x
  bnorm_tensor_t desc() const { return bnorm_tensor_t{n, c, h, w, layout, dtype}; }
  // "32x64x112x112", then "_f16" / "_bf16", "_nhwc", "_add_relu" for what is not the
  // default (F32, NCHW, plain): "32x64x56x56_f16_nhwc".
  std::string name() const;
  // Same dims, dtype, layout and kind.
  bool same(const Shape& o) const;
};

const char* dtype_name(bnorm_dtype_t t);     // f32, f16, bf16
const char* layout_name(bnorm_layout_t l);   // nchw, nhwc

// ResNet-50's BN layers at N = 32 and 256, the LeNet layers, the odd shapes (F32,
// NCHW); then the ResNet-50 layers in 16-bit, channels-last and fused (see suite.cpp).
const std::vector<Shape>& suite();
// The suite's groups, in the suite's order.
std::vector<std::string> suite_groups();

// "NxCxHxW" or "NxC" (h = w = 1), optionally followed by "_f16" or "_bf16", "_nhwc",
// "_add_relu" (in that order, as name() writes them); false if malformed.
bool parse_shape(const std::string& s, Shape* out);
// "suite" or a comma-separated list of shapes; a shape of the suite keeps its group.
// False if malformed.
bool parse_shapes(const std::string& s, std::vector<Shape>* out);
// "all" or a comma-separated list of suite groups; the suite's shapes of those groups,
// in the suite's order. False (and the unknown name in *bad) if a group is unknown.
bool parse_groups(const std::string& s, std::vector<std::string>* out, std::string* bad);
// The shapes of `shapes` whose group is one of `groups` (all when groups is empty).
std::vector<Shape> filter_groups(const std::vector<Shape>& shapes, const std::vector<std::string>& groups);

constexpr bnorm_op_t kOps[3] = {BNORM_OP_FORWARD_TRAINING, BNORM_OP_FORWARD_INFERENCE, BNORM_OP_BACKWARD};
// forward_training, forward_inference, backward, then the toolbox's (toolbox.hpp), as
// the tuning cache names them.
const char* op_name(bnorm_op_t op);
bool parse_op(const std::string& s, bnorm_op_t* op);
// A comma-separated list of op names, or "all".
bool parse_ops(const std::string& s, std::vector<bnorm_op_t>* out);

// Training needs two values per channel; inference runs any shape; a fused shape has
// forward training and backward rows only.
bool op_applies(bnorm_op_t op, const Shape& s);

// The bytes the op must move through device memory at the least, S the stored bytes of
// x: forward (training or inference) reads x and writes y, 2S; backward reads x and dy
// and writes dx, 3S. Fused: forward reads x and z and writes y, 3S; backward reads x,
// y and dy and writes dx and dz, 5S. Per-channel vectors are left out: C floats
// against N*C*H*W values.
double bytes_moved(bnorm_op_t op, const Shape& s);

// Shapes small enough that launches, not bytes, set the time: they are also timed as
// a CUDA graph of many calls.
bool launch_bound(const Shape& s);

// The suite as JSON (what --print_suite prints and pytorch_bn.py reads): one object
// per shape with n, c, h, w, group, dtype, layout, fused, name.
std::string suite_json(const std::vector<Shape>& shapes);

}  // namespace bnorm_bench
