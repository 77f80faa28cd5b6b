// The CPU backend at the numerical edges, run after run, and from many threads:
//   - a NaN or Inf in one channel (of x, dy, or a per-channel parameter) poisons exactly
//     that channel: its outputs are non-finite, every other channel is bit for bit what
//     a clean run gives (and matches the float64 reference);
//   - constant channels (variance 0) give y = beta exactly and finite gradients;
//   - |mean|/std = 1e4 and 1e6, and denormal-sized inputs, against float64;
//   - bitwise identical results run after run;
//   - several threads, each with its own handle, give one thread's results, and the
//     last-error message stays per thread while they all fail at once;
//   - the closed-form references of the GPU's 64-bit tests, on small shapes.
// test_cuda_edges.cpp runs the same inputs through every CUDA configuration.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest-spi.h>

#include "bnorm/bnorm.h"
#include "closed_form_checks.hpp"
#include "edge_cases.hpp"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

// float64 accumulation, one rounding to float32: a few float32 ulps.
constexpr double kTol = 2e-6;

double channel_rel_error(const bnorm_tensor_t& d, const std::vector<float>& a, const std::vector<double>& ref,
                         int64_t c) {
  double num = 0, den = 0;
  for (int64_t o : channel_offsets(d, c)) {
    num += (a[o] - ref[o]) * (a[o] - ref[o]);
    den += ref[o] * ref[o];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

const bnorm_layout_t kLayouts[] = {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC};

// ---- non-finite values ----------------------------------------------------------------
// Checked by breaking it: folding the statistics of all channels together, or a
// variance clamp that turned NaN into 0, fails these (see test_welford.cpp).

TEST(EdgesCpu, NonFiniteInputPoisonsOnlyItsChannel) {
  Handle h;
  const int64_t k = 2;
  for (bnorm_layout_t layout : kLayouts)
    for (float v : nonfinite_values())
      for (bool pivot : {false, true}) {
        SCOPED_TRACE(testing::Message() << "layout " << layout << " value " << v << (pivot ? " first" : " middle"));
        const bnorm_tensor_t d{5, 4, 3, 7, layout, BNORM_DTYPE_F32};
        const auto x = random_tensor(d, 11), dy = random_tensor(d, 12);
        const auto gamma = random_vector(d.c, 13, 0.5, 1.5), beta = random_vector(d.c, 14, -1, 1);
        const auto rm0 = random_vector(d.c, 15, -1, 1), rv0 = random_vector(d.c, 16, 0.5, 2);
        auto bad_x = x, bad_dy = dy;
        bad_x[special_offset(d, k, pivot)] = v;
        bad_dy[special_offset(d, k, pivot)] = v;

        // Forward training: channel k's outputs and statistics all non-finite.
        const Train clean = train(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
        const Train bad = train(h.h, d, bad_x, gamma.data(), beta.data(), rm0, rv0);
        const Reference ref = reference_forward(d, x, gamma.data(), beta.data(), 1e-5);
        for (int64_t c = 0; c < d.c; ++c) {
          SCOPED_TRACE(c);
          if (c == k) {
            EXPECT_TRUE(channel_all_nonfinite(d, bad.y, c));
            for (const auto* s : {&bad.sm, &bad.si, &bad.rm, &bad.rv}) EXPECT_FALSE(std::isfinite((*s)[c]));
          } else {
            EXPECT_TRUE(channel_bitwise_equal(d, bad.y, clean.y, c));
            for (auto [a, b] : {std::pair{&bad.sm, &clean.sm}, {&bad.si, &clean.si}, {&bad.rm, &clean.rm},
                                {&bad.rv, &clean.rv}})
              EXPECT_TRUE(same_bits((*a)[c], (*b)[c]));
            EXPECT_LT(channel_rel_error(d, bad.y, ref.y, c), kTol);
          }
        }

        // Inference is elementwise: only the value itself.
        const auto y_clean = infer(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
        const auto y_bad = infer(h.h, d, bad_x, gamma.data(), beta.data(), rm0, rv0);
        for (int64_t i = 0; i < numel(d); ++i) {
          if (i == special_offset(d, k, pivot))
            EXPECT_FALSE(std::isfinite(y_bad[i]));
          else
            ASSERT_TRUE(same_bits(y_bad[i], y_clean[i])) << i;
        }

        // Backward, a special in dy: dx, dgamma and dbeta of channel k non-finite.
        const Back g_clean = back(h.h, d, x, dy, gamma.data(), clean.sm, clean.si);
        const Back g_bad = back(h.h, d, x, bad_dy, gamma.data(), clean.sm, clean.si);
        const Reference gref = reference_backward(d, x, dy, gamma.data(), clean.sm, clean.si);
        for (int64_t c = 0; c < d.c; ++c) {
          SCOPED_TRACE(c);
          if (c == k) {
            EXPECT_TRUE(channel_all_nonfinite(d, g_bad.dx, c));
            EXPECT_FALSE(std::isfinite(g_bad.dg[c]));
            EXPECT_FALSE(std::isfinite(g_bad.db[c]));
          } else {
            EXPECT_TRUE(channel_bitwise_equal(d, g_bad.dx, g_clean.dx, c));
            EXPECT_TRUE(same_bits(g_bad.dg[c], g_clean.dg[c]) && same_bits(g_bad.db[c], g_clean.db[c]));
            EXPECT_LT(channel_rel_error(d, g_bad.dx, gref.dx, c), 1e-5);
          }
        }
      }
}

TEST(EdgesCpu, NonFiniteParameterPoisonsOnlyItsChannel) {
  Handle h;
  const int64_t k = 1;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (bnorm_layout_t layout : kLayouts) {
    SCOPED_TRACE(layout);
    const bnorm_tensor_t d{4, 3, 5, 5, layout, BNORM_DTYPE_F32};
    const auto x = random_tensor(d, 21), dy = random_tensor(d, 22);
    const auto gamma = random_vector(d.c, 23, 0.5, 1.5), beta = random_vector(d.c, 24, -1, 1);
    const auto rm = random_vector(d.c, 25, -1, 1), rv = random_vector(d.c, 26, 0.5, 2);
    auto bad_gamma = gamma, bad_rv = rv;
    bad_gamma[k] = nan;
    bad_rv[k] = nan;
    const Train clean = train(h.h, d, x, gamma.data(), beta.data(), rm, rv);
    const Train bad = train(h.h, d, x, bad_gamma.data(), beta.data(), rm, rv);
    const auto y_clean = infer(h.h, d, x, gamma.data(), beta.data(), rm, rv);
    const auto y_bad = infer(h.h, d, x, gamma.data(), beta.data(), rm, bad_rv);
    auto bad_sm = clean.sm;
    bad_sm[k] = nan;
    const Back g_clean = back(h.h, d, x, dy, gamma.data(), clean.sm, clean.si);
    const Back g_bad = back(h.h, d, x, dy, gamma.data(), bad_sm, clean.si);
    for (int64_t c = 0; c < d.c; ++c) {
      SCOPED_TRACE(c);
      if (c == k) {
        EXPECT_TRUE(channel_all_nonfinite(d, bad.y, c));
        EXPECT_TRUE(channel_all_nonfinite(d, y_bad, c));
        EXPECT_TRUE(channel_all_nonfinite(d, g_bad.dx, c));
        EXPECT_FALSE(std::isfinite(g_bad.dg[c]));
      } else {
        EXPECT_TRUE(channel_bitwise_equal(d, bad.y, clean.y, c));
        EXPECT_TRUE(channel_bitwise_equal(d, y_bad, y_clean, c));
        EXPECT_TRUE(channel_bitwise_equal(d, g_bad.dx, g_clean.dx, c));
        EXPECT_TRUE(same_bits(g_bad.dg[c], g_clean.dg[c]));
      }
      // Statistics do not read gamma, dbeta does not read the mean.
      EXPECT_TRUE(same_bits(bad.si[c], clean.si[c]) && same_bits(bad.rv[c], clean.rv[c]));
      EXPECT_TRUE(same_bits(g_bad.db[c], g_clean.db[c]));
    }
  }
}

// ---- constant channels ------------------------------------------------------------------

// Variance 0: x - mean is exactly 0, so y = beta exactly, save_invstd = 1/sqrt(eps),
// the running variance decays, and backward stays finite with dgamma = 0.
TEST(EdgesCpu, ConstantChannels) {
  Handle h;
  const std::vector<float> values = {3.75f, -1e4f, 0.0f, 1e-39f, 1048576.5f, -7.0f};
  for (bnorm_layout_t layout : kLayouts) {
    SCOPED_TRACE(layout);
    const bnorm_tensor_t d{3, 6, 4, 5, layout, BNORM_DTYPE_F32};
    const auto x = constant_channels(d, values, 31);
    const auto dy = random_tensor(d, 32);
    const auto gamma = random_vector(d.c, 33, 0.5, 1.5), beta = random_vector(d.c, 34, -1, 1);
    const auto rm0 = random_vector(d.c, 35, -1, 1), rv0 = random_vector(d.c, 36, 0.5, 2);
    const Train t = train(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
    const float invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(1e-5f)));
    for (int64_t c = 0; c < d.c; ++c) {
      SCOPED_TRACE(c);
      for (int64_t o : channel_offsets(d, c)) ASSERT_EQ(t.y[o], beta[c]) << o;
      EXPECT_EQ(t.sm[c], values[c]);
      EXPECT_EQ(t.si[c], invstd);
      EXPECT_FLOAT_EQ(t.rv[c], 0.9f * rv0[c]);
    }
    // Without gamma and beta, y = 0.
    const Train t0 = train(h.h, d, x, nullptr, nullptr, rm0, rv0);
    for (float v : t0.y) ASSERT_EQ(v, 0.0f);

    const Back g = back(h.h, d, x, dy, gamma.data(), t.sm, t.si);
    const Reference ref = reference_backward(d, x, dy, gamma.data(), t.sm, t.si);
    for (int64_t c = 0; c < d.c; ++c) {
      for (int64_t o : channel_offsets(d, c)) ASSERT_TRUE(std::isfinite(g.dx[o]));
      EXPECT_EQ(g.dg[c], 0.0f);
    }
    EXPECT_LT(max_channel_rel_error(d, g.dx, ref.dx), 1e-5);
    EXPECT_LT(rel_error(g.db, ref.dbeta), kTol);
  }
}

// ---- large means ----------------------------------------------------------------------

// |mean|/std = 1e4 and 1e6. float64 accumulation loses nothing that matters here: the
// mean is known to 1e-16 relative, i.e. 1e-10 of a standard deviation at 1e6, so every
// output is its float64 value rounded once (kTol). The statistics likewise.
TEST(EdgesCpu, LargeMeanAgainstFloat64) {
  Handle h;
  for (double ratio : {1e4, 1e6})
    for (bnorm_layout_t layout : kLayouts) {
      SCOPED_TRACE(testing::Message() << ratio << " layout " << layout);
      const bnorm_tensor_t d{16, 4, 8, 8, layout, BNORM_DTYPE_F32};
      const auto x = large_mean_tensor(d, ratio, 41);
      const auto dy = random_tensor(d, 42);
      const auto gamma = random_vector(d.c, 43, 0.5, 1.5), beta = random_vector(d.c, 44, -1, 1);
      const auto rm0 = random_vector(d.c, 45, -1, 1), rv0 = random_vector(d.c, 46, 0.5, 2);
      const Train t = train(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
      const Reference ref = reference_forward(d, x, gamma.data(), beta.data(), 1e-5, rm0.data(), rv0.data(), 0.1);
      EXPECT_LT(max_channel_rel_error(d, t.y, ref.y), kTol);
      EXPECT_LT(max_rel_error(t.sm, ref.mean), kTol);
      EXPECT_LT(max_rel_error(t.si, ref.invstd), kTol);
      EXPECT_LT(max_rel_error(t.rm, ref.running_mean), kTol);
      EXPECT_LT(max_rel_error(t.rv, ref.running_var), kTol);

      // Inference with the batch's own statistics: (x - mean) in float64, then rounded.
      const auto y = infer(h.h, d, x, gamma.data(), beta.data(), t.sm, t.rv);
      std::vector<double> yref(numel(d));
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t o : channel_offsets(d, c))
          yref[o] = (x[o] - static_cast<double>(t.sm[c])) / std::sqrt(static_cast<double>(t.rv[c]) + 1e-5) * gamma[c] +
                    beta[c];
      EXPECT_LT(max_channel_rel_error(d, y, yref), kTol);

      const Back g = back(h.h, d, x, dy, gamma.data(), t.sm, t.si);
      const Reference gref = reference_backward(d, x, dy, gamma.data(), t.sm, t.si);
      EXPECT_LT(max_channel_rel_error(d, g.dx, gref.dx), 1e-5);
      EXPECT_LT(rel_error(g.dg, gref.dgamma), kTol);
      EXPECT_LT(rel_error(g.db, gref.dbeta), kTol);
    }
}

// ---- denormals ------------------------------------------------------------------------

// x of order 1e-39 (denormal floats): the variance (1e-79) is far below eps, so
// invstd = 1/sqrt(eps) and y = (x - mean) * 316 is of order 1e-37, normal again. float64
// holds all of it exactly enough; inference with running_var = 1 returns denormal y,
// whose float32 rounding is absolute (2^-150), about 1e-6 of the smallest value here.
TEST(EdgesCpu, DenormalInputs) {
  Handle h;
  for (bnorm_layout_t layout : kLayouts) {
    SCOPED_TRACE(layout);
    const bnorm_tensor_t d{8, 4, 6, 6, layout, BNORM_DTYPE_F32};
    const auto x = denormal_tensor(d, 51);
    for (float v : x) ASSERT_TRUE(is_denormal(v)) << v;
    const std::vector<float> rm0(d.c, 0.0f), rv0(d.c, 1.0f);
    const Train t = train(h.h, d, x, nullptr, nullptr, rm0, rv0);
    const Reference ref = reference_forward(d, x, nullptr, nullptr, 1e-5, rm0.data(), rv0.data(), 0.1);
    EXPECT_LT(max_channel_rel_error(d, t.y, ref.y), kTol);
    EXPECT_LT(max_rel_error(t.sm, ref.mean), 1e-5);  // the mean is itself denormal
    EXPECT_LT(max_rel_error(t.si, ref.invstd), kTol);

    const auto y = infer(h.h, d, x, nullptr, nullptr, rm0, rv0);
    std::vector<double> yref(numel(d));
    for (int64_t i = 0; i < numel(d); ++i) yref[i] = x[i] / std::sqrt(1.0 + 1e-5);
    EXPECT_LT(max_channel_rel_error(d, y, yref), 1e-5);

    // Backward with denormal dy and normal x.
    const auto xn = random_tensor(d, 52);
    const Train tn = train(h.h, d, xn, nullptr, nullptr, rm0, rv0);
    const auto dy = denormal_tensor(d, 53);
    const Back g = back(h.h, d, xn, dy, nullptr, tn.sm, tn.si);
    const Reference gref = reference_backward(d, xn, dy, nullptr, tn.sm, tn.si);
    EXPECT_LT(max_channel_rel_error(d, g.dx, gref.dx), 1e-5);
    EXPECT_LT(max_rel_error(g.db, gref.dbeta), 1e-5);
    EXPECT_LT(rel_error(g.dg, gref.dgamma), 1e-5);
  }
}

// ---- determinism ----------------------------------------------------------------------

bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Same inputs, same bits: outputs, saved and running statistics, gradients; a second
// handle too. (The CPU backend visits values in one fixed order; this pins it.)
TEST(EdgesCpu, BitwiseRepeatable) {
  Handle h1, h2;
  for (bnorm_layout_t layout : kLayouts) {
    const bnorm_tensor_t d{7, 5, 6, 3, layout, BNORM_DTYPE_F32};
    const auto x = random_tensor(d, 61), dy = random_tensor(d, 62);
    const auto gamma = random_vector(d.c, 63, 0.5, 1.5), beta = random_vector(d.c, 64, -1, 1);
    const auto rm0 = random_vector(d.c, 65, -1, 1), rv0 = random_vector(d.c, 66, 0.5, 2);
    const Train t0 = train(h1.h, d, x, gamma.data(), beta.data(), rm0, rv0);
    const auto y0 = infer(h1.h, d, x, gamma.data(), beta.data(), t0.rm, t0.rv);
    const Back g0 = back(h1.h, d, x, dy, gamma.data(), t0.sm, t0.si);
    for (int run = 0; run < 3; ++run) {
      bnorm_handle_t h = run == 2 ? h2.h : h1.h;
      const Train t = train(h, d, x, gamma.data(), beta.data(), rm0, rv0);
      EXPECT_TRUE(bitwise(t.y, t0.y) && bitwise(t.sm, t0.sm) && bitwise(t.si, t0.si) && bitwise(t.rm, t0.rm) &&
                  bitwise(t.rv, t0.rv));
      EXPECT_TRUE(bitwise(infer(h, d, x, gamma.data(), beta.data(), t0.rm, t0.rv), y0));
      const Back g = back(h, d, x, dy, gamma.data(), t0.sm, t0.si);
      EXPECT_TRUE(bitwise(g.dx, g0.dx) && bitwise(g.dg, g0.dg) && bitwise(g.db, g0.db));
    }
  }
}

// ---- concurrency ----------------------------------------------------------------------

// Each thread its own handle, all three ops in a loop, at once: every result is one
// thread's result bit for bit. Between them each thread makes a failing call with its
// own eps and must read back its own message, whatever the others failed with.
// (Checked by breaking it: a shared, non-thread_local last-error string fails the
// message check within a few rounds.)
TEST(ConcurrencyCpu, HandlesPerThreadMatchOneThread) {
  const bnorm_tensor_t d = nchw(16, 6, 12, 12);
  const auto x = random_tensor(d, 71), dy = random_tensor(d, 72);
  const auto gamma = random_vector(d.c, 73, 0.5, 1.5), beta = random_vector(d.c, 74, -1, 1);
  const auto rm0 = random_vector(d.c, 75, -1, 1), rv0 = random_vector(d.c, 76, 0.5, 2);
  Train t0;
  std::vector<float> y0;
  Back g0;
  {
    Handle h;
    t0 = train(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
    y0 = infer(h.h, d, x, gamma.data(), beta.data(), t0.rm, t0.rv);
    g0 = back(h.h, d, x, dy, gamma.data(), t0.sm, t0.si);
  }
  constexpr int kThreads = 4, kRounds = 30;
  std::atomic<int> wrong_results{0}, wrong_messages{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      Handle h;
      const float bad_eps = -0.001f * static_cast<float>(t + 1);
      const std::string mine = "eps = " + std::to_string(-(t + 1)).insert(1, "0.00");  // "eps = -0.00N"
      std::vector<float> y(numel(d));
      for (int r = 0; r < kRounds; ++r) {
        const Train tr = train(h.h, d, x, gamma.data(), beta.data(), rm0, rv0);
        const auto yi = infer(h.h, d, x, gamma.data(), beta.data(), t0.rm, t0.rv);
        const Back g = back(h.h, d, x, dy, gamma.data(), t0.sm, t0.si);
        if (!(bitwise(tr.y, t0.y) && bitwise(tr.sm, t0.sm) && bitwise(tr.si, t0.si) && bitwise(tr.rm, t0.rm) &&
              bitwise(tr.rv, t0.rv) && bitwise(yi, y0) && bitwise(g.dx, g0.dx) && bitwise(g.dg, g0.dg) &&
              bitwise(g.db, g0.db)))
          ++wrong_results;
        if (bnorm_forward_training(h.h, &d, x.data(), y.data(), nullptr, nullptr, 0.1f, bad_eps, nullptr, nullptr,
                                   nullptr, nullptr) != BNORM_STATUS_INVALID_VALUE ||
            std::string(bnorm_last_error()).find(mine) == std::string::npos)
          ++wrong_messages;
        std::this_thread::yield();
        if (std::string(bnorm_last_error()).find(mine) == std::string::npos) ++wrong_messages;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong_results.load(), 0);
  EXPECT_EQ(wrong_messages.load(), 0);
}

// ---- the closed-form tensor of the 64-bit GPU tests --------------------------------

// The CPU backend (float64) on small closed-form tensors meets the checks the GPU's
// 64-bit tests apply to billions of values: this validates the references and the
// sampling (closed_form*.hpp) where a mistake would otherwise only show on a GPU. The
// checks must also fail on wrong data: outputs read one row, channel or column off, and
// a mean moved by 0.01 standard deviations.
TEST(ClosedForm, CpuBackendMeetsTheChecks) {
  Handle h;
  for (const ClosedForm& f : {ClosedForm{37, 5, 42}, ClosedForm{3, 600, 8}, ClosedForm{130, 2, 100}}) {
    SCOPED_TRACE(testing::Message() << f.n << "x" << f.c << "x" << f.hw);
    const bnorm_tensor_t d = nchw(f.n, f.c, 1, f.hw);
    std::vector<float> x(f.numel()), dy(f.numel()), gamma(f.c), beta(f.c);
    for (int64_t row = 0; row < f.n; ++row)
      for (int64_t ch = 0; ch < f.c; ++ch)
        for (int64_t i = 0; i < f.hw; ++i) {
          x[f.offset(row, ch, i)] = f.x(row, ch, i);
          dy[f.offset(row, ch, i)] = f.dy(row, i);
        }
    for (int64_t ch = 0; ch < f.c; ++ch) {
      gamma[ch] = ClosedForm::gamma(ch);
      beta[ch] = ClosedForm::beta(ch);
    }
    const auto rm0 = random_vector(f.c, 81, -1, 1), rv0 = random_vector(f.c, 82, 0.5, 2);
    std::vector<float> y(f.numel()), sm(f.c), si(f.c), rm = rm0, rv = rv0;
    ASSERT_EQ(bnorm_forward_training(h.h, &d, x.data(), y.data(), gamma.data(), beta.data(), kClosedFormMomentum,
                                     kClosedFormEps, rm.data(), rv.data(), sm.data(), si.data()),
              BNORM_STATUS_SUCCESS);
    check_closed_form_training(f, host_reader(), y.data(), sm, si, rm, rv, rm0, rv0);

    std::vector<float> yi(f.numel());
    ASSERT_EQ(bnorm_forward_inference(h.h, &d, x.data(), yi.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                      kClosedFormEps),
              BNORM_STATUS_SUCCESS);
    check_closed_form_inference(f, host_reader(), yi.data(), rm, rv);

    std::vector<float> ssm, ssi, dx(f.numel()), dg(f.c), db(f.c);
    closed_form_saved(f, &ssm, &ssi);
    ASSERT_EQ(bnorm_backward(h.h, &d, x.data(), dy.data(), gamma.data(), ssm.data(), ssi.data(), dx.data(),
                             dg.data(), db.data()),
              BNORM_STATUS_SUCCESS);
    check_closed_form_backward(f, host_reader(), dx.data(), dg, db, ssm, ssi);

    // Negative controls: values read one row, one channel or one column off.
    for (const int64_t shift : {f.c * f.hw, f.hw, int64_t{1}}) {
      SCOPED_TRACE(shift);
      const TensorReader off = [shift, &f](const float* base, int64_t offset, int64_t count) {
        const int64_t o = offset + shift + count <= f.numel() ? offset + shift : offset - shift;
        return std::vector<float>(base + o, base + o + count);
      };
      EXPECT_NONFATAL_FAILURE(check_closed_form_training(f, off, y.data(), sm, si, rm, rv, rm0, rv0),
                              "mismatches in y");
      EXPECT_NONFATAL_FAILURE(check_closed_form_inference(f, off, yi.data(), rm, rv), "mismatches in inference y");
      EXPECT_NONFATAL_FAILURE(check_closed_form_backward(f, off, dx.data(), dg, db, ssm, ssi), "mismatches in dx");
    }
    auto sm_off = sm;
    sm_off[f.c - 1] += static_cast<float>(0.01 / si[f.c - 1]);
    EXPECT_NONFATAL_FAILURE(check_closed_form_training(f, host_reader(), y.data(), sm_off, si, rm, rv, rm0, rv0),
                            "mismatches in statistics");
  }
}

}  // namespace
