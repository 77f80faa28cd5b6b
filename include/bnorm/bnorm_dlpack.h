/*
 * bnorm_dlpack.h: batch norm on DLPack tensors, as frameworks exchange them
 * (torch.utils.dlpack, jax.dlpack, CuPy, TVM, ...). Optional: include it where
 * <dlpack/dlpack.h> is available (Debian's libdlpack-dev). The functions are part of
 * libbnorm when it was built with DLPack found (BNORM_HAS_DLPACK in bnorm_version.h).
 *
 * Tensors are borrowed: bnorm reads the DLTensor structs during the call only, never
 * takes ownership and keeps no pointer. Outputs are const DLTensor* too: their data is
 * written, the structs are not. NULL stands for an optional tensor left out, exactly as
 * a NULL pointer in bnorm.h. A tensor is accepted when
 *  - device: kDLCPU or kDLCUDAHost for a CPU handle; kDLCUDA with the handle's device
 *    id, kDLCUDAHost or kDLCUDAManaged for a CUDA handle;
 *  - dtype: float32, float16 or bfloat16 with one lane (per-channel vectors: float32);
 *  - shape: 4-D (N, C, H, W) in logical order, or 2-D (N, C); per-channel vectors 1-D of
 *    C; every tensor of a call of the same shape, dtype and layout as x;
 *  - strides: NULL (compact row-major), contiguous NCHW, or contiguous channels-last
 *    NHWC (strides (H*W*C, 1, W*C, C), what PyTorch's channels_last gives); a dimension
 *    of size 1 may have any stride, as in PyTorch's contiguity rule;
 *  - data + byte_offset aligned to the element size.
 * Anything else fails before any work with BNORM_STATUS_NOT_SUPPORTED for what bnorm does
 * not implement (another device type, dtype, rank or memory layout) or
 * BNORM_STATUS_INVALID_VALUE for what is wrong (a NULL or misaligned tensor, a negative
 * or mismatched size, another device id), bnorm_last_error() naming the tensor.
 */
#ifndef BNORM_BNORM_DLPACK_H
#define BNORM_BNORM_DLPACK_H

#include <dlpack/dlpack.h>

#include "bnorm/bnorm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The bnorm_tensor_t of a 4-D or 2-D DLPack tensor, and its first element (data +
 * byte_offset), after every check above. */
BNORM_API bnorm_status_t bnorm_dlpack_describe(bnorm_handle_t handle, const DLTensor* tensor,
                                               bnorm_tensor_t* desc, void** data);

/* bnorm_forward_training, bnorm_forward_inference and bnorm_backward on DLPack tensors;
 * the arguments mean what they mean there. */
BNORM_API bnorm_status_t bnorm_dlpack_forward_training(
    bnorm_handle_t handle, const DLTensor* x, const DLTensor* y, const DLTensor* gamma, const DLTensor* beta,
    float momentum, float eps, const DLTensor* running_mean, const DLTensor* running_var,
    const DLTensor* save_mean, const DLTensor* save_invstd);

BNORM_API bnorm_status_t bnorm_dlpack_forward_inference(bnorm_handle_t handle, const DLTensor* x,
                                                        const DLTensor* y, const DLTensor* gamma,
                                                        const DLTensor* beta, const DLTensor* running_mean,
                                                        const DLTensor* running_var, float eps);

BNORM_API bnorm_status_t bnorm_dlpack_backward(bnorm_handle_t handle, const DLTensor* x, const DLTensor* dy,
                                               const DLTensor* gamma, const DLTensor* save_mean,
                                               const DLTensor* save_invstd, const DLTensor* dx,
                                               const DLTensor* dgamma, const DLTensor* dbeta);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BNORM_BNORM_DLPACK_H */
