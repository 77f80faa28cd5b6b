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

void c_caller_set_enums(bnorm_tensor_t* desc, int layout, int dtype) {
  desc->layout = (bnorm_layout_t)layout;
  desc->dtype = (bnorm_dtype_t)dtype;
}
