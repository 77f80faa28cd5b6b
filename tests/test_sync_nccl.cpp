// Synchronized batch norm on CUDA buffers over NCCL (bnorm_sync_nccl.h): one thread and
// one communicator rank per visible GPU (up to 4; a single GPU is a one-rank
// communicator, which still runs the whole path: kernels and collectives queued on the
// handle's stream). The batch is split unevenly, one rank empty when there are several;
// every rank's slice of y and dx, its statistics and its gradients are checked against
// the CPU backend's batch norm over the whole batch. Skips without a device, and
// without NCCL's library: it is loaded at run time (libnccl.so.2, or the file named by
// BNORM_NCCL_LIBRARY), so the binary runs on a machine whose CUDA has no NCCL.
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bnorm/bnorm.h"
#include "bnorm/bnorm_sync_nccl.h"
#include "device_buffer.hpp"
#include "reference.hpp"

// The NCCL functions this test and bnorm_sync_nccl.h call, forwarded to the library
// loaded by nccl_loaded().
namespace nccl_shim {
void* lib = nullptr;
template <class F>
F fn(const char* name) {
  return reinterpret_cast<F>(dlsym(lib, name));
}
}  // namespace nccl_shim

extern "C" {
ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int* devlist) {
  return nccl_shim::fn<ncclResult_t (*)(ncclComm_t*, int, const int*)>("ncclCommInitAll")(comms, ndev, devlist);
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  return nccl_shim::fn<ncclResult_t (*)(ncclComm_t)>("ncclCommDestroy")(comm);
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  return nccl_shim::fn<ncclResult_t (*)(const ncclComm_t, int*)>("ncclCommCount")(comm, count);
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t t, ncclComm_t comm,
                           cudaStream_t stream) {
  return nccl_shim::fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t)>(
      "ncclAllGather")(send, recv, count, t, comm, stream);
}
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  return nccl_shim::fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                        cudaStream_t)>("ncclAllReduce")(send, recv, count, t, op, comm, stream);
}
const char* ncclGetErrorString(ncclResult_t r) {
  return nccl_shim::fn<const char* (*)(ncclResult_t)>("ncclGetErrorString")(r);
}
}

namespace {

using namespace bnorm_test;

// Loads NCCL once; false (and why) when there is none.
bool nccl_loaded(std::string* why) {
  if (nccl_shim::lib) return true;
  const char* path = std::getenv("BNORM_NCCL_LIBRARY");
  nccl_shim::lib = dlopen(path && *path ? path : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!nccl_shim::lib) *why = dlerror();
  return nccl_shim::lib != nullptr;
}

struct RankResult {
  std::string error;
  std::vector<float> y, dx, rm, rv, dg, db;
};

TEST(SyncNccl, EveryRankEqualsOneProcess) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    GTEST_SKIP() << "no CUDA device";
  }
  std::string why;
  if (!nccl_loaded(&why)) GTEST_SKIP() << "no NCCL library (set BNORM_NCCL_LIBRARY): " << why;
  const int ranks = std::min(devices, 4);
  const std::vector<int64_t> pattern = ranks == 1 ? std::vector<int64_t>{6} : std::vector<int64_t>{5, 0, 3, 1};
  std::vector<int64_t> sizes(ranks), first(ranks, 0);
  for (int r = 0; r < ranks; ++r) sizes[r] = pattern[r % pattern.size()];
  for (int r = 1; r < ranks; ++r) first[r] = first[r - 1] + sizes[r - 1];
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const int64_t c = 16, hh = 9, ww = 7, per_sample = c * hh * ww;

  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC}) {
    SCOPED_TRACE(layout == BNORM_LAYOUT_NCHW ? "nchw" : "nhwc");
    const bnorm_tensor_t whole{total, c, hh, ww, layout, BNORM_DTYPE_F32};
    const auto x = random_tensor(whole, 1, 2.0), dy = random_tensor(whole, 2);
    const auto gamma = random_vector(c, 3, 0.5, 1.5), beta = random_vector(c, 4, -1, 1);
    const auto rm0 = random_vector(c, 5, -1, 1), rv0 = random_vector(c, 6, 0.5, 2);
    bnorm_handle_t cpu = nullptr;
    ASSERT_EQ(bnorm_create(&cpu, BNORM_BACKEND_CPU, 0), BNORM_STATUS_SUCCESS);
    for (int op = BNORM_OP_FORWARD_TRAINING; op <= BNORM_OP_SYNC_BACKWARD; ++op)
      ASSERT_EQ(bnorm_set_variant(cpu, static_cast<bnorm_op_t>(op), "cpu_reference"), BNORM_STATUS_SUCCESS);
    std::vector<float> y_ref(x.size()), dx_ref(x.size()), rm_ref = rm0, rv_ref = rv0, sm(c), si(c), dg_ref(c), db_ref(c);
    ASSERT_EQ(bnorm_forward_training(cpu, &whole, x.data(), y_ref.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                     rm_ref.data(), rv_ref.data(), sm.data(), si.data()),
              BNORM_STATUS_SUCCESS);
    ASSERT_EQ(bnorm_backward(cpu, &whole, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx_ref.data(),
                             dg_ref.data(), db_ref.data()),
              BNORM_STATUS_SUCCESS);
    bnorm_destroy(cpu);

    std::vector<ncclComm_t> comms(ranks);
    std::vector<int> devs(ranks);
    std::iota(devs.begin(), devs.end(), 0);
    ASSERT_EQ(ncclCommInitAll(comms.data(), ranks, devs.data()), ncclSuccess);
    std::vector<RankResult> results(ranks);
    // One thread per rank: NCCL's collectives from one thread would need group calls
    // around every rank's, and the helpers interleave kernels with collectives.
    auto rank_main = [&](int r) {
      RankResult& out = results[r];
      auto fail = [&](const std::string& what) { out.error = what + ": " + bnorm_last_error(); };
      if (cudaSetDevice(r) != cudaSuccess) return fail("cudaSetDevice");
      bnorm_handle_t h = nullptr;
      if (bnorm_create(&h, BNORM_BACKEND_CUDA, r) != BNORM_STATUS_SUCCESS) return fail("bnorm_create");
      cudaStream_t stream;
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      bnorm_set_stream(h, stream);
      const bnorm_tensor_t d{sizes[r], c, hh, ww, layout, BNORM_DTYPE_F32};
      const int64_t ne = std::max<int64_t>(1, sizes[r] * per_sample);
      DeviceBuffer d_x(ne), d_dy(ne), d_y(ne), d_dx(ne), d_g(c), d_b(c), d_rm(c), d_rv(c), d_sm(c), d_si(c), d_dg(c),
          d_db(c), d_global(3 * c), d_scratch(bnorm_nccl_sync_scratch_floats(c, ranks));
      if (sizes[r]) {
        d_x.upload(std::vector<float>(x.begin() + first[r] * per_sample, x.begin() + (first[r] + sizes[r]) * per_sample));
        d_dy.upload(
            std::vector<float>(dy.begin() + first[r] * per_sample, dy.begin() + (first[r] + sizes[r]) * per_sample));
      }
      d_g.upload(gamma);
      d_b.upload(beta);
      d_rm.upload(rm0);
      d_rv.upload(rv0);
      if (bnorm_nccl_sync_forward(h, comms[r], &d, d_x.raw(), d_y.raw(), d_g.get(), d_b.get(), 0.1f, 1e-5f,
                                  d_rm.get(), d_rv.get(), d_sm.get(), d_si.get(), d_global.get(),
                                  d_scratch.get()) != BNORM_STATUS_SUCCESS)
        return fail("bnorm_nccl_sync_forward");
      if (bnorm_nccl_sync_backward(h, comms[r], &d, d_x.raw(), d_dy.raw(), d_g.get(), d_sm.get(), d_si.get(),
                                   d_global.get(), d_dx.raw(), d_dg.get(), d_db.get(),
                                   d_scratch.get()) != BNORM_STATUS_SUCCESS)
        return fail("bnorm_nccl_sync_backward");
      if (cudaStreamSynchronize(stream) != cudaSuccess) return fail("cudaStreamSynchronize");
      out.y = d_y.download();
      out.dx = d_dx.download();
      out.rm = d_rm.download();
      out.rv = d_rv.download();
      out.dg = d_dg.download();
      out.db = d_db.download();
      bnorm_destroy(h);
      cudaStreamDestroy(stream);
    };
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r) threads.emplace_back(rank_main, r);
    for (auto& t : threads) t.join();
    for (ncclComm_t comm : comms) ncclCommDestroy(comm);

    for (int r = 0; r < ranks; ++r) {
      SCOPED_TRACE("rank " + std::to_string(r) + " holding " + std::to_string(sizes[r]) + " samples");
      const RankResult& res = results[r];
      ASSERT_EQ(res.error, "");
      if (sizes[r]) {
        const bnorm_tensor_t d{sizes[r], c, hh, ww, layout, BNORM_DTYPE_F32};
        const auto part = [&](const std::vector<float>& v) {
          return std::vector<double>(v.begin() + first[r] * per_sample, v.begin() + (first[r] + sizes[r]) * per_sample);
        };
        EXPECT_LT(max_channel_rel_error(d, res.y, part(y_ref)), 2e-5);
        EXPECT_LT(rel_error(res.dx, part(dx_ref)), 1e-4);
      }
      EXPECT_LT(rel_error(res.rm, std::vector<double>(rm_ref.begin(), rm_ref.end())), 1e-5);
      EXPECT_LT(rel_error(res.rv, std::vector<double>(rv_ref.begin(), rv_ref.end())), 1e-5);
      EXPECT_LT(rel_error(res.dg, std::vector<double>(dg_ref.begin(), dg_ref.end())), 1e-4);
      EXPECT_LT(rel_error(res.db, std::vector<double>(db_ref.begin(), db_ref.end())), 1e-4);
      // The same merge and the same all-reduce everywhere: identical across ranks.
      EXPECT_EQ(res.rm, results[0].rm);
      EXPECT_EQ(res.dg, results[0].dg);
    }
  }
}

}  // namespace
