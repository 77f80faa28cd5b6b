// The toolbox's operations in the benchmark and the tuner: their cases (frozen and
// synchronized batch norm, folding, group/instance/layer norm on the shapes they serve),
// what each must move, and one call through the public API on either backend's memory.
//
// Every operation takes its tensors (x, dy, out = y or dx) and up to eight float arrays
// a[0..8), each of slot_floats() floats, with a fixed meaning per operation (run_toolbox
// lists them); fill_slot() says what each holds so that every call is valid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "buffers.hpp"
#include "suite.hpp"

namespace bnorm_bench {

struct ToolboxCase {
  bnorm_op_t op = BNORM_OP_BACKWARD_FROZEN;
  Shape shape;         // the tensor; for folding, the weights (c_out, c_in, kh, kw)
  int64_t groups = 1;  // group norm's (c for instance norm)
  // "NxCxHxW[_f16|_bf16][_nhwc]", then "_g<groups>" for group norm.
  std::string name() const;
  int64_t slot_floats() const;  // the length of each float array
};

// The operations of the toolbox, in enum order, and their cases.
const std::vector<bnorm_op_t>& toolbox_ops();
const std::vector<ToolboxCase>& toolbox_suite();
bool is_toolbox_op(bnorm_op_t op);
// The cases as JSON (--print_toolbox): op, name, shape, groups.
std::string toolbox_json(const std::vector<ToolboxCase>& cases);

// Bytes the operation must move at the least, S the stored bytes of its tensor: group
// and layer norm forward 2S, backward 3S; frozen backward 3S; the local statistics S,
// the backward's local sums 2S; synchronized forward 2S, backward 3S; folding 2S.
double toolbox_bytes_moved(const ToolboxCase& tc);

// The memory of one call: the tensors and the eight arrays.
struct ToolboxArgs {
  const void* x;
  const void* dy;
  void* out;
  float* a[8];
};

// One call of the case's operation. Arrays: 0 gamma, 1 beta, 2 means (running mean,
// saved mean), 3 variances or saved invstd (positive), 4 and 5 outputs (dgamma and
// dbeta, saved statistics, local states or sums, the folded bias), 6 the global states
// of synchronized batch norm or the bias being folded, 7 the global sums.
bnorm_status_t run_toolbox(bnorm_handle_t h, const ToolboxCase& tc, const ToolboxArgs& a);

// The initial values of array i for the case (host side, slot_floats() floats).
std::vector<float> fill_slot(const ToolboxCase& tc, int i, uint64_t seed);

// The outputs of a call: the tensor `out` (or none), and the arrays written, with the
// number of floats each call writes. Arrays that are read and written (synchronized
// batch norm's running statistics) are outputs too.
struct ToolboxOutputs {
  bool tensor;
  std::vector<std::pair<int, int64_t>> arrays;  // (index, floats)
};
ToolboxOutputs toolbox_outputs(const ToolboxCase& tc);

// Device memory for a case: rotating tensor sets (RotatingBuffers, for timing) and the
// eight arrays, filled by fill_slot.
class ToolboxBuffers {
 public:
  void prepare(const ToolboxCase& tc, size_t l2_bytes, cudaStream_t stream);
  ToolboxArgs args(int64_t k) const;
  const RotatingBuffers& tensors() const { return tensors_; }
  float* array(int i) const { return slots_.f() + i * stride_; }
  void release();

 private:
  ToolboxCase case_;
  bool ready_ = false;
  RotatingBuffers tensors_;
  DeviceBuffer slots_;
  size_t stride_ = 0;  // floats between arrays
};

// --groups as bnorm-bench and bnorm-tune read it: "toolbox" names the toolbox's cases,
// "all" names them and every suite group; the rest (comma-separated) are suite groups,
// returned in suite_part ("" when none).
void split_toolbox_group(const std::string& groups, bool* toolbox, std::string* suite_part);
// --ops: the toolbox's operations apart from batch norm's.
void split_toolbox_ops(const std::vector<bnorm_op_t>& ops, std::vector<bnorm_op_t>* batch_norm,
                       std::vector<bnorm_op_t>* toolbox);

// Every configuration of op on the case (bnorm_list_variants_grouped), the heuristic's
// first.
std::vector<std::string> list_toolbox_specs(bnorm_handle_t h, const ToolboxCase& tc);

}  // namespace bnorm_bench
