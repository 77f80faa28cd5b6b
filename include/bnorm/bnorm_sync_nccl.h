/*
 * bnorm_sync_nccl.h: synchronized batch norm over NCCL for CUDA buffers, the collectives
 * of bnorm.h's protocol done for you. Optional and header-only: include it where
 * <nccl.h> is available (the CUDA toolkit's libnccl); libbnorm itself does not depend
 * on NCCL.
 *
 * Everything is queued on the handle's stream (bnorm_get_stream), the collectives
 * included, so nothing synchronises with the host: a training step stays asynchronous.
 * Each rank owns one GPU and one handle on it; every rank of `comm` calls the same
 * function with the same c, h, w, layout and dtype, and any n (0 included). NCCL's
 * all-gather is exact and its all-reduce gives every rank the same sums, so all ranks
 * hold the same statistics and parameter gradients.
 *
 * scratch: device memory of bnorm_nccl_sync_scratch_floats(c, ranks) floats.
 * global_stats: device memory of 3*c floats, written by the forward, read by the
 * backward. The other arguments are those of bnorm_sync_forward and bnorm_sync_backward.
 */
#ifndef BNORM_BNORM_SYNC_NCCL_H
#define BNORM_BNORM_SYNC_NCCL_H

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stddef.h>
#include <stdio.h>

#include "bnorm/bnorm.h"

static inline size_t bnorm_nccl_sync_scratch_floats(int64_t c, int ranks) {
  return (size_t)(ranks + 1) * 3 * (size_t)c;
}

static inline bnorm_status_t bnorm_nccl_sync_failed_(const char* what, ncclResult_t r) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", what, ncclGetErrorString(r));
  return bnorm_report_error(BNORM_STATUS_COMMUNICATION_ERROR, msg);
}

static inline bnorm_status_t bnorm_nccl_sync_forward(bnorm_handle_t handle, ncclComm_t comm,
                                                     const bnorm_tensor_t* desc, const void* x, void* y,
                                                     const float* gamma, const float* beta, float momentum,
                                                     float eps, float* running_mean, float* running_var,
                                                     float* save_mean, float* save_invstd, float* global_stats,
                                                     float* scratch) {
  void* stream = NULL;
  bnorm_status_t s;
  ncclResult_t r;
  int ranks = 0;
  if ((s = bnorm_get_stream(handle, &stream)) != BNORM_STATUS_SUCCESS) return s;
  if (!desc || !scratch || !global_stats)
    return bnorm_report_error(BNORM_STATUS_INVALID_VALUE,
                              "bnorm_nccl_sync_forward: desc, global_stats or scratch is NULL");
  if ((r = ncclCommCount(comm, &ranks)) != ncclSuccess) return bnorm_nccl_sync_failed_("ncclCommCount", r);
  if ((s = bnorm_sync_local_stats(handle, desc, x, scratch)) != BNORM_STATUS_SUCCESS) return s;
  r = ncclAllGather(scratch, scratch + 3 * desc->c, (size_t)(3 * desc->c), ncclFloat, comm, (cudaStream_t)stream);
  if (r != ncclSuccess) return bnorm_nccl_sync_failed_("ncclAllGather of the statistics", r);
  s = bnorm_sync_merge_stats(handle, desc->c, ranks, scratch + 3 * desc->c, global_stats);
  if (s != BNORM_STATUS_SUCCESS) return s;
  return bnorm_sync_forward(handle, desc, x, y, gamma, beta, global_stats, momentum, eps, running_mean,
                            running_var, save_mean, save_invstd);
}

static inline bnorm_status_t bnorm_nccl_sync_backward(bnorm_handle_t handle, ncclComm_t comm,
                                                      const bnorm_tensor_t* desc, const void* x, const void* dy,
                                                      const float* gamma, const float* save_mean,
                                                      const float* save_invstd, const float* global_stats, void* dx,
                                                      float* dgamma, float* dbeta, float* scratch) {
  void* stream = NULL;
  bnorm_status_t s;
  ncclResult_t r;
  if ((s = bnorm_get_stream(handle, &stream)) != BNORM_STATUS_SUCCESS) return s;
  if (!desc || !scratch)
    return bnorm_report_error(BNORM_STATUS_INVALID_VALUE, "bnorm_nccl_sync_backward: desc or scratch is NULL");
  if ((s = bnorm_sync_backward_sums(handle, desc, x, dy, save_mean, scratch)) != BNORM_STATUS_SUCCESS) return s;
  r = ncclAllReduce(scratch, scratch + 2 * desc->c, (size_t)(2 * desc->c), ncclFloat, ncclSum, comm,
                    (cudaStream_t)stream);
  if (r != ncclSuccess) return bnorm_nccl_sync_failed_("ncclAllReduce of the gradient sums", r);
  return bnorm_sync_backward(handle, desc, x, dy, gamma, save_mean, save_invstd, global_stats,
                             scratch + 2 * desc->c, dx, dgamma, dbeta);
}

#endif /* BNORM_BNORM_SYNC_NCCL_H */
