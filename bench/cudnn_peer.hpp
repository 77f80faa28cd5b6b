// cuDNN's batch norm as a benchmark peer, loaded at run time with dlopen so that bnorm
// never needs cuDNN to build or run. Only the legacy batch-norm entry points are used
// (cudnnBatchNormalizationForwardTraining / ForwardInference / Backward), in the
// SPATIAL and SPATIAL_PERSISTENT modes, on the same buffers and stream as bnorm.
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

  // Enqueues op in mode on set k of b; "" on success, else cuDNN's error.
  std::string run(bnorm_op_t op, CudnnMode mode, const RotatingBuffers& b, int64_t k);

 private:
  bool set_shape(const Shape& s, CudnnMode mode, std::string* err);

  void* lib_ = nullptr;
  std::string path_, why_not_;
  size_t version_ = 0;
  void* handle_ = nullptr;
  void* x_desc_ = nullptr;
  void* bn_desc_ = nullptr;
  Shape desc_shape_{};
  bool desc_ready_ = false;
  int desc_mode_ = -1;
  struct Api;
  Api* api_ = nullptr;
};

}  // namespace bnorm_bench
