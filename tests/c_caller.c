/* See c_caller.h. */
#include "c_caller.h"

bnorm_status_t c_caller_create(bnorm_handle_t* h, int backend, int device) {
  return bnorm_create(h, (bnorm_backend_t)backend, device);
}

bnorm_status_t c_caller_set_variant(bnorm_handle_t h, int op, const char* spec) {
  return bnorm_set_variant(h, (bnorm_op_t)op, spec);
}

bnorm_status_t c_caller_query_variant(bnorm_handle_t h, int op, const bnorm_tensor_t* desc,
                                      int aligned16, char* spec, size_t spec_len, bnorm_choice_t* why) {
  return bnorm_query_variant(h, (bnorm_op_t)op, desc, aligned16, spec, spec_len, why);
}

bnorm_status_t c_caller_list_variants(bnorm_handle_t h, int op, const bnorm_tensor_t* desc,
                                      int aligned16, char* buf, size_t buf_len, int* count,
                                      size_t* needed) {
  return bnorm_list_variants(h, (bnorm_op_t)op, desc, aligned16, buf, buf_len, count, needed);
}

const char* c_caller_status_string(int status) { return bnorm_status_string((bnorm_status_t)status); }

bnorm_status_t c_caller_forward_training_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                               const void* z, void* y, const float* gamma, const float* beta,
                                               float momentum, float eps, float* running_mean,
                                               float* running_var, float* save_mean, float* save_invstd,
                                               int act) {
  return bnorm_forward_training_fused(h, desc, x, z, y, gamma, beta, momentum, eps, running_mean, running_var,
                                      save_mean, save_invstd, (bnorm_activation_t)act);
}

bnorm_status_t c_caller_forward_inference_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                                const void* z, void* y, const float* gamma, const float* beta,
                                                const float* running_mean, const float* running_var,
                                                float eps, int act) {
  return bnorm_forward_inference_fused(h, desc, x, z, y, gamma, beta, running_mean, running_var, eps,
                                       (bnorm_activation_t)act);
}

bnorm_status_t c_caller_backward_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                       const void* y, const void* dy, const float* gamma,
                                       const float* save_mean, const float* save_invstd, void* dx, void* dz,
                                       float* dgamma, float* dbeta, int act) {
  return bnorm_backward_fused(h, desc, x, y, dy, gamma, save_mean, save_invstd, dx, dz, dgamma, dbeta,
                              (bnorm_activation_t)act);
}

void c_caller_set_enums(bnorm_tensor_t* desc, int layout, int dtype) {
  desc->layout = (bnorm_layout_t)layout;
  desc->dtype = (bnorm_dtype_t)dtype;
}
