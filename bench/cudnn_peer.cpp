// See cudnn_peer.hpp. The few cuDNN types and entry points used are declared here, so
// no cuDNN header is needed to build; where cudnn.h exists its values are checked.
#include "cudnn_peer.hpp"

#include <dlfcn.h>
#include <glob.h>

#include <algorithm>

#include <cstdlib>
#include <sys/stat.h>
#include <type_traits>
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
constexpr int kDataFloat = 0;      // CUDNN_DATA_FLOAT
constexpr int kDataHalf = 2;       // CUDNN_DATA_HALF
constexpr int kDataBfloat16 = 9;   // CUDNN_DATA_BFLOAT16
constexpr int kTensorNchw = 0;     // CUDNN_TENSOR_NCHW
constexpr int kTensorNhwc = 1;     // CUDNN_TENSOR_NHWC
constexpr int kBnSpatial = 1;      // CUDNN_BATCHNORM_SPATIAL
constexpr int kBnPersistent = 2;   // CUDNN_BATCHNORM_SPATIAL_PERSISTENT
constexpr int kOpsBnAddAct = 2;    // CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION
constexpr int kActRelu = 1;        // CUDNN_ACTIVATION_RELU
constexpr int kPropagateNan = 1;   // CUDNN_PROPAGATE_NAN: bnorm's ReLU keeps NaN too
#if defined(BNB_HAVE_CUDNN_H)
static_assert(CUDNN_STATUS_SUCCESS == kSuccess, "cuDNN ABI");
static_assert(CUDNN_DATA_FLOAT == kDataFloat, "cuDNN ABI");
static_assert(CUDNN_DATA_HALF == kDataHalf, "cuDNN ABI");
static_assert(CUDNN_DATA_BFLOAT16 == kDataBfloat16, "cuDNN ABI");
static_assert(CUDNN_TENSOR_NCHW == kTensorNchw, "cuDNN ABI");
static_assert(CUDNN_TENSOR_NHWC == kTensorNhwc, "cuDNN ABI");
static_assert(CUDNN_BATCHNORM_SPATIAL == kBnSpatial, "cuDNN ABI");
static_assert(CUDNN_BATCHNORM_SPATIAL_PERSISTENT == kBnPersistent, "cuDNN ABI");
static_assert(CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION == kOpsBnAddAct, "cuDNN ABI");
static_assert(CUDNN_ACTIVATION_RELU == kActRelu, "cuDNN ABI");
static_assert(CUDNN_PROPAGATE_NAN == kPropagateNan, "cuDNN ABI");
#endif

int mode_value(CudnnMode m) { return m == CudnnMode::kSpatial ? kBnSpatial : kBnPersistent; }

int data_type(bnorm_dtype_t t) {
  return t == BNORM_DTYPE_F16 ? kDataHalf : t == BNORM_DTYPE_BF16 ? kDataBfloat16 : kDataFloat;
}

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
  // The fused (Ex) calls and the activation descriptor: optional, the fused rows are
  // skipped without them.
  cudnn_status (*create_act)(cudnn_desc*);
  cudnn_status (*destroy_act)(cudnn_desc);
  cudnn_status (*set_act)(cudnn_desc, int mode, int nan_opt, double coef);
  cudnn_status (*fwd_ex_ws)(cudnn_handle, int mode, int ops, cudnn_desc x_desc, cudnn_desc z_desc,
                            cudnn_desc y_desc, cudnn_desc bn_desc, cudnn_desc act_desc, size_t* bytes);
  cudnn_status (*bwd_ex_ws)(cudnn_handle, int mode, int ops, cudnn_desc x_desc, cudnn_desc y_desc,
                            cudnn_desc dy_desc, cudnn_desc dz_desc, cudnn_desc dx_desc, cudnn_desc bn_desc,
                            cudnn_desc act_desc, size_t* bytes);
  cudnn_status (*reserve_size)(cudnn_handle, int mode, int ops, cudnn_desc act_desc, cudnn_desc x_desc,
                               size_t* bytes);
  cudnn_status (*fwd_training_ex)(cudnn_handle, int mode, int ops, const void* alpha, const void* beta,
                                  cudnn_desc x_desc, const void* x, cudnn_desc z_desc, const void* z,
                                  cudnn_desc y_desc, void* y, cudnn_desc bn_desc, const void* scale,
                                  const void* bias, double factor, void* running_mean, void* running_var,
                                  double eps, void* save_mean, void* save_inv_var, cudnn_desc act_desc,
                                  void* workspace, size_t workspace_bytes, void* reserve, size_t reserve_bytes);
  cudnn_status (*backward_ex)(cudnn_handle, int mode, int ops, const void* alpha_data, const void* beta_data,
                              const void* alpha_param, const void* beta_param, cudnn_desc x_desc, const void* x,
                              cudnn_desc y_desc, const void* y, cudnn_desc dy_desc, const void* dy,
                              cudnn_desc dz_desc, void* dz, cudnn_desc dx_desc, void* dx, cudnn_desc bn_desc,
                              const void* scale, const void* bias, void* dscale, void* dbias, double eps,
                              const void* save_mean, const void* save_inv_var, cudnn_desc act_desc,
                              void* workspace, size_t workspace_bytes, void* reserve, size_t reserve_bytes);
};

#if defined(BNB_HAVE_CUDNN_H)
// The declarations above against cudnn.h's: the same number of parameters, each a
// pointer where cuDNN's is, else of the same size (an int for an enum).
template <class A, class B>
constexpr bool same_abi_arg() {
  if constexpr (std::is_pointer_v<A> || std::is_pointer_v<B>)
    return std::is_pointer_v<A> && std::is_pointer_v<B>;
  else
    return sizeof(A) == sizeof(B) && std::is_floating_point_v<A> == std::is_floating_point_v<B>;
}
template <class F, class G>
struct SameAbi;
template <class RA, class... A, class RB, class... B>
struct SameAbi<RA (*)(A...), RB (*)(B...)> {
  static constexpr bool value = [] {
    if constexpr (sizeof...(A) != sizeof...(B))
      return false;
    else
      return same_abi_arg<RA, RB>() && (same_abi_arg<A, B>() && ...);
  }();
};
#define BNB_CHECK_ABI(member, fn)                                                                 \
  static_assert(SameAbi<decltype(Api::member), decltype(&fn)>::value, "cuDNN ABI: " #fn)
#else
#define BNB_CHECK_ABI(member, fn) static_assert(true, "")
#endif


const char* cudnn_mode_name(CudnnMode m) {
  return m == CudnnMode::kSpatial ? "spatial" : "spatial_persistent";
}

Cudnn::Cudnn(const std::string& explicit_path) {
  // Checked here, where the private Api is in reach.
#if defined(BNB_HAVE_CUDNN_H)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
  BNB_CHECK_ABI(set_4d, cudnnSetTensor4dDescriptor);
  BNB_CHECK_ABI(derive_bn, cudnnDeriveBNTensorDescriptor);
  BNB_CHECK_ABI(fwd_training, cudnnBatchNormalizationForwardTraining);
  BNB_CHECK_ABI(fwd_inference, cudnnBatchNormalizationForwardInference);
  BNB_CHECK_ABI(backward, cudnnBatchNormalizationBackward);
  BNB_CHECK_ABI(create_act, cudnnCreateActivationDescriptor);
  BNB_CHECK_ABI(destroy_act, cudnnDestroyActivationDescriptor);
  BNB_CHECK_ABI(set_act, cudnnSetActivationDescriptor);
  BNB_CHECK_ABI(fwd_ex_ws, cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize);
  BNB_CHECK_ABI(bwd_ex_ws, cudnnGetBatchNormalizationBackwardExWorkspaceSize);
  BNB_CHECK_ABI(reserve_size, cudnnGetBatchNormalizationTrainingExReserveSpaceSize);
  BNB_CHECK_ABI(fwd_training_ex, cudnnBatchNormalizationForwardTrainingEx);
  BNB_CHECK_ABI(backward_ex, cudnnBatchNormalizationBackwardEx);
#if defined(BNB_HAVE_CUDNN_H)
#pragma GCC diagnostic pop
#endif

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
  // Optional: without them only the fused rows are skipped.
  auto optional_sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib_, name));
  };
  optional_sym(api_->create_act, "cudnnCreateActivationDescriptor");
  optional_sym(api_->destroy_act, "cudnnDestroyActivationDescriptor");
  optional_sym(api_->set_act, "cudnnSetActivationDescriptor");
  optional_sym(api_->fwd_ex_ws, "cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize");
  optional_sym(api_->bwd_ex_ws, "cudnnGetBatchNormalizationBackwardExWorkspaceSize");
  optional_sym(api_->reserve_size, "cudnnGetBatchNormalizationTrainingExReserveSpaceSize");
  optional_sym(api_->fwd_training_ex, "cudnnBatchNormalizationForwardTrainingEx");
  optional_sym(api_->backward_ex, "cudnnBatchNormalizationBackwardEx");
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
    if (act_desc_) api_->destroy_act(act_desc_);
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
    if (has_fused() && (api_->create_act(&act_desc_) != kSuccess ||
                        api_->set_act(act_desc_, kActRelu, kPropagateNan, 0.0) != kSuccess)) {
      if (act_desc_) api_->destroy_act(act_desc_);
      act_desc_ = nullptr;  // the fused rows say so; the others run
    }
  }
  const cudnn_status s = api_->set_stream(handle_, stream);
  if (s != kSuccess) {
    why_not_ = std::string("cudnnSetStream failed: ") + api_->error_string(s);
    return false;
  }
  return true;
}

bool Cudnn::has_fused() const {
  return api_ && api_->create_act && api_->destroy_act && api_->set_act && api_->fwd_ex_ws && api_->bwd_ex_ws &&
         api_->reserve_size && api_->fwd_training_ex && api_->backward_ex;
}

bool Cudnn::set_shape(const Shape& sh, CudnnMode mode, std::string* err) {
  const int m = mode_value(mode);
  if (desc_ready_ && desc_mode_ == m && sh.same(desc_shape_)) return true;
  desc_ready_ = false;
  fused_sized_ = false;
  reserve_written_ = false;
  if (sh.n > INT32_MAX || sh.c > INT32_MAX || sh.h > INT32_MAX || sh.w > INT32_MAX) {
    *err = "shape exceeds cuDNN's int dimensions";
    return false;
  }
  // Statistics, scale and bias: float for every data type (cuDNN derives them so).
  cudnn_status s = api_->set_4d(x_desc_, sh.layout == BNORM_LAYOUT_NHWC ? kTensorNhwc : kTensorNchw,
                                data_type(sh.dtype), static_cast<int>(sh.n), static_cast<int>(sh.c),
                                static_cast<int>(sh.h), static_cast<int>(sh.w));
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

// relu(bn(x) + z) and its backward through cuDNN's Ex calls. Workspace and reserve space
// are sized once per shape and mode (a refusal there is cuDNN's "not supported").
std::string Cudnn::run_fused(bnorm_op_t op, int m, const RotatingBuffers& b, int64_t k) {
  if (!has_fused()) return "this cuDNN lacks cudnnBatchNormalizationForwardTrainingEx / BackwardEx";
  if (!act_desc_) return "cannot create a ReLU activation descriptor";
  const float one = 1.0f, zero = 0.0f;
  if (!fused_sized_) {
    size_t fwd = 0, bwd = 0, reserve = 0;
    cudnn_status s = api_->fwd_ex_ws(handle_, m, kOpsBnAddAct, x_desc_, x_desc_, x_desc_, bn_desc_, act_desc_, &fwd);
    if (s == kSuccess)
      s = api_->bwd_ex_ws(handle_, m, kOpsBnAddAct, x_desc_, x_desc_, x_desc_, x_desc_, x_desc_, bn_desc_,
                          act_desc_, &bwd);
    if (s == kSuccess) s = api_->reserve_size(handle_, m, kOpsBnAddAct, act_desc_, x_desc_, &reserve);
    if (s != kSuccess) return std::string("BN_ADD_ACTIVATION workspace query: ") + api_->error_string(s);
    // Allocation synchronises: done here, on the row's first (untimed) call.
    if (std::max(fwd, bwd) > workspace_.bytes()) workspace_.reset(std::max(fwd, bwd));
    if (reserve > reserve_.bytes()) reserve_.reset(reserve);
    fwd_ws_ = fwd;
    bwd_ws_ = bwd;
    reserve_bytes_ = reserve;
    fused_sized_ = true;
  }
  auto forward = [&](int64_t set, void* y) {
    return api_->fwd_training_ex(handle_, m, kOpsBnAddAct, &one, &zero, x_desc_, b.x(set), x_desc_, b.z(set),
                                 x_desc_, y, bn_desc_, b.gamma(), b.beta(), kMomentum, b.running_mean(),
                                 b.running_var(), kEps, b.save_mean(), b.save_invstd(), act_desc_,
                                 workspace_.get(), fwd_ws_, reserve_.get(), reserve_bytes_);
  };
  cudnn_status s = kSuccess;
  if (op == BNORM_OP_FORWARD_TRAINING) {
    s = forward(k, b.y(k));
    if (s == kSuccess) reserve_written_ = true;
  } else if (op == BNORM_OP_BACKWARD) {
    // The reserve space of one forward (set 0's; its y lands in the output slab, which
    // the backward overwrites) serves every set, as bnorm's saved statistics do.
    if (!reserve_written_) {
      s = forward(0, b.y(0));
      if (s != kSuccess) return std::string("BN_ADD_ACTIVATION forward (for the reserve space): ") + api_->error_string(s);
      reserve_written_ = true;
    }
    s = api_->backward_ex(handle_, m, kOpsBnAddAct, &one, &zero, &one, &zero, x_desc_, b.x(k), x_desc_,
                          b.y_fwd(k), x_desc_, b.dy(k), x_desc_, b.dz(k), x_desc_, b.dx(k), bn_desc_, b.gamma(),
                          b.beta(), b.dgamma(), b.dbeta(), kEps, b.save_mean(), b.save_invstd(), act_desc_,
                          workspace_.get(), bwd_ws_, reserve_.get(), reserve_bytes_);
  } else {
    return "no fused inference row";
  }
  if (s != kSuccess) return std::string("BN_ADD_ACTIVATION: ") + api_->error_string(s);
  return "";
}

std::string Cudnn::run(bnorm_op_t op, CudnnMode mode, const RotatingBuffers& b, int64_t k) {
  if (!handle_) return why_not_.empty() ? "cuDNN is not initialised" : why_not_;
  std::string err;
  if (!set_shape(b.shape(), mode, &err)) return err;
  const int m = mode_value(mode);
  if (b.shape().fused) {
    const std::string e = run_fused(op, m, b, k);
    return e.empty() ? e : std::string(cudnn_mode_name(mode)) + ": " + e;
  }
  const float one = 1.0f, zero = 0.0f;
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
    default: return "cuDNN has no such operation";
  }
  if (s != kSuccess) return std::string(cudnn_mode_name(mode)) + ": " + api_->error_string(s);
  return "";
}

}  // namespace bnorm_bench
