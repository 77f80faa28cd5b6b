// Synchronized batch norm across real processes: run by ctest as
// `mpirun -np 4 test_sync_mpi` (OpenMPI) on the CPU backend. Every rank builds the same
// batch, keeps its own uneven slice (5, 0, 3 and 1 samples: rank 1 is empty), and runs
//   (a) bnorm.h's protocol with the collectives written out (MPI_Allgather of the states,
//       MPI_Allreduce of the gradient sums), and
//   (b) the bnorm_sync_mpi.h helpers,
// then checks its slice of y and dx, its running and saved statistics and the parameter
// gradients against single-process batch norm over the concatenated batch, and that all
// ranks hold bitwise the same running statistics and gradients (with the helpers, whose
// sums run in rank order). Exit status 0 on every rank when all checks pass.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "bnorm/bnorm_sync_mpi.h"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

int g_failures = 0;
int g_rank = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", g_rank, what.c_str());
  }
}

void check_ok(bnorm_status_t s, const char* call) {
  check(s == BNORM_STATUS_SUCCESS, std::string(call) + ": " + bnorm_status_string(s) + " " + bnorm_last_error());
}

// Whether every rank holds bitwise the same v.
bool same_on_all_ranks(const std::vector<float>& v, MPI_Comm comm, int ranks) {
  std::vector<float> all(v.size() * ranks);
  MPI_Allgather(v.data(), static_cast<int>(v.size()), MPI_FLOAT, all.data(), static_cast<int>(v.size()), MPI_FLOAT,
                comm);
  for (int r = 1; r < ranks; ++r)
    for (size_t i = 0; i < v.size(); ++i)
      if (std::memcmp(&all[r * v.size() + i], &all[i], sizeof(float)) != 0) return false;
  return true;
}

struct Slice {
  std::vector<float> y, dx, rm, rv, sm, si, dg, db;
};

void run(bnorm_handle_t h, MPI_Comm comm, int ranks, bnorm_layout_t layout, bnorm_dtype_t dtype, bool helpers) {
  const int64_t c = 4, hh = 5, ww = 3, per_sample = c * hh * ww;
  const int64_t pattern[4] = {5, 0, 3, 1};
  std::vector<int64_t> sizes(ranks), first(ranks, 0);
  for (int r = 0; r < ranks; ++r) sizes[r] = pattern[r % 4];
  for (int r = 1; r < ranks; ++r) first[r] = first[r - 1] + sizes[r - 1];
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const std::string where = std::string(layout == BNORM_LAYOUT_NCHW ? "nchw " : "nhwc ") + dtype_name(dtype) +
                            (helpers ? " helpers" : " raw");

  // The same batch on every rank; values exactly representable in the dtype.
  const bnorm_tensor_t whole{total, c, hh, ww, layout, dtype};
  const auto x = random_input(whole, 7, 2.0), dy = random_input(whole, 8);
  const auto gamma = random_vector(c, 9, 0.5, 1.5), beta = random_vector(c, 10, -1, 1);
  const auto rm0 = random_vector(c, 11, -1, 1), rv0 = random_vector(c, 12, 0.5, 2);
  const auto xs = to_storage(x, dtype), dys = to_storage(dy, dtype);
  const size_t es = elem_size(dtype);

  // Single-process batch norm over the whole batch.
  std::vector<unsigned char> y_ref(xs.size()), dx_ref(xs.size());
  std::vector<float> rm_ref = rm0, rv_ref = rv0, sm_ref(c), si_ref(c), dg_ref(c), db_ref(c);
  check_ok(bnorm_forward_training(h, &whole, xs.data(), y_ref.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                  rm_ref.data(), rv_ref.data(), sm_ref.data(), si_ref.data()),
           "reference forward");
  check_ok(bnorm_backward(h, &whole, xs.data(), dys.data(), gamma.data(), sm_ref.data(), si_ref.data(),
                          dx_ref.data(), dg_ref.data(), db_ref.data()),
           "reference backward");

  // This rank's slice.
  const bnorm_tensor_t mine{sizes[g_rank], c, hh, ww, layout, dtype};
  const size_t off = static_cast<size_t>(first[g_rank] * per_sample) * es, bytes = sizes[g_rank] * per_sample * es;
  const void* x_mine = bytes ? xs.data() + off : nullptr;
  const void* dy_mine = bytes ? dys.data() + off : nullptr;
  std::vector<unsigned char> y(bytes), dx(bytes);
  Slice s{{}, {}, rm0, rv0, std::vector<float>(c), std::vector<float>(c), std::vector<float>(c), std::vector<float>(c)};
  std::vector<float> global(3 * c);
  if (helpers) {
    std::vector<float> scratch(bnorm_mpi_sync_scratch_floats(c, ranks));
    check_ok(bnorm_mpi_sync_forward(h, comm, &mine, x_mine, bytes ? y.data() : nullptr, gamma.data(), beta.data(),
                                    0.1f, 1e-5f, s.rm.data(), s.rv.data(), s.sm.data(), s.si.data(), global.data(),
                                    scratch.data()),
             "bnorm_mpi_sync_forward");
    check_ok(bnorm_mpi_sync_backward(h, comm, &mine, x_mine, dy_mine, gamma.data(), s.sm.data(), s.si.data(),
                                     global.data(), bytes ? dx.data() : nullptr, s.dg.data(), s.db.data(),
                                     scratch.data()),
             "bnorm_mpi_sync_backward");
  } else {
    std::vector<float> local(3 * c), gathered(3 * c * ranks), sums(2 * c), all_sums(2 * c);
    check_ok(bnorm_sync_local_stats(h, &mine, x_mine, local.data()), "bnorm_sync_local_stats");
    MPI_Allgather(local.data(), 3 * c, MPI_FLOAT, gathered.data(), 3 * c, MPI_FLOAT, comm);
    check_ok(bnorm_sync_merge_stats(h, c, ranks, gathered.data(), global.data()), "bnorm_sync_merge_stats");
    check_ok(bnorm_sync_forward(h, &mine, x_mine, bytes ? y.data() : nullptr, gamma.data(), beta.data(),
                                global.data(), 0.1f, 1e-5f, s.rm.data(), s.rv.data(), s.sm.data(), s.si.data()),
             "bnorm_sync_forward");
    check_ok(bnorm_sync_backward_sums(h, &mine, x_mine, dy_mine, s.sm.data(), sums.data()), "bnorm_sync_backward_sums");
    MPI_Allreduce(sums.data(), all_sums.data(), 2 * c, MPI_FLOAT, MPI_SUM, comm);
    check_ok(bnorm_sync_backward(h, &mine, x_mine, dy_mine, gamma.data(), s.sm.data(), s.si.data(), global.data(),
                                 all_sums.data(), bytes ? dx.data() : nullptr, s.dg.data(), s.db.data()),
             "bnorm_sync_backward");
  }

  // Outputs: this rank's slice of the single-process tensors, per channel.
  const double tol = dtype == BNORM_DTYPE_F32 ? 1e-5 : 4 * unit_roundoff(dtype);
  if (bytes) {
    const auto yv = from_storage(y.data(), sizes[g_rank] * per_sample, dtype);
    const auto yr = from_storage(y_ref.data() + off, sizes[g_rank] * per_sample, dtype);
    check(max_channel_rel_error(mine, yv, std::vector<double>(yr.begin(), yr.end())) < tol, where + ": y");
    const auto dxv = from_storage(dx.data(), sizes[g_rank] * per_sample, dtype);
    const auto dxr = from_storage(dx_ref.data() + off, sizes[g_rank] * per_sample, dtype);
    check(rel_error(dxv, std::vector<double>(dxr.begin(), dxr.end())) < 10 * tol, where + ": dx");
  }
  auto close = [&](const std::vector<float>& a, const std::vector<float>& b, double t) {
    return rel_error(a, std::vector<double>(b.begin(), b.end())) < t;
  };
  check(close(s.rm, rm_ref, 1e-6), where + ": running_mean");
  check(close(s.rv, rv_ref, 1e-6), where + ": running_var");
  check(close(s.sm, sm_ref, 1e-6), where + ": save_mean");
  check(close(s.si, si_ref, 1e-6), where + ": save_invstd");
  check(close(s.dg, dg_ref, 1e-5), where + ": dgamma");
  check(close(s.db, db_ref, 1e-5), where + ": dbeta");
  // The merge runs in rank order on every rank: statistics are identical everywhere. The
  // helpers also add the gradient sums in rank order.
  check(same_on_all_ranks(global, comm, ranks), where + ": global statistics differ between ranks");
  check(same_on_all_ranks(s.rm, comm, ranks) && same_on_all_ranks(s.rv, comm, ranks),
        where + ": running statistics differ between ranks");
  if (helpers)
    check(same_on_all_ranks(s.dg, comm, ranks) && same_on_all_ranks(s.db, comm, ranks),
          where + ": parameter gradients differ between ranks");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  bnorm_handle_t h = nullptr;
  check_ok(bnorm_create(&h, BNORM_BACKEND_CPU, 0), "bnorm_create");
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC})
    for (bnorm_dtype_t dtype : {BNORM_DTYPE_F32, BNORM_DTYPE_BF16})
      for (bool helpers : {false, true}) run(h, MPI_COMM_WORLD, ranks, layout, dtype, helpers);
  bnorm_destroy(h);
  int failures = 0;
  MPI_Allreduce(&g_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0)
    std::printf("test_sync_mpi: %d ranks, batch split 5/0/3/1: %s\n", ranks,
                failures ? "FAILED" : "outputs, statistics and gradients equal one process's");
  MPI_Finalize();
  return failures ? 1 : 0;
}
