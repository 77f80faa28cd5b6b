// The CUDA backend's hardening, every configuration dispatch lists (bnorm_list_variants
// + bnorm_set_variant), against the CPU backend:
//   - every kind of bad call (bad_calls.hpp) and the device-only ones (host pointers, a
//     forced configuration that does not support the call, a layout no kernel has)
//     fails with its status and message and leaves every byte of device memory as it was;
//   - a NaN or Inf in one channel poisons exactly that channel, the others bit for bit as
//     in a clean run; constant channels give y = beta exactly and finite gradients;
//     |mean|/std = 1e4 and 1e6 and denormal-sized inputs against float64;
//   - bitwise identical outputs, statistics and gradients run after run, on another
//     handle and stream too;
//   - threads with their own handle and stream give one thread's results at once.
// Without a device every test reports skipped. The CPU side of the same checks is
// test_edges.cpp and test_api.cpp.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bad_calls.hpp"
#include "bnorm/bnorm.h"
#include "edge_cases.hpp"
#include "gpu_util.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

// GPU float32 against the CPU's float64, per channel (as test_cuda_backend.cpp): a few
// float32 roundings per step of a reduction tree.
constexpr double kOutTol = 2e-5;
constexpr double kStatTol = 1e-5;
constexpr double kDxTol = 1e-4;

bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One call's device buffers, and each op run on them from host data; outputs are
// poisoned (NaN) before every call and come back as host copies.
struct GpuCall {
  bnorm_tensor_t d;
  DeviceFloats x, y, dy, dx, gamma, beta, rm, rv, sm, si, dg, db;
  explicit GpuCall(const bnorm_tensor_t& desc)
      : d(desc),
        x(numel(d)), y(numel(d)), dy(numel(d)), dx(numel(d)),
        gamma(d.c), beta(d.c), rm(d.c), rv(d.c), sm(d.c), si(d.c), dg(d.c), db(d.c) {}

  Train train(bnorm_handle_t h, const std::vector<float>& xh, const std::vector<float>* g,
              const std::vector<float>* b, const std::vector<float>& rm0, const std::vector<float>& rv0) {
    x.upload(xh);
    if (g) gamma.upload(*g);
    if (b) beta.upload(*b);
    rm.upload(rm0);
    rv.upload(rv0);
    y.upload(poisoned(numel(d)));
    sm.upload(poisoned(d.c));
    si.upload(poisoned(d.c));
    EXPECT_EQ(bnorm_forward_training(h, &d, x.get(), y.get(), g ? gamma.get() : nullptr, b ? beta.get() : nullptr,
                                     0.1f, 1e-5f, rm.get(), rv.get(), sm.get(), si.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return {y.download(), sm.download(), si.download(), rm.download(), rv.download()};
  }

  std::vector<float> infer(bnorm_handle_t h, const std::vector<float>& xh, const std::vector<float>* g,
                           const std::vector<float>* b, const std::vector<float>& rmh, const std::vector<float>& rvh) {
    x.upload(xh);
    if (g) gamma.upload(*g);
    if (b) beta.upload(*b);
    rm.upload(rmh);
    rv.upload(rvh);
    y.upload(poisoned(numel(d)));
    EXPECT_EQ(bnorm_forward_inference(h, &d, x.get(), y.get(), g ? gamma.get() : nullptr, b ? beta.get() : nullptr,
                                      rm.get(), rv.get(), 1e-5f),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return y.download();
  }

  Back back(bnorm_handle_t h, const std::vector<float>& xh, const std::vector<float>& dyh,
            const std::vector<float>* g, const std::vector<float>& smh, const std::vector<float>& sih) {
    x.upload(xh);
    dy.upload(dyh);
    if (g) gamma.upload(*g);
    sm.upload(smh);
    si.upload(sih);
    dx.upload(poisoned(numel(d)));
    dg.upload(poisoned(d.c));
    db.upload(poisoned(d.c));
    EXPECT_EQ(bnorm_backward(h, &d, x.get(), dy.get(), g ? gamma.get() : nullptr, sm.get(), si.get(), dx.get(),
                             dg.get(), db.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return {dx.download(), dg.download(), db.download()};
  }
};

class GpuEdges : public GpuTest {};

// ---- nothing written on failure ----------------------------------------------------------

// Device images of every buffer of one call (bad_calls.hpp's call_buffer_images),
// re-uploaded before each call and compared bitwise after it.
struct DeviceCallBuffers {
  bnorm_tensor_t d = nchw(4, 6, 5, 5);
  std::vector<BufferImage> host = call_buffer_images(d);
  std::vector<std::unique_ptr<DeviceFloats>> dev;
  DeviceCallBuffers() {
    for (const auto& h : host) dev.push_back(std::make_unique<DeviceFloats>(h.values.size()));
  }
  void reset() {
    for (size_t i = 0; i < host.size(); ++i) dev[i]->upload(host[i].values);
  }
  CallBuffers ptrs() const {
    std::vector<float*> p;
    for (const auto& b : dev) p.push_back(b->get());
    return call_buffers(d, p);
  }
  // Which buffers differ from their images (names, empty when none).
  std::string changed() const {
    std::string out;
    for (size_t i = 0; i < host.size(); ++i)
      if (!bitwise(dev[i]->download(), host[i].values)) out += std::string(out.empty() ? "" : ", ") + host[i].name;
    return out;
  }
};

// What it guards (argued, not observed: these tests were written on a machine without
// a GPU, and checked there by running this file's logic against the CPU backend): a
// check moved after a launch in host/api.cpp or cuda_run lets a kernel write before the
// call fails, and the bitwise comparison of every device buffer catches it.
TEST_F(GpuEdges, EveryBadCallFailsAndWritesNothing) {
  DeviceCallBuffers b;
  for (const BadCall& bc : bad_calls()) {
    SCOPED_TRACE(bc.what);
    b.reset();
    const bnorm_status_t s = bc.call(gpu_, b.ptrs());
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(s, bc.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(bc.mentions), std::string::npos)
        << "message '" << bnorm_last_error() << "' should mention '" << bc.mentions << "'";
    EXPECT_EQ(b.changed(), "");
  }
}

// The calls the bad ones are edits of run on the device too, writing their outputs only.
TEST_F(GpuEdges, EveryValidCallWritesItsOutputsOnly) {
  DeviceCallBuffers b;
  for (const ValidCall& vc : valid_calls()) {
    SCOPED_TRACE(vc.what);
    b.reset();
    EXPECT_EQ(vc.call(gpu_, b.ptrs()), BNORM_STATUS_SUCCESS) << bnorm_last_error();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(b.changed(), vc.writes);
  }
}

TEST_F(GpuEdges, DeviceOnlyBadCallsWriteNothing) {
  DeviceCallBuffers b;
  const CallBuffers p = b.ptrs();
  // Plain (pageable) host memory, which the device cannot address.
  std::vector<float> host_t(numel(b.d), 0.5f), host_c(b.d.c, 0.5f);
  const std::vector<float> host_t0 = host_t, host_c0 = host_c;
  struct Case {
    std::string what;
    bnorm_status_t expected;
    std::string mentions;
    std::function<bnorm_status_t()> call;
  };
  std::vector<Case> cases;
  const auto host_arg = [&](const char* op, const char* name, auto call) {
    cases.push_back({std::string(op) + ": " + name + " in host memory", BNORM_STATUS_INVALID_VALUE,
                     std::string(name) + " is ", call});
  };
  float* ht = host_t.data();
  float* hc = host_c.data();
  const auto tr = [&](auto edit) {
    return [&, edit] {
      TrainArgs a = train_args(p);
      edit(a);
      return train(gpu_, a);
    };
  };
  host_arg("train", "x", tr([ht](TrainArgs& a) { a.x = ht; }));
  host_arg("train", "y", tr([ht](TrainArgs& a) { a.y = ht; }));
  host_arg("train", "gamma", tr([hc](TrainArgs& a) { a.gamma = hc; }));
  host_arg("train", "beta", tr([hc](TrainArgs& a) { a.beta = hc; }));
  host_arg("train", "running_mean", tr([hc](TrainArgs& a) { a.rm = hc; }));
  host_arg("train", "running_var", tr([hc](TrainArgs& a) { a.rv = hc; }));
  host_arg("train", "save_mean", tr([hc](TrainArgs& a) { a.sm = hc; }));
  host_arg("train", "save_invstd", tr([hc](TrainArgs& a) { a.si = hc; }));
  const auto in = [&](auto edit) {
    return [&, edit] {
      InferArgs a = infer_args(p);
      edit(a);
      return infer(gpu_, a);
    };
  };
  host_arg("inference", "x", in([ht](InferArgs& a) { a.x = ht; }));
  host_arg("inference", "y", in([ht](InferArgs& a) { a.y = ht; }));
  host_arg("inference", "gamma", in([hc](InferArgs& a) { a.gamma = hc; }));
  host_arg("inference", "beta", in([hc](InferArgs& a) { a.beta = hc; }));
  host_arg("inference", "running_mean", in([hc](InferArgs& a) { a.rm = hc; }));
  host_arg("inference", "running_var", in([hc](InferArgs& a) { a.rv = hc; }));
  const auto bk = [&](auto edit) {
    return [&, edit] {
      BackArgs a = back_args(p);
      edit(a);
      return back(gpu_, a);
    };
  };
  host_arg("backward", "x", bk([ht](BackArgs& a) { a.x = ht; }));
  host_arg("backward", "dy", bk([ht](BackArgs& a) { a.dy = ht; }));
  host_arg("backward", "dx", bk([ht](BackArgs& a) { a.dx = ht; }));
  host_arg("backward", "gamma", bk([hc](BackArgs& a) { a.gamma = hc; }));
  host_arg("backward", "save_mean", bk([hc](BackArgs& a) { a.sm = hc; }));
  host_arg("backward", "save_invstd", bk([hc](BackArgs& a) { a.si = hc; }));
  host_arg("backward", "dgamma", bk([hc](BackArgs& a) { a.dg = hc; }));
  host_arg("backward", "dbeta", bk([hc](BackArgs& a) { a.db = hc; }));

  // A forced configuration that cannot run the call: no kernel has 7 threads per CTA.
  const char* forced[3] = {"two_pass_block:t7", "normalize:t7", "two_pass_block:t7"};
  for (int op = 0; op < 3; ++op)
    cases.push_back({std::string("forced unsupported ") + forced[op], BNORM_STATUS_NOT_SUPPORTED, "forced variant",
                     [&, op] {
                       const auto o = static_cast<bnorm_op_t>(op);
                       EXPECT_EQ(bnorm_set_variant(gpu_, o, forced[op]), BNORM_STATUS_SUCCESS) << bnorm_last_error();
                       const bnorm_status_t s = op == 0   ? train(gpu_, train_args(p))
                                                : op == 1 ? infer(gpu_, infer_args(p))
                                                          : back(gpu_, back_args(p));
                       bnorm_set_variant(gpu_, o, nullptr);
                       return s;
                     }});
  // A layout no CUDA kernel implements (while none does: NHWC with h*w > 1).
  bnorm_tensor_t nhwc = b.d;
  nhwc.layout = BNORM_LAYOUT_NHWC;
  if (configs(BNORM_OP_FORWARD_TRAINING, nhwc).empty())
    cases.push_back({"train: NHWC", BNORM_STATUS_NOT_SUPPORTED, "NHWC", [&, nhwc] {
                       TrainArgs a = train_args(p);
                       a.d = &nhwc;
                       return train(gpu_, a);
                     }});
  if (configs(BNORM_OP_BACKWARD, nhwc).empty())
    cases.push_back({"backward: NHWC", BNORM_STATUS_NOT_SUPPORTED, "NHWC", [&, nhwc] {
                       BackArgs a = back_args(p);
                       a.d = &nhwc;
                       return back(gpu_, a);
                     }});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    b.reset();
    const bnorm_status_t s = c.call();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(s, c.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(c.mentions), std::string::npos)
        << "message '" << bnorm_last_error() << "' should mention '" << c.mentions << "'";
    EXPECT_EQ(b.changed(), "");
    EXPECT_TRUE(host_t == host_t0 && host_c == host_c0);
  }
}

// ---- numerics at the edges, every configuration ----------------------------------------

const bnorm_op_t kTrainOp = BNORM_OP_FORWARD_TRAINING, kInferOp = BNORM_OP_FORWARD_INFERENCE,
                 kBackOp = BNORM_OP_BACKWARD;

// Odd sizes (scalar loads only), 16-byte multiples (vector loads), channels long enough
// for several CTAs each (split and persistent variants), and channels-last tensors (the
// NHWC variants).
std::vector<bnorm_tensor_t> edge_shapes() {
  return {nchw(5, 4, 3, 7), nchw(6, 5, 8, 8), nchw(64, 3, 16, 16), nhwc(5, 3, 3, 7), nhwc(32, 8, 8, 8)};
}

std::string shape_name(const bnorm_tensor_t& d) {
  return std::to_string(d.n) + "x" + std::to_string(d.c) + "x" + std::to_string(d.h) + "x" + std::to_string(d.w) +
         (d.layout == BNORM_LAYOUT_NHWC ? " nhwc" : " nchw");
}

double channel_rel_error(const bnorm_tensor_t& d, const std::vector<float>& a, const std::vector<float>& ref,
                         int64_t c) {
  double num = 0, den = 0;
  for (int64_t o : channel_offsets(d, c)) {
    num += (static_cast<double>(a[o]) - ref[o]) * (static_cast<double>(a[o]) - ref[o]);
    den += static_cast<double>(ref[o]) * ref[o];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A NaN or Inf in x (forward, inference) or dy (backward) of channel k: its channel all
// non-finite, statistics included (the variance clamp in finalize_stats used to turn
// the NaN variance into 0, leaving save_invstd and the running variance finite), every
// other channel bit for bit as in the clean run and close to the CPU's.
TEST_F(GpuEdges, NonFiniteInputPoisonsOnlyItsChannel) {
  const int64_t k = 1;
  for (const bnorm_tensor_t& d : edge_shapes()) {
    SCOPED_TRACE(shape_name(d));
    GpuCall g(d);
    const auto x = random_tensor(d, 11), dy = random_tensor(d, 12);
    const auto gamma = random_vector(d.c, 13, 0.5, 1.5), beta = random_vector(d.c, 14, -1, 1);
    const auto rm0 = random_vector(d.c, 15, -1, 1), rv0 = random_vector(d.c, 16, 0.5, 2);
    const Train cpu = train(cpu_, d, x, gamma.data(), beta.data(), rm0, rv0);
    std::vector<std::pair<std::vector<float>, std::vector<float>>> bad;  // (x, dy) pairs
    for (float v : nonfinite_values())
      for (bool pivot : {false, true}) {
        auto bx = x, bdy = dy;
        bx[special_offset(d, k, pivot)] = v;
        bdy[special_offset(d, k, pivot)] = v;
        bad.emplace_back(bx, bdy);
      }
    for (const std::string& spec : configs(kTrainOp, d)) {
      SCOPED_TRACE(spec);
      force(kTrainOp, spec);
      const Train clean = g.train(gpu_, x, &gamma, &beta, rm0, rv0);
      for (size_t i = 0; i < bad.size(); ++i) {
        SCOPED_TRACE(i);
        const Train t = g.train(gpu_, bad[i].first, &gamma, &beta, rm0, rv0);
        for (int64_t c = 0; c < d.c; ++c) {
          if (c == k) {
            EXPECT_TRUE(channel_all_nonfinite(d, t.y, c));
            for (const auto* s : {&t.sm, &t.si, &t.rm, &t.rv}) EXPECT_FALSE(std::isfinite((*s)[c]));
          } else {
            EXPECT_TRUE(channel_bitwise_equal(d, t.y, clean.y, c)) << c;
            EXPECT_TRUE(same_bits(t.sm[c], clean.sm[c]) && same_bits(t.si[c], clean.si[c]) &&
                        same_bits(t.rm[c], clean.rm[c]) && same_bits(t.rv[c], clean.rv[c]))
                << c;
            EXPECT_LT(channel_rel_error(d, t.y, cpu.y, c), kOutTol) << c;
          }
        }
      }
    }
    for (const std::string& spec : configs(kInferOp, d)) {
      SCOPED_TRACE(spec);
      force(kInferOp, spec);
      const auto clean = g.infer(gpu_, x, &gamma, &beta, rm0, rv0);
      for (size_t i = 0; i < bad.size(); ++i) {
        const auto y = g.infer(gpu_, bad[i].first, &gamma, &beta, rm0, rv0);
        for (int64_t e = 0; e < numel(d); ++e) {
          if (std::isfinite(bad[i].first[e]))
            ASSERT_TRUE(same_bits(y[e], clean[e])) << i << " " << e;
          else
            EXPECT_FALSE(std::isfinite(y[e])) << i << " " << e;
        }
      }
    }
    for (const std::string& spec : configs(kBackOp, d)) {
      SCOPED_TRACE(spec);
      force(kBackOp, spec);
      const Back clean = g.back(gpu_, x, dy, &gamma, cpu.sm, cpu.si);
      for (size_t i = 0; i < bad.size(); ++i) {
        SCOPED_TRACE(i);
        const Back b = g.back(gpu_, x, bad[i].second, &gamma, cpu.sm, cpu.si);
        for (int64_t c = 0; c < d.c; ++c) {
          if (c == k) {
            EXPECT_TRUE(channel_all_nonfinite(d, b.dx, c));
            EXPECT_FALSE(std::isfinite(b.dg[c]));
            EXPECT_FALSE(std::isfinite(b.db[c]));
          } else {
            EXPECT_TRUE(channel_bitwise_equal(d, b.dx, clean.dx, c)) << c;
            EXPECT_TRUE(same_bits(b.dg[c], clean.dg[c]) && same_bits(b.db[c], clean.db[c])) << c;
          }
        }
      }
    }
  }
}

// NaN in gamma[k] (forward), running_var[k] (inference), save_mean[k] (backward).
TEST_F(GpuEdges, NonFiniteParameterPoisonsOnlyItsChannel) {
  const int64_t k = 2;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const bnorm_tensor_t& d : edge_shapes()) {
    SCOPED_TRACE(shape_name(d));
    GpuCall g(d);
    const auto x = random_tensor(d, 21), dy = random_tensor(d, 22);
    const auto gamma = random_vector(d.c, 23, 0.5, 1.5), beta = random_vector(d.c, 24, -1, 1);
    const auto rm = random_vector(d.c, 25, -1, 1), rv = random_vector(d.c, 26, 0.5, 2);
    const Train cpu = train(cpu_, d, x, gamma.data(), beta.data(), rm, rv);
    auto bad_gamma = gamma, bad_rv = rv, bad_sm = cpu.sm;
    bad_gamma[k] = bad_rv[k] = bad_sm[k] = nan;
    for (const std::string& spec : configs(kTrainOp, d)) {
      SCOPED_TRACE(spec);
      force(kTrainOp, spec);
      const Train clean = g.train(gpu_, x, &gamma, &beta, rm, rv), t = g.train(gpu_, x, &bad_gamma, &beta, rm, rv);
      for (int64_t c = 0; c < d.c; ++c) {
        if (c == k)
          EXPECT_TRUE(channel_all_nonfinite(d, t.y, c));
        else
          EXPECT_TRUE(channel_bitwise_equal(d, t.y, clean.y, c)) << c;
        EXPECT_TRUE(same_bits(t.si[c], clean.si[c]) && same_bits(t.rv[c], clean.rv[c])) << c;
      }
    }
    for (const std::string& spec : configs(kInferOp, d)) {
      SCOPED_TRACE(spec);
      force(kInferOp, spec);
      const auto clean = g.infer(gpu_, x, &gamma, &beta, rm, rv), y = g.infer(gpu_, x, &gamma, &beta, rm, bad_rv);
      for (int64_t c = 0; c < d.c; ++c) {
        if (c == k)
          EXPECT_TRUE(channel_all_nonfinite(d, y, c));
        else
          EXPECT_TRUE(channel_bitwise_equal(d, y, clean, c)) << c;
      }
    }
    for (const std::string& spec : configs(kBackOp, d)) {
      SCOPED_TRACE(spec);
      force(kBackOp, spec);
      const Back clean = g.back(gpu_, x, dy, &gamma, cpu.sm, cpu.si), b = g.back(gpu_, x, dy, &gamma, bad_sm, cpu.si);
      for (int64_t c = 0; c < d.c; ++c) {
        if (c == k) {
          EXPECT_TRUE(channel_all_nonfinite(d, b.dx, c));
          EXPECT_FALSE(std::isfinite(b.dg[c]));
        } else {
          EXPECT_TRUE(channel_bitwise_equal(d, b.dx, clean.dx, c)) << c;
          EXPECT_TRUE(same_bits(b.dg[c], clean.dg[c])) << c;
        }
        EXPECT_TRUE(same_bits(b.db[c], clean.db[c])) << c;  // dbeta does not read the mean
      }
    }
  }
}

// Variance 0: x - pivot and the shifted mean are exactly 0, so y = beta exactly and
// save_mean is the constant exactly; save_invstd = 1/sqrt(eps) to float32 rounding of the
// GPU's sqrtf and division (the CPU rounds once from float64: 1 ulp apart at most);
// backward: x - mean = 0 exactly, so dgamma = 0 exactly and dx is finite.
TEST_F(GpuEdges, ConstantChannels) {
  const std::vector<float> values = {3.75f, -1e4f, 0.0f, 1e-39f, 1048576.5f, -7.0f};
  for (const bnorm_tensor_t& d : {nchw(3, 6, 4, 5), nchw(4, 6, 8, 8), nchw(32, 6, 16, 16), nhwc(4, 6, 8, 8)}) {
    SCOPED_TRACE(shape_name(d));
    GpuCall g(d);
    const auto x = constant_channels(d, values, 31), dy = random_tensor(d, 32);
    const auto gamma = random_vector(d.c, 33, 0.5, 1.5), beta = random_vector(d.c, 34, -1, 1);
    const auto rm0 = random_vector(d.c, 35, -1, 1), rv0 = random_vector(d.c, 36, 0.5, 2);
    const Train cpu = train(cpu_, d, x, gamma.data(), beta.data(), rm0, rv0);
    const Back cpu_b = back(cpu_, d, x, dy, gamma.data(), cpu.sm, cpu.si);
    const std::vector<double> terms = dx_term_scale(d, dy, gamma.data(), cpu.si);
    for (const std::string& spec : configs(kTrainOp, d)) {
      SCOPED_TRACE(spec);
      force(kTrainOp, spec);
      const Train t = g.train(gpu_, x, &gamma, &beta, rm0, rv0);
      for (int64_t c = 0; c < d.c; ++c) {
        for (int64_t o : channel_offsets(d, c)) ASSERT_EQ(t.y[o], beta[c]) << c << " " << o;
        EXPECT_EQ(t.sm[c], values[c]);
        EXPECT_FLOAT_EQ(t.si[c], cpu.si[c]);
        EXPECT_FLOAT_EQ(t.rv[c], cpu.rv[c]);
      }
    }
    for (const std::string& spec : configs(kBackOp, d)) {
      SCOPED_TRACE(spec);
      force(kBackOp, spec);
      const Back b = g.back(gpu_, x, dy, &gamma, cpu.sm, cpu.si);
      for (int64_t c = 0; c < d.c; ++c) EXPECT_EQ(b.dg[c], 0.0f) << c;
      for (float v : b.dx) ASSERT_TRUE(std::isfinite(v));
      EXPECT_LT(max_channel_rel_error(d, b.dx, to_double(cpu_b.dx), &terms), kDxTol);
      EXPECT_LT(rel_error(b.db, to_double(cpu_b.db)), kStatTol);
    }
  }
}

// |mean|/std = 1e4 and 1e6. Tolerances, and why they hold: the statistics kernels
// subtract the channel's first value (the pivot) before accumulating; every value lies
// within a factor 2 of it (mean +- 16 std against 1e4 std), so x - pivot is exact
// (Sterbenz), and the float32 Welford state then sees data of the scale of std, as at
// mean 0: kOutTol and kStatTol, the tolerances of mean-zero data, apply unchanged. The
// saved mean is the shifted mean plus the pivot: one rounding of a 1e4..1e6 value, 1e-7
// relative. x itself is stored in float32 (ulp(1e6) = 1/16 of a std), but the reference
// reads the same float32 x, so that quantisation is not an error of the kernels.
// Without the pivot the mean alone would carry ulp(mean)/2 = 5e-4 (at 1e4) to 0.03 (at
// 1e6) of a std into every y: 25 to 1500 times kOutTol. Inference takes x - running_mean
// before scaling (exact for the same reason); folding it into y = x*scale + shift would
// lose the same digits. Backward takes x - save_mean, exact again.
TEST_F(GpuEdges, LargeMeanAgainstFloat64) {
  for (double ratio : {1e4, 1e6})
    for (const bnorm_tensor_t& d : {nchw(16, 4, 8, 8), nchw(32, 3, 32, 32), nchw(7, 3, 5, 9), nhwc(16, 4, 8, 8)}) {
      SCOPED_TRACE(testing::Message() << ratio << " " << shape_name(d));
      GpuCall g(d);
      const auto x = large_mean_tensor(d, ratio, 41), dy = random_tensor(d, 42);
      const auto gamma = random_vector(d.c, 43, 0.5, 1.5), beta = random_vector(d.c, 44, -1, 1);
      const auto rm0 = random_vector(d.c, 45, -1, 1), rv0 = random_vector(d.c, 46, 0.5, 2);
      const Train cpu = train(cpu_, d, x, gamma.data(), beta.data(), rm0, rv0);
      const auto cpu_y = infer(cpu_, d, x, gamma.data(), beta.data(), cpu.sm, cpu.rv);
      const Back cpu_b = back(cpu_, d, x, dy, gamma.data(), cpu.sm, cpu.si);
      const std::vector<double> terms = dx_term_scale(d, dy, gamma.data(), cpu.si);
      for (const std::string& spec : configs(kTrainOp, d)) {
        SCOPED_TRACE(spec);
        force(kTrainOp, spec);
        const Train t = g.train(gpu_, x, &gamma, &beta, rm0, rv0);
        EXPECT_LT(max_channel_rel_error(d, t.y, to_double(cpu.y)), kOutTol);
        EXPECT_LT(max_rel_error(t.sm, to_double(cpu.sm)), 1e-6);
        EXPECT_LT(max_rel_error(t.si, to_double(cpu.si)), kStatTol);
        EXPECT_LT(max_rel_error(t.rm, to_double(cpu.rm)), 1e-6);
        EXPECT_LT(max_rel_error(t.rv, to_double(cpu.rv)), kStatTol);
      }
      for (const std::string& spec : configs(kInferOp, d)) {
        SCOPED_TRACE(spec);
        force(kInferOp, spec);
        EXPECT_LT(max_channel_rel_error(d, g.infer(gpu_, x, &gamma, &beta, cpu.sm, cpu.rv), to_double(cpu_y)), kOutTol);
      }
      for (const std::string& spec : configs(kBackOp, d)) {
        SCOPED_TRACE(spec);
        force(kBackOp, spec);
        const Back b = g.back(gpu_, x, dy, &gamma, cpu.sm, cpu.si);
        EXPECT_LT(max_channel_rel_error(d, b.dx, to_double(cpu_b.dx), &terms), kDxTol);
        EXPECT_LT(rel_error(b.dg, to_double(cpu_b.dg)), kDxTol);
        EXPECT_LT(rel_error(b.db, to_double(cpu_b.db)), kStatTol);
      }
    }
}

// Denormal-sized x (1e-40 .. 1.1e-38). nvcc keeps denormals in float32 arithmetic unless
// told otherwise (-ftz=true or --use_fast_math, neither of which CMakeLists.txt passes);
// with flush-to-zero x - pivot would be 0, y = beta, and the y check below would fail by
// 100%. What holds without it: x - pivot is exact (denormal subtraction is), and each
// later float32 operation on denormal values errs by at most 2^-150 absolute, i.e. 1.4e-6
// of the smallest channel spread here (5e-40); fewer than a hundred operations lie
// between a value and its channel's mean, so y (of order 1e-37, normal again) is within
// 1e-3 of float64 (observed on the CPU's float32 emulation: 1e-5). The variance (1e-79)
// underflows to 0 in float32, which is right to 1e-74 against eps. Inference rounds
// once into the denormal range: 2^-150 absolute, 1e-5 relative at most. Backward with
// denormal dy: sums grow into the normal range, relative errors again.
TEST_F(GpuEdges, DenormalInputs) {
  for (const bnorm_tensor_t& d : {nchw(8, 4, 6, 6), nchw(32, 4, 16, 16), nchw(3, 5, 7, 9), nhwc(8, 4, 6, 6)}) {
    SCOPED_TRACE(shape_name(d));
    GpuCall g(d);
    const auto x = denormal_tensor(d, 51);
    const std::vector<float> rm0(d.c, 0.0f), rv0(d.c, 1.0f);
    const Train cpu = train(cpu_, d, x, nullptr, nullptr, rm0, rv0);
    const auto cpu_y = infer(cpu_, d, x, nullptr, nullptr, rm0, rv0);
    const auto xn = random_tensor(d, 52), dy = denormal_tensor(d, 53);
    const Train cpu_n = train(cpu_, d, xn, nullptr, nullptr, rm0, rv0);
    const Back cpu_b = back(cpu_, d, xn, dy, nullptr, cpu_n.sm, cpu_n.si);
    const std::vector<double> terms = dx_term_scale(d, dy, nullptr, cpu_n.si);
    for (const std::string& spec : configs(kTrainOp, d)) {
      SCOPED_TRACE(spec);
      force(kTrainOp, spec);
      const Train t = g.train(gpu_, x, nullptr, nullptr, rm0, rv0);
      EXPECT_LT(max_channel_rel_error(d, t.y, to_double(cpu.y)), 1e-3);
      EXPECT_LT(max_rel_error(t.sm, to_double(cpu.sm)), 1e-3);
      EXPECT_LT(max_rel_error(t.si, to_double(cpu.si)), 1e-6);
    }
    for (const std::string& spec : configs(kInferOp, d)) {
      SCOPED_TRACE(spec);
      force(kInferOp, spec);
      EXPECT_LT(max_channel_rel_error(d, g.infer(gpu_, x, nullptr, nullptr, rm0, rv0), to_double(cpu_y)), 1e-5);
    }
    for (const std::string& spec : configs(kBackOp, d)) {
      SCOPED_TRACE(spec);
      force(kBackOp, spec);
      const Back b = g.back(gpu_, xn, dy, nullptr, cpu_n.sm, cpu_n.si);
      EXPECT_LT(max_channel_rel_error(d, b.dx, to_double(cpu_b.dx), &terms), kDxTol);
      EXPECT_LT(rel_error(b.dg, to_double(cpu_b.dg)), kDxTol);
      EXPECT_LT(max_rel_error(b.db, to_double(cpu_b.db)), kDxTol);
    }
  }
}

// ---- determinism ----------------------------------------------------------------------

// Every configuration of every op, three runs on this handle and one on a second handle
// with its own stream: the same bits in every output, the saved and the running
// statistics (restored before each run) and the gradients. The split reductions and the
// persistent kernels merge partials in CTA order, never in arrival order; an atomicAdd
// of floats in their place would make the last bits depend on timing, which four runs
// per configuration over a few thousand configurations would show.
TEST_F(GpuEdges, BitwiseRepeatableEveryConfig) {
  bnorm_handle_t other = nullptr;
  ASSERT_EQ(bnorm_create(&other, BNORM_BACKEND_CUDA, 0), BNORM_STATUS_SUCCESS);
  cudaStream_t stream;
  BNORM_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_EQ(bnorm_set_stream(other, stream), BNORM_STATUS_SUCCESS);
  for (const bnorm_tensor_t& d : {nchw(3, 5, 7, 9), nchw(128, 6, 24, 24), nchw(2, 4096, 1, 1), nchw(8, 64, 28, 28),
                                  nchw(65536, 3, 1, 1), nhwc(16, 64, 14, 14), nhwc(3, 5, 7, 9)}) {
    SCOPED_TRACE(shape_name(d));
    GpuCall g(d);
    const auto x = random_tensor(d, 77), dy = random_tensor(d, 78);
    const auto gamma = random_vector(d.c, 79, 0.5, 1.5), beta = random_vector(d.c, 80, -1, 1);
    const auto rm0 = random_vector(d.c, 81, -1, 1), rv0 = random_vector(d.c, 82, 0.5, 2);
    const Train cpu = train(cpu_, d, x, gamma.data(), beta.data(), rm0, rv0);
    const auto run_all = [&](bnorm_handle_t h, int op) -> std::vector<std::vector<float>> {
      if (op == 0) {
        const Train t = g.train(h, x, &gamma, &beta, rm0, rv0);
        return {t.y, t.sm, t.si, t.rm, t.rv};
      }
      if (op == 1) return {g.infer(h, x, &gamma, &beta, cpu.rm, cpu.rv)};
      const Back b = g.back(h, x, dy, &gamma, cpu.sm, cpu.si);
      return {b.dx, b.dg, b.db};
    };
    for (int op = 0; op < 3; ++op) {
      const auto o = static_cast<bnorm_op_t>(op);
      for (const std::string& spec : configs(o, d)) {
        SCOPED_TRACE(spec);
        force(o, spec);
        ASSERT_EQ(bnorm_set_variant(other, o, spec.c_str()), BNORM_STATUS_SUCCESS);
        const auto first = run_all(gpu_, op);
        for (int run = 0; run < 3; ++run) {
          const auto again = run_all(run == 2 ? other : gpu_, op);
          for (size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(bitwise(again[i], first[i])) << "output " << i;
        }
      }
      bnorm_set_variant(gpu_, o, nullptr);
      bnorm_set_variant(other, o, nullptr);
    }
  }
  EXPECT_EQ(bnorm_destroy(other), BNORM_STATUS_SUCCESS);
  BNORM_CUDA_OK(cudaStreamDestroy(stream));
}

// ---- concurrency ----------------------------------------------------------------------

// Four threads, each with its own handle on its own non-blocking stream and its own
// buffers, run all three ops in a loop at once (on the heuristic's choice, the same for
// every handle): each result is one thread's result bit for bit; between them each
// thread fails a call with its own eps and must read its own message back.
TEST_F(GpuEdges, HandlesAndStreamsPerThreadMatchOneThread) {
  const bnorm_tensor_t d = nchw(32, 16, 20, 20);
  const int64_t n = numel(d);
  const auto x = random_tensor(d, 91), dy = random_tensor(d, 92);
  const auto gamma = random_vector(d.c, 93, 0.5, 1.5), beta = random_vector(d.c, 94, -1, 1);
  const auto rm0 = random_vector(d.c, 95, -1, 1), rv0 = random_vector(d.c, 96, 0.5, 2);
  GpuCall g(d);
  const Train ref = g.train(gpu_, x, &gamma, &beta, rm0, rv0);
  const auto ref_y = g.infer(gpu_, x, &gamma, &beta, ref.rm, ref.rv);
  const Back ref_b = g.back(gpu_, x, dy, &gamma, ref.sm, ref.si);

  constexpr int kThreads = 4, kRounds = 10;
  std::atomic<int> wrong_results{0}, wrong_messages{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      bnorm_handle_t h = nullptr;
      cudaStream_t s = nullptr;
      if (bnorm_create(&h, BNORM_BACKEND_CUDA, 0) != BNORM_STATUS_SUCCESS ||
          cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess || bnorm_set_stream(h, s) != 0) {
        ++errors;
        return;
      }
      const std::string mine = "eps = " + std::to_string(-(t + 1)).insert(1, "0.00");  // "eps = -0.00N"
      {
        DeviceFloats dx_(x), ddy(dy), dg(gamma), db(beta), drm(d.c), drv(d.c), dsm(d.c), dsi(d.c);
        DeviceFloats dyo(n), dyi(n), ddx(n), ddg(d.c), ddb(d.c), rrm(ref.rm), rrv(ref.rv), rsm(ref.sm), rsi(ref.si);
        const auto sync = [&] { return cudaStreamSynchronize(s) == cudaSuccess; };
        for (int r = 0; r < kRounds; ++r) {
          drm.upload(rm0);
          drv.upload(rv0);
          bool ok = bnorm_forward_training(h, &d, dx_.get(), dyo.get(), dg.get(), db.get(), 0.1f, 1e-5f, drm.get(),
                                           drv.get(), dsm.get(), dsi.get()) == BNORM_STATUS_SUCCESS;
          ok = ok && bnorm_forward_inference(h, &d, dx_.get(), dyi.get(), dg.get(), db.get(), rrm.get(), rrv.get(),
                                             1e-5f) == BNORM_STATUS_SUCCESS;
          ok = ok && bnorm_backward(h, &d, dx_.get(), ddy.get(), dg.get(), rsm.get(), rsi.get(), ddx.get(), ddg.get(),
                                    ddb.get()) == BNORM_STATUS_SUCCESS;
          ok = ok && sync();
          if (!ok) {
            ++errors;
            break;
          }
          if (!(bitwise(dyo.download(), ref.y) && bitwise(dsm.download(), ref.sm) && bitwise(dsi.download(), ref.si) &&
                bitwise(drm.download(), ref.rm) && bitwise(drv.download(), ref.rv) && bitwise(dyi.download(), ref_y) &&
                bitwise(ddx.download(), ref_b.dx) && bitwise(ddg.download(), ref_b.dg) &&
                bitwise(ddb.download(), ref_b.db)))
            ++wrong_results;
          const float bad_eps = -0.001f * static_cast<float>(t + 1);
          if (bnorm_forward_inference(h, &d, dx_.get(), dyi.get(), nullptr, nullptr, rrm.get(), rrv.get(), bad_eps) !=
                  BNORM_STATUS_INVALID_VALUE ||
              std::string(bnorm_last_error()).find(mine) == std::string::npos)
            ++wrong_messages;
        }
      }
      bnorm_destroy(h);
      cudaStreamDestroy(s);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0) << bnorm_last_error();
  EXPECT_EQ(wrong_results.load(), 0);
  EXPECT_EQ(wrong_messages.load(), 0);
}

}  // namespace
