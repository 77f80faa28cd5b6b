/*
 * bnorm_sync_mpi.h: synchronized batch norm over MPI, the collectives of bnorm.h's
 * protocol done for you. Optional and header-only: include it where <mpi.h> is
 * available; libbnorm itself does not depend on MPI.
 *
 * For host buffers (a CPU handle): MPI is not stream-ordered, so device buffers belong
 * to bnorm_sync_nccl.h. Every rank of `comm` calls the same function with the same c, h,
 * w, layout and dtype, and any n (0 included).
 *
 * Both exchanges are all-gathers followed by a sum or merge in rank order on every
 * rank, rather than an MPI_Allreduce, whose summation order may differ between ranks:
 * this way every rank holds bitwise the same statistics and parameter gradients, and
 * replicas of the model never drift apart.
 *
 * scratch: bnorm_mpi_sync_scratch_floats(c, ranks) floats, untouched between calls.
 * global_stats: 3*c floats written by the forward and read by the backward.
 * The other arguments are those of bnorm_sync_forward and bnorm_sync_backward.
 */
#ifndef BNORM_BNORM_SYNC_MPI_H
#define BNORM_BNORM_SYNC_MPI_H

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>

#include "bnorm/bnorm.h"

static inline size_t bnorm_mpi_sync_scratch_floats(int64_t c, int ranks) {
  return (size_t)(ranks + 1) * 3 * (size_t)c;
}

static inline bnorm_status_t bnorm_mpi_sync_failed_(const char* what, int code) {
  char msg[MPI_MAX_ERROR_STRING + 64];
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  text[len] = '\0';
  snprintf(msg, sizeof msg, "%s failed: %s", what, text);
  return bnorm_report_error(BNORM_STATUS_COMMUNICATION_ERROR, msg);
}

static inline bnorm_status_t bnorm_mpi_sync_forward(bnorm_handle_t handle, MPI_Comm comm,
                                                    const bnorm_tensor_t* desc, const void* x, void* y,
                                                    const float* gamma, const float* beta, float momentum,
                                                    float eps, float* running_mean, float* running_var,
                                                    float* save_mean, float* save_invstd, float* global_stats,
                                                    float* scratch) {
  bnorm_backend_t backend;
  bnorm_status_t s;
  int ranks = 0, rc;
  float *local = scratch, *gathered;
  if ((s = bnorm_get_backend(handle, &backend)) != BNORM_STATUS_SUCCESS) return s;
  if (backend != BNORM_BACKEND_CPU)
    return bnorm_report_error(BNORM_STATUS_NOT_SUPPORTED,
                              "bnorm_mpi_sync_forward: host buffers only; use bnorm_sync_nccl.h for CUDA");
  if (!desc || !scratch || !global_stats)
    return bnorm_report_error(BNORM_STATUS_INVALID_VALUE, "bnorm_mpi_sync_forward: desc, global_stats or scratch is NULL");
  if ((rc = MPI_Comm_size(comm, &ranks)) != MPI_SUCCESS) return bnorm_mpi_sync_failed_("MPI_Comm_size", rc);
  gathered = scratch + 3 * desc->c;
  if ((s = bnorm_sync_local_stats(handle, desc, x, local)) != BNORM_STATUS_SUCCESS) return s;
  rc = MPI_Allgather(local, (int)(3 * desc->c), MPI_FLOAT, gathered, (int)(3 * desc->c), MPI_FLOAT, comm);
  if (rc != MPI_SUCCESS) return bnorm_mpi_sync_failed_("MPI_Allgather of the statistics", rc);
  if ((s = bnorm_sync_merge_stats(handle, desc->c, ranks, gathered, global_stats)) != BNORM_STATUS_SUCCESS) return s;
  return bnorm_sync_forward(handle, desc, x, y, gamma, beta, global_stats, momentum, eps, running_mean,
                            running_var, save_mean, save_invstd);
}

static inline bnorm_status_t bnorm_mpi_sync_backward(bnorm_handle_t handle, MPI_Comm comm,
                                                     const bnorm_tensor_t* desc, const void* x, const void* dy,
                                                     const float* gamma, const float* save_mean,
                                                     const float* save_invstd, const float* global_stats, void* dx,
                                                     float* dgamma, float* dbeta, float* scratch) {
  bnorm_status_t s;
  int ranks = 0, rc, r;
  int64_t i;
  float *sums, *gathered;
  if (!desc || !scratch)
    return bnorm_report_error(BNORM_STATUS_INVALID_VALUE, "bnorm_mpi_sync_backward: desc or scratch is NULL");
  if ((rc = MPI_Comm_size(comm, &ranks)) != MPI_SUCCESS) return bnorm_mpi_sync_failed_("MPI_Comm_size", rc);
  sums = scratch;                    /* 2c: the global sums, built last */
  gathered = scratch + 2 * desc->c;  /* ranks * 2c, after this rank's own 2c */
  if ((s = bnorm_sync_backward_sums(handle, desc, x, dy, save_mean, sums)) != BNORM_STATUS_SUCCESS) return s;
  rc = MPI_Allgather(sums, (int)(2 * desc->c), MPI_FLOAT, gathered, (int)(2 * desc->c), MPI_FLOAT, comm);
  if (rc != MPI_SUCCESS) return bnorm_mpi_sync_failed_("MPI_Allgather of the gradient sums", rc);
  for (i = 0; i < 2 * desc->c; ++i) { /* rank order, the same on every rank */
    float total = 0.0f;
    for (r = 0; r < ranks; ++r) total += gathered[(int64_t)r * 2 * desc->c + i];
    sums[i] = total;
  }
  return bnorm_sync_backward(handle, desc, x, dy, gamma, save_mean, save_invstd, global_stats, sums, dx, dgamma,
                             dbeta);
}

#endif /* BNORM_BNORM_SYNC_MPI_H */
