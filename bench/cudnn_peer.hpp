// cuDNN's batch norm as a benchmark peer, loaded at run time with dlopen so that bnorm
// never needs cuDNN to build or run. Only the legacy batch-norm entry points are used
// (cudnnBatchNormalizationForwardTraining / ForwardInference / Backward; for fused
// shapes cudnnBatchNormalizationForwardTrainingEx / BackwardEx with
// CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION and a ReLU descriptor), in the SPATIAL and
// SPATIAL_PERSISTENT modes, on the same buffers and stream as bnorm. Tensors take the
// shape's dtype (HALF, BFLOAT16, FLOAT) and layout (CUDNN_TENSOR_NHWC or _NCHW); the
// per-channel vectors stay float, as cuDNN derives them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "common/buffers.hpp"

namespace bnorm_bench {

enum class CudnnMode { kSpatial, kSpatialPersistent };
const char* cudnn_mode_name(CudnnMode m);  // "spatial", "spatial_persistent"

class Cudnn {
 public:
  // Where libcudnn.so.9 is looked for, in order: BNORM_CUDNN_PATH (the library file or
  // its directory), explicit_path if given, the dynamic loader's search path, then the
  // usual Python environments (PyTorch's nvidia-cudnn wheel) and the CUDA toolkit.
  explicit Cudnn(const std::string& explicit_path = "");
  ~Cudnn();
  Cudnn(const Cudnn&) = delete;
  Cudnn& operator=(const Cudnn&) = delete;

  bool loaded() const { return lib_ != nullptr; }
  // Loaded, and a cuDNN handle exists on the current device.
  bool ready() const { return handle_ != nullptr; }
  const std::string& why_not() const { return why_not_; }
  const std::string& path() const { return path_; }
  size_t version() const { return version_; }  // e.g. 91900

  // Creates the cuDNN handle; needs a device. False (and why_not()) on failure.
  bool init(cudaStream_t stream);

  // Enqueues op in mode on set k of b; "" on success, else cuDNN's error (a call it
  // does not support included). The first fused backward of a shape and mode first runs
  // cuDNN's fused forward once on set 0: its reserve space (the ReLU mask) is the
  // backward's input.
  std::string run(bnorm_op_t op, CudnnMode mode, const RotatingBuffers& b, int64_t k);

  // Whether this cuDNN has the Ex entry points the fused rows need.
  bool has_fused() const;

 private:
  bool set_shape(const Shape& s, CudnnMode mode, std::string* err);
  std::string run_fused(bnorm_op_t op, int mode, const RotatingBuffers& b, int64_t k);

  void* lib_ = nullptr;
  std::string path_, why_not_;
  size_t version_ = 0;
  void* handle_ = nullptr;
  void* x_desc_ = nullptr;
  void* bn_desc_ = nullptr;
  void* act_desc_ = nullptr;  // ReLU, for the fused rows
  Shape desc_shape_{};
  bool desc_ready_ = false;
  int desc_mode_ = -1;
  // The fused calls' workspace and reserve space, sized per shape and mode.
  DeviceBuffer workspace_, reserve_;
  size_t fwd_ws_ = 0, bwd_ws_ = 0, reserve_bytes_ = 0;
  bool fused_sized_ = false;
  bool reserve_written_ = false;
  struct Api;
  Api* api_ = nullptr;
};

}  // namespace bnorm_bench
