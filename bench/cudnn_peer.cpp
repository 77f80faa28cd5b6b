// See cudnn_peer.hpp. The few cuDNN types and entry points used are declared here, so
// no cuDNN header is needed to build; where cudnn.h exists its values are checked.
#include "cudnn_peer.hpp"

#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <sys/stat.h>
#include <vector>

#if defined(__has_include)
#if __has_include(<cudnn.h>)
#include <cudnn.h>
#define BNB_HAVE_CUDNN_H 1
#endif
#endif

namespace bnorm_bench {
namespace {

// cuDNN's C ABI, as far as used (cudnn_graph.h, cudnn_ops.h of cuDNN 9).
using cudnn_status = int;
using cudnn_handle = void*;
using cudnn_desc = void*;
constexpr int kSuccess = 0;
constexpr int kDataFloat = 0;     // CUDNN_DATA_FLOAT
constexpr int kTensorNchw = 0;    // CUDNN_TENSOR_NCHW
constexpr int kBnSpatial = 1;     // CUDNN_BATCHNORM_SPATIAL
constexpr int kBnPersistent = 2;  // CUDNN_BATCHNORM_SPATIAL_PERSISTENT
#if defined(BNB_HAVE_CUDNN_H)
static_assert(CUDNN_STATUS_SUCCESS == kSuccess, "cuDNN ABI");
static_assert(CUDNN_DATA_FLOAT == kDataFloat, "cuDNN ABI");
static_assert(CUDNN_TENSOR_NCHW == kTensorNchw, "cuDNN ABI");
static_assert(CUDNN_BATCHNORM_SPATIAL == kBnSpatial, "cuDNN ABI");
static_assert(CUDNN_BATCHNORM_SPATIAL_PERSISTENT == kBnPersistent, "cuDNN ABI");
#endif

int mode_value(CudnnMode m) { return m == CudnnMode::kSpatial ? kBnSpatial : kBnPersistent; }

bool is_file(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> globbed(const char* pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern, 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  globfree(&g);
  return out;
}

}  // namespace

struct Cudnn::Api {
  cudnn_status (*create)(cudnn_handle*);
  cudnn_status (*destroy)(cudnn_handle);
  cudnn_status (*set_stream)(cudnn_handle, cudaStream_t);
  size_t (*get_version)();
  const char* (*error_string)(cudnn_status);
  cudnn_status (*create_desc)(cudnn_desc*);
  cudnn_status (*destroy_desc)(cudnn_desc);
  cudnn_status (*set_4d)(cudnn_desc, int format, int dtype, int n, int c, int h, int w);
  cudnn_status (*derive_bn)(cudnn_desc derived, cudnn_desc x, int mode);
  cudnn_status (*fwd_training)(cudnn_handle, int mode, const void* alpha, const void* beta,
                               cudnn_desc x_desc, const void* x, cudnn_desc y_desc, void* y,
                               cudnn_desc bn_desc, const void* scale, const void* bias,
                               double factor, void* running_mean, void* running_var, double eps,
                               void* save_mean, void* save_inv_var);
  cudnn_status (*fwd_inference)(cudnn_handle, int mode, const void* alpha, const void* beta,
                                cudnn_desc x_desc, const void* x, cudnn_desc y_desc, void* y,
                                cudnn_desc bn_desc, const void* scale, const void* bias,
                                const void* mean, const void* var, double eps);
  cudnn_status (*backward)(cudnn_handle, int mode, const void* alpha_data, const void* beta_data,
                           const void* alpha_param, const void* beta_param, cudnn_desc x_desc,
                           const void* x, cudnn_desc dy_desc, const void* dy, cudnn_desc dx_desc,
                           void* dx, cudnn_desc bn_desc, const void* scale, void* dscale,
                           void* dbias, double eps, const void* save_mean, const void* save_inv_var);
};

const char* cudnn_mode_name(CudnnMode m) {
  return m == CudnnMode::kSpatial ? "spatial" : "spatial_persistent";
}

Cudnn::Cudnn(const std::string& explicit_path) {
  std::vector<std::string> tries;
  if (const char* env = std::getenv("BNORM_CUDNN_PATH"); env && *env) {
    const std::string p = env;
    tries.push_back(is_file(p) ? p : p + "/libcudnn.so.9");
  }
  if (!explicit_path.empty()) tries.push_back(explicit_path);
  tries.push_back("libcudnn.so.9");  // LD_LIBRARY_PATH, the ld.so cache
  for (const char* pattern :
       {"/opt/torch/.venv/lib/python3*/site-packages/nvidia/cudnn/lib/libcudnn.so.9",
        "/opt/torch/.venv/lib/python3*/site-packages/nvidia/cu*/lib/libcudnn.so.9",
        "/opt/*/.venv/lib/python3*/site-packages/nvidia/cudnn/lib/libcudnn.so.9",
        "/usr/local/lib/python3*/dist-packages/nvidia/cudnn/lib/libcudnn.so.9",
        "/usr/lib/python3/dist-packages/nvidia/cudnn/lib/libcudnn.so.9",
        "/usr/local/cuda/lib64/libcudnn.so.9", "/usr/lib/x86_64-linux-gnu/libcudnn.so.9"})
    for (const std::string& p : globbed(pattern)) tries.push_back(p);

  std::string errors;
  for (const std::string& p : tries) {
    // Sub-libraries (libcudnn_ops.so.9, ...) are found beside the shim by its $ORIGIN.
    lib_ = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib_) {
      path_ = p;
      break;
    }
    const char* e = dlerror();
    errors += "\n  " + p + ": " + (e ? e : "?");
  }
  if (!lib_) {
    why_not_ = "libcudnn.so.9 not found (set BNORM_CUDNN_PATH); tried:" + errors;
    return;
  }
  Dl_info info{};
  void* any = dlsym(lib_, "cudnnGetVersion");
  if (any && dladdr(any, &info) && info.dli_fname) path_ = info.dli_fname;

  api_ = new Api();
  bool ok = true;
  auto sym = [&](auto& fn, const char* name) {
    void* s = dlsym(lib_, name);
    if (!s) {
      ok = false;
      why_not_ += std::string(why_not_.empty() ? "" : ", ") + name;
    }
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(s);
  };
  sym(api_->create, "cudnnCreate");
  sym(api_->destroy, "cudnnDestroy");
  sym(api_->set_stream, "cudnnSetStream");
  sym(api_->get_version, "cudnnGetVersion");
  sym(api_->error_string, "cudnnGetErrorString");
  sym(api_->create_desc, "cudnnCreateTensorDescriptor");
  sym(api_->destroy_desc, "cudnnDestroyTensorDescriptor");
  sym(api_->set_4d, "cudnnSetTensor4dDescriptor");
  sym(api_->derive_bn, "cudnnDeriveBNTensorDescriptor");
  sym(api_->fwd_training, "cudnnBatchNormalizationForwardTraining");
  sym(api_->fwd_inference, "cudnnBatchNormalizationForwardInference");
  sym(api_->backward, "cudnnBatchNormalizationBackward");
  if (!ok) {
    why_not_ = path_ + " lacks " + why_not_;
    delete api_;
    api_ = nullptr;
    dlclose(lib_);
    lib_ = nullptr;
    return;
  }
  version_ = api_->get_version();
}

Cudnn::~Cudnn() {
  if (api_) {
    if (x_desc_) api_->destroy_desc(x_desc_);
    if (bn_desc_) api_->destroy_desc(bn_desc_);
    if (handle_) api_->destroy(handle_);
  }
  delete api_;
  // The library stays loaded: cuDNN may have registered process-exit handlers.
}

bool Cudnn::init(cudaStream_t stream) {
  if (!lib_) return false;
  if (!handle_) {
    const cudnn_status s = api_->create(&handle_);
    if (s != kSuccess) {
      handle_ = nullptr;
      why_not_ = std::string("cudnnCreate failed: ") + api_->error_string(s);
      return false;
    }
    if (api_->create_desc(&x_desc_) != kSuccess || api_->create_desc(&bn_desc_) != kSuccess) {
      why_not_ = "cudnnCreateTensorDescriptor failed";
      return false;
    }
  }
  const cudnn_status s = api_->set_stream(handle_, stream);
  if (s != kSuccess) {
    why_not_ = std::string("cudnnSetStream failed: ") + api_->error_string(s);
    return false;
  }
  return true;
}

bool Cudnn::set_shape(const Shape& sh, CudnnMode mode, std::string* err) {
  const int m = mode_value(mode);
  if (desc_ready_ && desc_mode_ == m && sh.n == desc_shape_.n && sh.c == desc_shape_.c &&
      sh.h == desc_shape_.h && sh.w == desc_shape_.w)
    return true;
  desc_ready_ = false;
  if (sh.n > INT32_MAX || sh.c > INT32_MAX || sh.h > INT32_MAX || sh.w > INT32_MAX) {
    *err = "shape exceeds cuDNN's int dimensions";
    return false;
  }
  cudnn_status s = api_->set_4d(x_desc_, kTensorNchw, kDataFloat, static_cast<int>(sh.n),
                                static_cast<int>(sh.c), static_cast<int>(sh.h), static_cast<int>(sh.w));
  if (s == kSuccess) s = api_->derive_bn(bn_desc_, x_desc_, m);
  if (s != kSuccess) {
    *err = std::string("cuDNN descriptor: ") + api_->error_string(s);
    return false;
  }
  desc_shape_ = sh;
  desc_mode_ = m;
  desc_ready_ = true;
  return true;
}

std::string Cudnn::run(bnorm_op_t op, CudnnMode mode, const RotatingBuffers& b, int64_t k) {
  if (!handle_) return why_not_.empty() ? "cuDNN is not initialised" : why_not_;
  std::string err;
  if (!set_shape(b.shape(), mode, &err)) return err;
  const float one = 1.0f, zero = 0.0f;
  const int m = mode_value(mode);
  cudnn_status s = kSuccess;
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING:
      s = api_->fwd_training(handle_, m, &one, &zero, x_desc_, b.x(k), x_desc_, b.y(k), bn_desc_,
                             b.gamma(), b.beta(), kMomentum, b.running_mean(), b.running_var(), kEps,
                             b.save_mean(), b.save_invstd());
      break;
    case BNORM_OP_FORWARD_INFERENCE:
      s = api_->fwd_inference(handle_, m, &one, &zero, x_desc_, b.x(k), x_desc_, b.y(k), bn_desc_,
                              b.gamma(), b.beta(), b.running_mean(), b.running_var(), kEps);
      break;
    case BNORM_OP_BACKWARD:
      s = api_->backward(handle_, m, &one, &zero, &one, &zero, x_desc_, b.x(k), x_desc_, b.dy(k),
                         x_desc_, b.dx(k), bn_desc_, b.gamma(), b.dgamma(), b.dbeta(), kEps,
                         b.save_mean(), b.save_invstd());
      break;
  }
  if (s != kSuccess) return std::string(cudnn_mode_name(mode)) + ": " + api_->error_string(s);
  return "";
}

}  // namespace bnorm_bench
