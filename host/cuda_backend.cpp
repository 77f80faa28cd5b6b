// The CUDA side of a handle: device discovery, the workspace, the stream, and running
// a dispatched variant.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda_backend.hpp"
#include "handle.hpp"

namespace bnorm {

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return ok_status();
  return make_status(BNORM_STATUS_CUDA_ERROR, "%s: %s (%s)", what, cudaGetErrorName(e),
                     cudaGetErrorString(e));
}

namespace {
// Enough for split reductions over a few thousand channels; larger calls grow it.
constexpr int64_t kInitialTickets = 16 * 1024;
constexpr size_t kInitialScratch = size_t{1} << 20;
constexpr size_t align256(size_t b) { return (b + 255) / 256 * 256; }
}  // namespace

Status cuda_create(bnorm_handle* h, int device) {
  int count = 0;
  // Without a driver the runtime reports an error rather than zero devices: either way
  // there is nothing to run on.
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // do not leave a sticky error for the caller
    return make_status(BNORM_STATUS_NO_DEVICE, "no CUDA device available (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
  }
  if (device < 0 || device >= count)
    return make_status(BNORM_STATUS_INVALID_VALUE, "device %d out of range [0, %d)", device, count);

  DeviceGuard guard(device);
  cudaDeviceProp prop{};
  BNORM_TRY(cuda_status(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  h->device = device;
  h->gpu_name = prop.name;
  h->cc_major = prop.major;
  h->cc_minor = prop.minor;
  h->dev.sm_count = prop.multiProcessorCount;
  h->dev.max_threads_per_sm = prop.maxThreadsPerMultiProcessor;
  BNORM_TRY(cuda_status(cudaEventCreateWithFlags(&h->stream_switch, cudaEventDisableTiming),
                        "cudaEventCreate"));
  return cuda_reserve_workspace(h, kInitialTickets, kInitialScratch);
}

void cuda_destroy(bnorm_handle* h) {
  DeviceGuard guard(h->device);
  if (h->workspace.tickets) {
    cudaStreamSynchronize(h->stream);
    cudaFree(h->workspace.tickets);
  }
  if (h->stream_switch) cudaEventDestroy(h->stream_switch);
  h->workspace = {};
  h->stream_switch = nullptr;
}

Status cuda_set_stream(bnorm_handle* h, cudaStream_t stream) {
  if (stream == h->stream) return ok_status();
  DeviceGuard guard(h->device);
  // The workspace is shared by every call of the handle: work queued on the old stream
  // must finish before the new stream touches it.
  BNORM_TRY(cuda_status(cudaEventRecord(h->stream_switch, h->stream), "cudaEventRecord"));
  BNORM_TRY(cuda_status(cudaStreamWaitEvent(stream, h->stream_switch, 0), "cudaStreamWaitEvent"));
  h->stream = stream;
  return ok_status();
}

Status cuda_reserve_workspace(bnorm_handle* h, int64_t tickets, size_t scratch) {
  kern::Workspace& w = h->workspace;
  if (tickets <= w.ticket_count && scratch <= w.scratch_bytes) return ok_status();
  tickets = std::max(tickets, w.ticket_count);
  scratch = std::max(scratch, w.scratch_bytes * 2);
  if (w.tickets) {
    BNORM_TRY(cuda_status(cudaStreamSynchronize(h->stream), "cudaStreamSynchronize"));
    cudaFree(w.tickets);
    w = {};
  }
  // One allocation: the ticket region first, at a fixed size, so scratch never moves
  // over it.
  const size_t ticket_bytes = align256(sizeof(unsigned int) * static_cast<size_t>(tickets));
  const size_t bytes = ticket_bytes + scratch;
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return make_status(BNORM_STATUS_ALLOC_FAILED, "cannot allocate %zu bytes of workspace", bytes);
  }
  const cudaError_t e = cudaMemsetAsync(p, 0, ticket_bytes, h->stream);
  if (e != cudaSuccess) {
    cudaFree(p);
    return cuda_status(e, "cudaMemsetAsync");
  }
  w.tickets = static_cast<unsigned int*>(p);
  w.ticket_count = tickets;
  w.scratch = static_cast<char*>(p) + ticket_bytes;
  w.scratch_bytes = scratch;
  return ok_status();
}

Status cuda_check_pointer(const bnorm_handle& h, const void* p, const char* name) {
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s is not a pointer CUDA knows (%s)", name,
                       cudaGetErrorString(e));
  }
  switch (attr.type) {
    case cudaMemoryTypeDevice:
      if (attr.device != h.device)
        return make_status(BNORM_STATUS_INVALID_VALUE,
                           "%s is memory of device %d, the handle is bound to device %d", name,
                           attr.device, h.device);
      return ok_status();
    case cudaMemoryTypeManaged:
    case cudaMemoryTypeHost:  // pinned and mapped: the device can address it
      return ok_status();
    default:
      return make_status(BNORM_STATUS_INVALID_VALUE,
                         "%s is host memory the device cannot address (the handle is CUDA)", name);
  }
}

Status cuda_run(bnorm_handle* h, const Problem& pr, const OpArgs& args) {
  DeviceGuard guard(h->device);
  Choice c;
  BNORM_TRY(choose(*h, pr, &c));
  BNORM_TRY(cuda_reserve_workspace(h, pr.shape.c, c.variant->workspace(pr, c.policy)));
  const cudaError_t e = c.variant->launch(pr, c.policy, h->dev, args, h->workspace, h->stream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return make_status(BNORM_STATUS_CUDA_ERROR, "launch of %s failed: %s",
                       format_spec(*c.variant, c.policy).c_str(), cudaGetErrorString(e));
  }
  return ok_status();
}

}  // namespace bnorm
