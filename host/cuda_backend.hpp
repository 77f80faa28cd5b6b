// Running an operation on a CUDA handle (see cuda_backend.cpp).
#pragma once

#include "dispatch.hpp"
#include "handle.hpp"

namespace bnorm {

// Rejects pointers the handle's device cannot address (plain host memory, another
// device's memory): passing one to a kernel would fault the caller's whole context.
Status cuda_check_pointer(const bnorm_handle& h, const void* p, const char* name);

// Chooses the variant, sizes the workspace, and launches on the handle's stream.
Status cuda_run(bnorm_handle* h, const Problem& pr, const OpArgs& args);

}  // namespace bnorm
