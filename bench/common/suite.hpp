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
  std::string group;  // "resnet50", "lenet", "odd", or "user"

  int64_t numel() const { return n * c * h * w; }
  int64_t per_channel() const { return n * h * w; }
  size_t bytes() const { return static_cast<size_t>(numel()) * sizeof(float); }  // S
  bnorm_tensor_t desc() const { return bnorm_tensor_t{n, c, h, w, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32}; }
  std::string name() const;  // "32x64x112x112"
};

// ResNet-50's BN layers at N = 32 and 256, the LeNet layers, the odd shapes.
const std::vector<Shape>& suite();

// "NxCxHxW" or "NxC" (h = w = 1); false if malformed.
bool parse_shape(const std::string& s, Shape* out);
// "suite" or a comma-separated list of shapes; false if malformed.
bool parse_shapes(const std::string& s, std::vector<Shape>* out);

constexpr bnorm_op_t kOps[3] = {BNORM_OP_FORWARD_TRAINING, BNORM_OP_FORWARD_INFERENCE, BNORM_OP_BACKWARD};
const char* op_name(bnorm_op_t op);  // forward_training, forward_inference, backward
bool parse_op(const std::string& s, bnorm_op_t* op);
// A comma-separated list of op names, or "all".
bool parse_ops(const std::string& s, std::vector<bnorm_op_t>* out);

// Training needs two values per channel; inference runs any shape.
bool op_applies(bnorm_op_t op, const Shape& s);

// The bytes the op must move through device memory at the least: forward (training or
// inference) reads x and writes y, 2S; backward reads x and dy and writes dx, 3S.
// Per-channel vectors are left out: C floats against N*C*H*W.
double bytes_moved(bnorm_op_t op, const Shape& s);

// Shapes small enough that launches, not bytes, set the time: they are also timed as
// a CUDA graph of many calls.
bool launch_bound(const Shape& s);

}  // namespace bnorm_bench
