/* Calls with enum arguments out of range, as a C caller makes them. C may pass any int
 * where bnorm.h says enum; C++ may not even read such a value as the enum (UBSan rightly
 * reports it in the caller), so the tests and fuzz targets that need one call through
 * these C functions. */
#ifndef BNORM_TESTS_C_CALLER_H
#define BNORM_TESTS_C_CALLER_H

#include <stddef.h>

#include "bnorm/bnorm.h"

#ifdef __cplusplus
extern "C" {
#endif

bnorm_status_t c_caller_create(bnorm_handle_t* h, int backend, int device);
bnorm_status_t c_caller_set_variant(bnorm_handle_t h, int op, const char* spec);
bnorm_status_t c_caller_query_variant(bnorm_handle_t h, int op, const bnorm_tensor_t* desc,
                                      int aligned16, char* spec, size_t spec_len, bnorm_choice_t* why);
bnorm_status_t c_caller_list_variants(bnorm_handle_t h, int op, const bnorm_tensor_t* desc,
                                      int aligned16, char* buf, size_t buf_len, int* count,
                                      size_t* needed);
const char* c_caller_status_string(int status);
bnorm_status_t c_caller_forward_training_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                               const void* z, void* y, const float* gamma, const float* beta,
                                               float momentum, float eps, float* running_mean,
                                               float* running_var, float* save_mean, float* save_invstd,
                                               int act);
bnorm_status_t c_caller_forward_inference_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                                const void* z, void* y, const float* gamma, const float* beta,
                                                const float* running_mean, const float* running_var,
                                                float eps, int act);
bnorm_status_t c_caller_backward_fused(bnorm_handle_t h, const bnorm_tensor_t* desc, const void* x,
                                       const void* y, const void* dy, const float* gamma,
                                       const float* save_mean, const float* save_invstd, void* dx, void* dz,
                                       float* dgamma, float* dbeta, int act);
/* Fills a descriptor's enum fields with any ints. */
void c_caller_set_enums(bnorm_tensor_t* desc, int layout, int dtype);

#ifdef __cplusplus
}
#endif

#endif
