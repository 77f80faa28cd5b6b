/*
 * bnorm: batch normalization kernels behind a small C API.
 *
 * This is the only header a user includes. It compiles as C11 and as C++.
 *
 * Conventions
 *  - Every call returns a bnorm_status_t; bnorm_last_error() gives a readable
 *    message for the last failing call on the calling thread.
 *  - A failing call writes no output: arguments are validated before any work.
 *  - Pointers belong to the handle's backend: device memory (or memory the device
 *    can address) for BNORM_BACKEND_CUDA, host memory for BNORM_BACKEND_CPU.
 *  - CUDA calls are asynchronous on the handle's stream, like cuDNN. CPU calls are
 *    synchronous.
 *  - Per-channel parameters and statistics are float32 arrays of C elements, whatever
 *    the dtype of x.
 *  - In-place: y may equal x; dx may equal dy (and each call's own exceptions, such as
 *    folding's weight_out = weight). No other overlap is allowed, and none goes unseen:
 *    a call whose buffers overlap otherwise, a per-channel array inside a tensor
 *    included, fails with BNORM_STATUS_INVALID_VALUE naming the two buffers.
 *  - An enum argument or field may hold any int (C allows it): a value outside the enum
 *    is rejected with BNORM_STATUS_INVALID_VALUE, like any other bad argument.
 *
 * Threads (tests/test_edges.cpp and tests/test_cuda_edges.cpp check them):
 *  - A handle is used by one thread at a time: create one per thread, as with cuDNN. A
 *    handle may pass between threads when the caller orders the calls; calls on one
 *    handle that overlap in time (bnorm_destroy and bnorm_set_stream included) are a
 *    data race.
 *  - Different handles may be used concurrently from any threads, on any streams:
 *    nothing they share can race (the process-wide tuning cache is replaced whole, so
 *    bnorm_tuning_load is safe at any time). Results do not depend on concurrency: a
 *    call gives bit for bit what it gives alone with the same kernel variant.
 *  - The last-error message is per thread: bnorm_last_error() reports the last failing
 *    call of the calling thread, whatever other threads do.
 *  - Calls on a CUDA handle make its device current for their duration and restore the
 *    caller's device. They are asynchronous on the handle's stream: inputs must stay
 *    unchanged and outputs unread until that work has finished, and the calls of one
 *    handle run in order, on one workspace. bnorm_set_stream orders the new stream after
 *    the work queued on the old one; bnorm_destroy waits for the handle's work.
 *  - bnorm_get_version, bnorm_status_string and bnorm_last_error need no handle and are
 *    safe from any thread. The environment (BNORM_VARIANT, BNORM_VERBOSE,
 *    BNORM_TUNING_CACHE) is read during calls: change it only while no call runs.
 */
#ifndef BNORM_BNORM_H
#define BNORM_BNORM_H

#include <stddef.h>
#include <stdint.h>

#include "bnorm/bnorm_export.h"
#include "bnorm/bnorm_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values are part of the ABI: never renumber. */
typedef enum {
  BNORM_STATUS_SUCCESS = 0,
  BNORM_STATUS_INVALID_VALUE = 1,  /* a bad argument: the message names it */
  BNORM_STATUS_NOT_SUPPORTED = 2,  /* valid, but no implementation (dtype, layout, ...) */
  BNORM_STATUS_ALLOC_FAILED = 3,
  BNORM_STATUS_NO_DEVICE = 4,      /* a CUDA handle was asked for and no usable GPU exists */
  BNORM_STATUS_CUDA_ERROR = 5,     /* the CUDA runtime reported an error: see the message */
  BNORM_STATUS_INTERNAL_ERROR = 6,
  BNORM_STATUS_COMMUNICATION_ERROR = 7  /* MPI or NCCL failed in a bnorm_sync_*.h helper */
} bnorm_status_t;

typedef enum { BNORM_BACKEND_CPU = 0, BNORM_BACKEND_CUDA = 1 } bnorm_backend_t;

typedef enum { BNORM_LAYOUT_NCHW = 0, BNORM_LAYOUT_NHWC = 1 } bnorm_layout_t;

typedef enum { BNORM_DTYPE_F32 = 0, BNORM_DTYPE_F16 = 1, BNORM_DTYPE_BF16 = 2 } bnorm_dtype_t;

/* The operations a handle can run; used by the dispatch query and the tuning cache.
 * Values are part of the ABI: new operations are appended, never renumbered. */
typedef enum {
  BNORM_OP_FORWARD_TRAINING = 0,
  BNORM_OP_FORWARD_INFERENCE = 1,
  BNORM_OP_BACKWARD = 2,
  BNORM_OP_BACKWARD_FROZEN = 3,       /* bnorm_backward_frozen */
  BNORM_OP_GROUP_NORM_FORWARD = 4,    /* bnorm_group_norm_forward, bnorm_instance_norm_forward */
  BNORM_OP_GROUP_NORM_BACKWARD = 5,   /* bnorm_group_norm_backward, bnorm_instance_norm_backward */
  BNORM_OP_LAYER_NORM_FORWARD = 6,    /* bnorm_layer_norm_forward */
  BNORM_OP_LAYER_NORM_BACKWARD = 7,   /* bnorm_layer_norm_backward */
  BNORM_OP_FOLD = 8,                  /* bnorm_fold_into_weights */
  BNORM_OP_SYNC_LOCAL_STATS = 9,      /* bnorm_sync_local_stats */
  BNORM_OP_SYNC_FORWARD = 10,         /* bnorm_sync_forward */
  BNORM_OP_SYNC_BACKWARD_SUMS = 11,   /* bnorm_sync_backward_sums */
  BNORM_OP_SYNC_BACKWARD = 12         /* bnorm_sync_backward */
} bnorm_op_t;

/* A dense tensor. An (N, C) activation of a fully connected layer is h = w = 1.
 * Statistics are per channel over M = n*h*w values. Valid sizes: n >= 0, c, h, w >= 1
 * and n*c*h*w <= 2^62; indexing is 64-bit throughout.
 * n = 0 is an empty batch: every operation accepts it (tensor pointers may then be
 * NULL), moves no tensor data and leaves running statistics untouched, as PyTorch
 * does. Per-channel sums over the batch (dgamma, dbeta, the synchronized batch norm's
 * local states and sums) are sums over no values and are written as 0. Negative sizes
 * are errors. */
typedef struct {
  int64_t n, c, h, w;
  bnorm_layout_t layout;
  bnorm_dtype_t dtype;
} bnorm_tensor_t;

typedef struct bnorm_handle* bnorm_handle_t;

/* Version of the library that is running (BNORM_VERSION of the build). */
BNORM_API int bnorm_get_version(void);

BNORM_API const char* bnorm_status_string(bnorm_status_t status);

/* Message of the last failing call on this thread ("" if none). Valid until the next
 * failing call on this thread. */
BNORM_API const char* bnorm_last_error(void);

/* Records message as this thread's last error and returns status. For the inline
 * helpers of the optional headers (bnorm_sync_mpi.h, bnorm_sync_nccl.h), so that their
 * communication library's failures read like the library's own. */
BNORM_API bnorm_status_t bnorm_report_error(bnorm_status_t status, const char* message);

/* device is the CUDA device ordinal (ignored for the CPU backend). A CUDA handle owns
 * a small device workspace, allocated here once: no call allocates afterwards.
 * Returns BNORM_STATUS_NO_DEVICE when no usable GPU (or driver) is present. */
BNORM_API bnorm_status_t bnorm_create(bnorm_handle_t* handle, bnorm_backend_t backend, int device);
BNORM_API bnorm_status_t bnorm_destroy(bnorm_handle_t handle);

/* cuda_stream is a cudaStream_t; NULL is the legacy default stream. The CPU backend
 * accepts and ignores it. */
BNORM_API bnorm_status_t bnorm_set_stream(bnorm_handle_t handle, void* cuda_stream);
BNORM_API bnorm_status_t bnorm_get_stream(bnorm_handle_t handle, void** cuda_stream);
BNORM_API bnorm_status_t bnorm_get_backend(bnorm_handle_t handle, bnorm_backend_t* backend);

/* The CPU backend's threads for this handle's calls: threads >= 1, or 0 for the default
 * (BNORM_CPU_THREADS, else one per processor the process may run on). Results do not
 * depend on it: the work
 * of a call is cut by its shape alone and merged in a fixed order, so any thread count
 * gives the same bits. A call with little work uses fewer threads. Negative counts are
 * BNORM_STATUS_INVALID_VALUE; a CUDA handle answers BNORM_STATUS_NOT_SUPPORTED.
 * bnorm_get_cpu_threads gives the count a large call would use now. */
BNORM_API bnorm_status_t bnorm_set_cpu_threads(bnorm_handle_t handle, int threads);
BNORM_API bnorm_status_t bnorm_get_cpu_threads(bnorm_handle_t handle, int* threads);

/*
 * Forward in training mode, per channel c over its M = n*h*w values:
 *   mean_c = sum(x)/M,  var_c = sum((x - mean_c)^2)/M    (Welford, fp32 or better)
 *   y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c
 * gamma, beta: NULL means 1 and 0.
 * running_mean, running_var: NULL for none, else both given and updated in place
 *   (PyTorch's convention; momentum equals cuDNN's exponentialAverageFactor, and is the
 *   complement of Keras's momentum):
 *   running_mean = (1 - momentum) * running_mean + momentum * mean_c
 *   running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)
 * save_mean, save_invstd: NULL for none, else receive mean_c and 1/sqrt(var_c + eps),
 *   the inputs of bnorm_backward.
 * Requires M >= 2 (a single value has no variance), eps > 0 and finite,
 * 0 <= momentum <= 1.
 */
BNORM_API bnorm_status_t bnorm_forward_training(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, void* y,
    const float* gamma, const float* beta, float momentum, float eps,
    float* running_mean, float* running_var, float* save_mean, float* save_invstd);

/* Forward in inference mode:
 *   y = (x - running_mean_c) / sqrt(running_var_c + eps) * gamma_c + beta_c
 * running_mean and running_var are required; gamma, beta may be NULL (1 and 0). */
BNORM_API bnorm_status_t bnorm_forward_inference(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, void* y,
    const float* gamma, const float* beta, const float* running_mean,
    const float* running_var, float eps);

/* Backward of bnorm_forward_training, from its saved statistics. With
 * xhat = (x - save_mean_c) * save_invstd_c, per channel over M values:
 *   dbeta_c  = sum(dy)
 *   dgamma_c = sum(dy * xhat)
 *   dx = gamma_c * save_invstd_c / M * (M * dy - dbeta_c - xhat * dgamma_c)
 * gamma: NULL means 1. dgamma, dbeta: NULL when not wanted. dx is required. */
BNORM_API bnorm_status_t bnorm_backward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* dy,
    const float* gamma, const float* save_mean, const float* save_invstd, void* dx,
    float* dgamma, float* dbeta);

/* ---- Fused activations -------------------------------------------------------------
 *
 * The residual block's relu(bn(conv(x)) + shortcut) in one pass over memory, and its
 * backward. The plain calls above are these with act = IDENTITY and no z. */
typedef enum { BNORM_ACTIVATION_IDENTITY = 0, BNORM_ACTIVATION_RELU = 1 } bnorm_activation_t;

/* y = act(bn(x) + z), bn as in bnorm_forward_training (statistics of x alone).
 * z: a tensor shaped like x, or NULL for no add. y may alias x or z. ReLU keeps NaN. */
BNORM_API bnorm_status_t bnorm_forward_training_fused(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* z, void* y,
    const float* gamma, const float* beta, float momentum, float eps, float* running_mean,
    float* running_var, float* save_mean, float* save_invstd, bnorm_activation_t act);

/* y = act(bn_inference(x) + z). */
BNORM_API bnorm_status_t bnorm_forward_inference_fused(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* z, void* y,
    const float* gamma, const float* beta, const float* running_mean, const float* running_var,
    float eps, bnorm_activation_t act);

/* Backward of bnorm_forward_training_fused. With RELU the gradient reaching batch norm
 * is g = dy where y > 0 and 0 elsewhere, y being the fused forward's output (required
 * with RELU, ignored otherwise); without, g = dy. dx, dgamma, dbeta are batch norm's
 * backward of g. dz receives g, the gradient of z (NULL when not wanted). dx may alias
 * dy; dz may alias dy; dx and dz must differ. */
BNORM_API bnorm_status_t bnorm_backward_fused(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* y,
    const void* dy, const float* gamma, const float* save_mean, const float* save_invstd,
    void* dx, void* dz, float* dgamma, float* dbeta, bnorm_activation_t act);

/* ---- Frozen batch norm: backward with the running statistics held fixed --------------
 *
 * Fine-tuning with batch norm in eval mode (PyTorch's model.eval() with gradients on, or
 * FrozenBatchNorm2d with trainable affine): the forward is bnorm_forward_inference, and
 * the statistics are constants, so the gradient has no mean or variance terms. With
 * invstd_c = 1/sqrt(running_var_c + eps) and xhat = (x - running_mean_c) * invstd_c:
 *   dx = dy * gamma_c * invstd_c
 *   dgamma_c = sum(dy * xhat),  dbeta_c = sum(dy)          (over the c's n*h*w values)
 * gamma: NULL means 1. dgamma, dbeta: NULL when not wanted (with both NULL, x is not
 * read and may be NULL). dx is required; it may alias dy, not x. Any n*h*w >= 1. */
BNORM_API bnorm_status_t bnorm_backward_frozen(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* dy,
    const float* gamma, const float* running_mean, const float* running_var, float eps, void* dx,
    float* dgamma, float* dbeta);

/* ---- Folding batch norm into the layer before it, for inference -------------------
 *
 * A convolution or fully connected layer followed by batch norm in inference mode is one
 * affine map per output channel o: with s_o = gamma_o / sqrt(running_var_o + eps),
 *   weight'[o][k] = weight[o][k] * s_o                           for each of its K weights
 *   bias'[o]      = (bias_o - running_mean_o) * s_o + beta_o
 * so layer'(x) = bn_inference(layer(x)) and the batch norm disappears from the network.
 * weight_desc describes the weights: n = C_out (the batch norm's channels) and
 * c*h*w = K, the weights of one output channel — a convolution's [C_out][C_in][kh][kw]
 * is {C_out, C_in, kh, kw}, a linear layer's [C_out][C_in] is {C_out, C_in, 1, 1}. Either
 * layout is accepted (an output channel's K weights are contiguous in both), and any
 * dtype (the arithmetic is fp32 or better). bias: C_out floats, NULL for a layer without
 * bias. gamma, beta: NULL means 1 and 0. bias_out: C_out floats, required (the folded
 * layer always has a bias). weight_out may equal weight and bias_out may equal bias
 * (folding in place); no other overlap. */
BNORM_API bnorm_status_t bnorm_fold_into_weights(
    bnorm_handle_t handle, const bnorm_tensor_t* weight_desc, const void* weight, const float* bias,
    const float* gamma, const float* beta, const float* running_mean, const float* running_var,
    float eps, void* weight_out, float* bias_out);

/* ---- The per-sample norms: GroupNorm, InstanceNorm, LayerNorm --------------------
 *
 * Statistics per sample instead of per channel over the batch, on the same Welford
 * engine, with PyTorch's definitions: the biased variance (the mean of squared
 * deviations), eps inside the square root, no running statistics. There is no minimum
 * group size: a group of one value has variance 0 and normalises to beta.
 * The saved statistics (save_mean, save_invstd: NULL for none) are what the backward
 * calls take; they are indexed [n][group]. In-place: y may equal x; dx may equal dy. */

/* GroupNorm: the c channels form `groups` groups of c/groups consecutive channels (groups
 * divides c). Per sample n and group g, over its L = (c/groups)*h*w values:
 *   y = (x - mean_ng) / sqrt(var_ng + eps) * gamma_c + beta_c
 * gamma, beta: c floats (per channel, as torch.nn.GroupNorm), NULL means 1 and 0.
 * save_mean, save_invstd: n*groups floats, [n*groups + g]. */
BNORM_API bnorm_status_t bnorm_group_norm_forward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, int64_t groups, const void* x, void* y,
    const float* gamma, const float* beta, float eps, float* save_mean, float* save_invstd);

/* Backward of bnorm_group_norm_forward. With xhat = (x - mean_ng) * invstd_ng and
 * g = gamma_c * dy, per group over its L values:
 *   dx = invstd_ng * (g - sum(g)/L - xhat * sum(g * xhat)/L)
 *   dgamma_c = sum(dy * xhat),  dbeta_c = sum(dy)        (over the batch and h*w)
 * gamma: NULL means 1. dgamma, dbeta: NULL when not wanted. dx is required. */
BNORM_API bnorm_status_t bnorm_group_norm_backward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, int64_t groups, const void* x,
    const void* dy, const float* gamma, const float* save_mean, const float* save_invstd, void* dx,
    float* dgamma, float* dbeta);

/* InstanceNorm: GroupNorm with groups = c, each channel of each sample normalised over its
 * h*w values (torch.nn.InstanceNorm2d with affine=True, track_running_stats=False).
 * Saved statistics: n*c floats, [n_i*c + c_i]. It runs the group-norm operations' variants. */
BNORM_API bnorm_status_t bnorm_instance_norm_forward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, void* y, const float* gamma,
    const float* beta, float eps, float* save_mean, float* save_invstd);
BNORM_API bnorm_status_t bnorm_instance_norm_backward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* dy,
    const float* gamma, const float* save_mean, const float* save_invstd, void* dx, float* dgamma,
    float* dbeta);

/* LayerNorm over each sample's K = c*h*w values (torch.nn.LayerNorm with
 * normalized_shape = (c, h, w)); the transformer's LayerNorm over the last dimension D of
 * an (N, D) input is c = D, h = w = 1:
 *   y = (x - mean_n) / sqrt(var_n + eps) * gamma_k + beta_k
 * gamma, beta: K floats, elementwise, indexed k = (c_i*h + h_i)*w + w_i whatever the
 * layout (PyTorch's weight of shape (c, h, w)); NULL means 1 and 0.
 * save_mean, save_invstd: n floats. */
BNORM_API bnorm_status_t bnorm_layer_norm_forward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, void* y, const float* gamma,
    const float* beta, float eps, float* save_mean, float* save_invstd);

/* Backward of bnorm_layer_norm_forward: as bnorm_group_norm_backward with one group per
 * sample and g = gamma_k * dy; dgamma_k = sum over the batch of dy * xhat, dbeta_k =
 * sum of dy (K floats each, NULL when not wanted). */
BNORM_API bnorm_status_t bnorm_layer_norm_backward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* dy,
    const float* gamma, const float* save_mean, const float* save_invstd, void* dx, float* dgamma,
    float* dbeta);

/* ---- Synchronized batch norm: one batch spread over several processes ---------------
 *
 * Each process (rank) holds a slice of the batch: any n, 0 included, and the same c, h,
 * w, layout and dtype on every rank. Statistics travel as per-channel Welford states,
 * never as invstd (a variance rebuilt from a rounded invstd loses digits, and states of
 * uneven slices cannot be averaged). Exchanged buffers are plain float arrays, so any
 * communication library moves them (MPI_Allgather / ncclAllGather, MPI_Allreduce /
 * ncclAllReduce with float elements); bnorm itself depends on none.
 *
 *   forward:  bnorm_sync_local_stats -> all-gather (3*c floats per rank, in rank order)
 *             -> bnorm_sync_merge_stats -> bnorm_sync_forward
 *   backward: bnorm_sync_backward_sums -> all-reduce with sum (2*c floats)
 *             -> bnorm_sync_backward
 *
 * A state is three floats per channel: stats[3*c_i] = count, stats[3*c_i + 1] = mean,
 * stats[3*c_i + 2] = M2 = sum((x - mean)^2). Counts are exact up to 2^24 values per
 * channel over all ranks (then rounded, which only enters as a ratio). Every rank merges
 * the same gathered buffer in rank order, so all ranks hold bitwise the same global
 * statistics, and their outputs and running statistics equal a single process's batch
 * norm over the concatenated batch up to rounding. bnorm_sync_forward and
 * bnorm_sync_backward must also run on a rank with n = 0: the running statistics and the
 * parameter gradients of every rank then stay identical. */

/* Per channel, the Welford state of this rank's n*h*w values: local_stats receives 3*c
 * floats (count, mean, M2); a rank with n = 0 gives count = mean = M2 = 0. */
BNORM_API bnorm_status_t bnorm_sync_local_stats(bnorm_handle_t handle, const bnorm_tensor_t* desc,
                                                const void* x, float* local_stats);

/* Merges the states of `ranks` ranks, gathered one after another (ranks*3*c floats, rank
 * r's at 3*c*r), channel by channel with Chan's formula in rank order, into global_stats
 * (3*c floats, which must not overlap gathered). Empty ranks contribute nothing. */
BNORM_API bnorm_status_t bnorm_sync_merge_stats(bnorm_handle_t handle, int64_t c, int64_t ranks,
                                                const float* gathered, float* global_stats);

/* Forward in training mode with the merged statistics: per channel, mean_c and
 * var_c = M2_c / count_c (biased) from global_stats, and y, save_mean, save_invstd as in
 * bnorm_forward_training. running_mean and running_var (NULL for none, else both) blend
 * the mean and the unbiased variance M2_c / (count_c - 1) of the whole batch, where
 * count_c >= 2; where the whole batch has fewer than 2 values they are left untouched.
 * With n = 0 this rank writes no y but still its saved and running statistics. */
BNORM_API bnorm_status_t bnorm_sync_forward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, void* y, const float* gamma,
    const float* beta, const float* global_stats, float momentum, float eps, float* running_mean,
    float* running_var, float* save_mean, float* save_invstd);

/* Per channel over this rank's values, the two sums of the backward: local_sums receives
 * 2*c floats, [2*c_i] = sum(dy) and [2*c_i + 1] = sum(dy * (x - save_mean_c)); zeros for
 * n = 0. save_mean is bnorm_sync_forward's. */
BNORM_API bnorm_status_t bnorm_sync_backward_sums(bnorm_handle_t handle, const bnorm_tensor_t* desc,
                                                  const void* x, const void* dy, const float* save_mean,
                                                  float* local_sums);

/* Backward with the all-reduced sums (global_sums, 2*c floats) and the global count from
 * global_stats: with M = count_c, xhat = (x - save_mean_c) * save_invstd_c,
 *   dbeta_c = sum(dy),  dgamma_c = sum(dy * (x - mean)) * save_invstd_c
 *   dx = gamma_c * save_invstd_c / M * (M * dy - dbeta_c - xhat * dgamma_c)
 * which is bnorm_backward over the concatenated batch. dgamma, dbeta: NULL when not
 * wanted (the same values on every rank). dx may alias dy, not x. */
BNORM_API bnorm_status_t bnorm_sync_backward(
    bnorm_handle_t handle, const bnorm_tensor_t* desc, const void* x, const void* dy,
    const float* gamma, const float* save_mean, const float* save_invstd, const float* global_stats,
    const float* global_sums, void* dx, float* dgamma, float* dbeta);

/* ---- Dispatch: which kernel runs, and why ----------------------------------------
 *
 * Each CUDA operation has registered kernel variants, each with a launch policy. A
 * variant spec is "name" or "name:tT:vV:sS" (threads per CTA, values per vector load,
 * CTAs per channel), e.g. "two_pass_split:t256:v4:s8"; parts left out take the
 * heuristic's value. The choice for a call, in order: a spec forced on the handle
 * (bnorm_set_variant) or by the environment (BNORM_VARIANT, applied to the ops that
 * have a variant of that name), an entry of the tuning cache, the heuristic.
 * BNORM_VERBOSE=1 prints every choice to stderr. The CPU backend has two
 * implementations of every operation: "cpu_fast", the default (float32 arithmetic in
 * vectorized loops, float64 where partial results meet, on several threads), and
 * "cpu_reference" (float64 throughout, one thread: the oracle the tests hold the fast
 * path and the CUDA kernels to); BNORM_VARIANT=cpu_reference selects it for every op. */
typedef enum {
  BNORM_CHOICE_OVERRIDE = 0,  /* bnorm_set_variant or BNORM_VARIANT */
  BNORM_CHOICE_CACHE = 1,     /* the tuning cache's entry for this exact key */
  BNORM_CHOICE_NEAREST = 2,   /* the tuning cache's entry of the nearest shape */
  BNORM_CHOICE_HEURISTIC = 3,
  BNORM_CHOICE_ONLY = 4       /* the backend has one implementation */
} bnorm_choice_t;

/* Forces spec for op on this handle (NULL clears it). A spec naming no variant of op
 * is rejected with BNORM_STATUS_INVALID_VALUE; a call the forced variant does not
 * support fails with BNORM_STATUS_NOT_SUPPORTED rather than running another. */
BNORM_API bnorm_status_t bnorm_set_variant(bnorm_handle_t handle, bnorm_op_t op, const char* spec);

/* The full spec a call with this descriptor would run, and why. pointers_aligned16 says
 * whether all its tensor pointers are 16-byte aligned (cudaMalloc's are). spec receives
 * at most spec_len bytes, NUL-terminated. */
BNORM_API bnorm_status_t bnorm_query_variant(bnorm_handle_t handle, bnorm_op_t op,
                                             const bnorm_tensor_t* desc, int pointers_aligned16,
                                             char* spec, size_t spec_len, bnorm_choice_t* why);

/* Every configuration (full spec) that supports the call, one per line, the heuristic's
 * first: the tuning space. Writes at most buf_len bytes, NUL-terminated; *count gets
 * the number of configurations, and *needed (if not NULL) the bytes the whole list
 * takes, so a first call with buf_len = 0 sizes the buffer. */
BNORM_API bnorm_status_t bnorm_list_variants(bnorm_handle_t handle, bnorm_op_t op,
                                             const bnorm_tensor_t* desc, int pointers_aligned16,
                                             char* buf, size_t buf_len, int* count,
                                             size_t* needed);

/* bnorm_query_variant and bnorm_list_variants for an operation with a group count: the
 * group-norm operations' configurations depend on it (for instance norm it is c), and the
 * plain forms reject them. Other operations ignore groups. The tuning cache holds no
 * group-norm entries (its key has no group count): their choice is an override or the
 * heuristic. */
BNORM_API bnorm_status_t bnorm_query_variant_grouped(bnorm_handle_t handle, bnorm_op_t op,
                                                     const bnorm_tensor_t* desc, int64_t groups,
                                                     int pointers_aligned16, char* spec,
                                                     size_t spec_len, bnorm_choice_t* why);
BNORM_API bnorm_status_t bnorm_list_variants_grouped(bnorm_handle_t handle, bnorm_op_t op,
                                                     const bnorm_tensor_t* desc, int64_t groups,
                                                     int pointers_aligned16, char* buf,
                                                     size_t buf_len, int* count, size_t* needed);

/* ---- Tuning cache: measured choices per GPU and shape ---------------------------
 *
 * bnorm-tune measures every configuration of bnorm_list_variants on a GPU and writes
 * the fastest correct one (plus two runners-up) per (GPU name, compute capability, SM
 * count, op, dtype, layout, N, C, H, W, 16-byte alignment) to a JSON file. Dispatch
 * consults the loaded file after an override and before the heuristic:
 *   1. the entry of the exact key: its winner, else the first runner-up whose variant
 *      supports the call (BNORM_CHOICE_CACHE);
 *   2. the entry of the nearest shape of the same GPU, op, dtype and layout, by log
 *      distance on N*H*W and C, both within 4x (BNORM_CHOICE_NEAREST);
 *   3. the heuristic.
 * The cache is process-wide and shared by all handles. Unless bnorm_tuning_load or
 * bnorm_tuning_clear was called first, the file named by the environment variable
 * BNORM_TUNING_CACHE is loaded when a CUDA call first dispatches. A file that is
 * missing, corrupt, of another format version, written by another major.minor version
 * of bnorm, or without an entry for the GPU in use gives one warning on stderr
 * ("bnorm: warning: ...") and dispatch uses the heuristic; it never fails a call.
 * Both functions are thread-safe and may be called at any time: a call dispatching
 * on another thread sees the old cache or the new one. */

/* Replaces the process-wide tuning cache with the file at path (then
 * BNORM_TUNING_CACHE is no longer read). If the file cannot be used the cache is left
 * empty (the heuristic), one warning is printed, and BNORM_STATUS_INVALID_VALUE is
 * returned with the reason in bnorm_last_error(). A NULL or empty path is rejected and
 * changes nothing. */
BNORM_API bnorm_status_t bnorm_tuning_load(const char* path);

/* Empties the process-wide tuning cache: dispatch uses the heuristic, and
 * BNORM_TUNING_CACHE is no longer read. */
BNORM_API bnorm_status_t bnorm_tuning_clear(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BNORM_BNORM_H */
