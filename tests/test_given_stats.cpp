// Batch norm with given statistics on the CPU backend: folding into a convolution and a
// linear layer (the folded layer equals layer + inference batch norm), frozen batch
// norm's backward (the float64 reference, and the gradient of the inference forward),
// and synchronized batch norm run in-process over uneven and empty ranks (equal to
// batch norm over the concatenated batch). tests/mpi/ runs the same protocol across
// processes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bnorm/bnorm.h"
#include "host_helpers.hpp"
#include "reference_norms.hpp"

namespace {

using namespace bnorm_test;

// ---- folding ---------------------------------------------------------------------

// A direct 2-D convolution, stride 1, no padding, in float64, stored as float: NCHW
// input (n, ci, h, w), weights [co][ci][kh][kw].
std::vector<float> conv2d(const std::vector<float>& x, int64_t n, int64_t ci, int64_t h, int64_t w,
                          const std::vector<float>& wt, const float* bias, int64_t co, int64_t kh, int64_t kw) {
  const int64_t ho = h - kh + 1, wo = w - kw + 1;
  std::vector<float> y(n * co * ho * wo);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j) {
          double s = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < ci; ++c)
            for (int64_t u = 0; u < kh; ++u)
              for (int64_t v = 0; v < kw; ++v)
                s += static_cast<double>(x[((b * ci + c) * h + i + u) * w + j + v]) *
                     wt[((o * ci + c) * kh + u) * kw + v];
          y[((b * co + o) * ho + i) * wo + j] = static_cast<float>(s);
        }
  return y;
}

TEST(Fold, FoldedConvolutionEqualsConvolutionThenBatchNorm) {
  Handle h;
  const int64_t n = 4, ci = 3, hh = 9, ww = 8, co = 5, kh = 3, kw = 3;
  const bnorm_tensor_t wd = nchw(co, ci, kh, kw);
  const auto x = random_tensor(nchw(n, ci, hh, ww), 1);
  const auto wt = random_vector(co * ci * kh * kw, 2, -0.5, 0.5), bias = random_vector(co, 3, -1, 1);
  const auto gamma = random_vector(co, 4, 0.5, 1.5), beta = random_vector(co, 5, -1, 1);
  const auto rm = random_vector(co, 6, -1, 1), rv = random_vector(co, 7, 0.2, 3);
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "bias" : "no bias");
    const float* b = with_bias ? bias.data() : nullptr;
    // conv, then batch norm in inference mode
    const auto z = conv2d(x, n, ci, hh, ww, wt, b, co, kh, kw);
    const bnorm_tensor_t zd = nchw(n, co, hh - kh + 1, ww - kw + 1);
    std::vector<float> y_ref(z.size());
    ASSERT_EQ(bnorm_forward_inference(h.h, &zd, z.data(), y_ref.data(), gamma.data(), beta.data(), rm.data(),
                                      rv.data(), 1e-5f),
              BNORM_STATUS_SUCCESS);
    // the folded convolution
    std::vector<float> wf(wt.size()), bf(co, 99.0f);
    ASSERT_EQ(bnorm_fold_into_weights(h.h, &wd, wt.data(), b, gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f,
                                      wf.data(), bf.data()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    const auto y = conv2d(x, n, ci, hh, ww, wf, bf.data(), co, kh, kw);
    EXPECT_LT(rel_error(y, to_double(y_ref)), 2e-6);  // fp32: a few roundings apart
    // In place gives the same bits.
    std::vector<float> w2 = wt, b2 = with_bias ? bias : std::vector<float>(co, 0.0f);
    ASSERT_EQ(bnorm_fold_into_weights(h.h, &wd, w2.data(), b2.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                      1e-5f, w2.data(), b2.data()),
              BNORM_STATUS_SUCCESS);
    EXPECT_EQ(w2, wf);
    EXPECT_EQ(b2, bf);
  }
}

TEST(Fold, FoldedLinearLayerEqualsLinearThenBatchNorm) {
  Handle h;
  const int64_t n = 16, in = 20, out = 7;
  const bnorm_tensor_t wd = nchw(out, in, 1, 1);
  const auto x = random_vector(n * in, 11, -2, 2), wt = random_vector(out * in, 12, -0.3, 0.3);
  const auto bias = random_vector(out, 13, -1, 1), gamma = random_vector(out, 14, 0.5, 1.5);
  const auto beta = random_vector(out, 15, -1, 1), rm = random_vector(out, 16, -1, 1), rv = random_vector(out, 17, .2, 3);
  auto linear = [&](const std::vector<float>& w, const float* b) {
    std::vector<float> y(n * out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = b[o];
        for (int64_t k = 0; k < in; ++k) s += static_cast<double>(x[r * in + k]) * w[o * in + k];
        y[r * out + o] = static_cast<float>(s);
      }
    return y;
  };
  const auto z = linear(wt, bias.data());
  const bnorm_tensor_t zd = nchw(n, out, 1, 1);
  std::vector<float> y_ref(z.size()), wf(wt.size()), bf(out);
  ASSERT_EQ(bnorm_forward_inference(h.h, &zd, z.data(), y_ref.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                    1e-3f),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_fold_into_weights(h.h, &wd, wt.data(), bias.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                    1e-3f, wf.data(), bf.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_LT(rel_error(linear(wf, bf.data()), to_double(y_ref)), 2e-6);
}

TEST(Fold, EveryLayoutAndDtypeScalesRows) {
  Handle h;
  const int64_t co = 4, ci = 3, kh = 2, kw = 5, k = ci * kh * kw;
  const auto gamma = random_vector(co, 21, 0.5, 1.5), beta = random_vector(co, 22, -1, 1);
  const auto rm = random_vector(co, 23, -1, 1), rv = random_vector(co, 24, 0.2, 3);
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC})
    for (bnorm_dtype_t t : {BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + (layout == BNORM_LAYOUT_NCHW ? " nchw" : " nhwc"));
      const bnorm_tensor_t wd{co, ci, kh, kw, layout, t};
      const auto w = quantized(random_vector(co * k, 25, -1, 1), t);
      const auto ws = to_storage(w, t);
      std::vector<unsigned char> out(ws.size());
      std::vector<float> bf(co);
      ASSERT_EQ(bnorm_fold_into_weights(h.h, &wd, ws.data(), nullptr, gamma.data(), beta.data(), rm.data(), rv.data(),
                                        1e-5f, out.data(), bf.data()),
                BNORM_STATUS_SUCCESS);
      const auto got = from_storage(out, t);
      std::vector<double> want(w.size());
      for (int64_t o = 0; o < co; ++o) {
        const double s = gamma[o] / std::sqrt(static_cast<double>(rv[o]) + 1e-5);
        for (int64_t i = 0; i < k; ++i) want[o * k + i] = w[o * k + i] * s;  // any order within a row
        EXPECT_NEAR(bf[o], -rm[o] * s + beta[o], 1e-6);
      }
      EXPECT_LT(rel_error(got, want), 2 * unit_roundoff(t));
    }
}

// ---- frozen batch norm -------------------------------------------------------------

TEST(Frozen, BackwardMatchesTheReferenceInEveryLayoutAndDtype) {
  Handle h;
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC})
    for (bnorm_dtype_t t : {BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + (layout == BNORM_LAYOUT_NCHW ? " nchw" : " nhwc"));
      const bnorm_tensor_t d{3, 5, 4, 7, layout, t};
      const auto x = random_input(d, 31), dy = random_input(d, 32);
      const auto gamma = random_vector(d.c, 33, 0.5, 1.5), rm = random_vector(d.c, 34, -1, 1);
      const auto rv = random_vector(d.c, 35, 0.2, 3);
      const auto xs = to_storage(x, t), dys = to_storage(dy, t);
      std::vector<unsigned char> dx(xs.size());
      auto dg = poisoned(d.c), db = poisoned(d.c);
      ASSERT_EQ(bnorm_backward_frozen(h.h, &d, xs.data(), dys.data(), gamma.data(), rm.data(), rv.data(), 1e-5f,
                                      dx.data(), dg.data(), db.data()),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      const NormRef r = frozen_backward_ref(d, x, dy, gamma.data(), rm, rv, 1e-5);
      const double tol = t == BNORM_DTYPE_F32 ? 1e-6 : 2 * unit_roundoff(t);
      EXPECT_LT(rel_error(from_storage(dx, t), r.dx), tol);
      EXPECT_LT(rel_error(dg, r.dgamma), 1e-6);
      EXPECT_LT(rel_error(db, r.dbeta), 1e-6);
      // Without parameter gradients x is not needed.
      std::vector<unsigned char> dx2(xs.size());
      ASSERT_EQ(bnorm_backward_frozen(h.h, &d, nullptr, dys.data(), gamma.data(), rm.data(), rv.data(), 1e-5f,
                                      dx2.data(), nullptr, nullptr),
                BNORM_STATUS_SUCCESS);
      EXPECT_EQ(dx2, dx);
    }
}

// The inference forward is affine in x, gamma and beta: central differences are exact up
// to rounding, so the frozen backward must be its gradient.
TEST(Frozen, BackwardIsTheGradientOfTheInferenceForward) {
  Handle h;
  const bnorm_tensor_t d = nchw(2, 3, 3, 3);
  const int64_t ne = numel(d);
  const auto x = random_tensor(d, 41), w = random_tensor(d, 42), v = random_tensor(d, 43);
  const auto gamma = random_vector(3, 44, 0.5, 1.5), beta = random_vector(3, 45, -1, 1);
  const auto rm = random_vector(3, 46, -1, 1), rv = random_vector(3, 47, 0.2, 3);
  auto loss = [&](double step) {
    std::vector<float> xs(ne), y(ne);
    for (int64_t i = 0; i < ne; ++i) xs[i] = static_cast<float>(x[i] + step * v[i]);
    EXPECT_EQ(bnorm_forward_inference(h.h, &d, xs.data(), y.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                      1e-5f),
              BNORM_STATUS_SUCCESS);
    double l = 0.0;
    for (int64_t i = 0; i < ne; ++i) l += static_cast<double>(y[i]) * w[i];
    return l;
  };
  std::vector<float> dx(ne), dg(3), db(3);
  ASSERT_EQ(bnorm_backward_frozen(h.h, &d, x.data(), w.data(), gamma.data(), rm.data(), rv.data(), 1e-5f, dx.data(),
                                  dg.data(), db.data()),
            BNORM_STATUS_SUCCESS);
  double dir = 0.0;
  for (int64_t i = 0; i < ne; ++i) dir += static_cast<double>(dx[i]) * v[i];
  EXPECT_NEAR((loss(0.25) - loss(-0.25)) / 0.5, dir, 1e-4 * std::max(1.0, std::abs(dir)));
  // dbeta = sum(w) and dgamma = sum(w * xhat) per channel, from the same forward.
  for (int64_t c = 0; c < 3; ++c) {
    double sw = 0.0, swx = 0.0;
    const double is = 1.0 / std::sqrt(static_cast<double>(rv[c]) + 1e-5);
    for (int64_t j = 0; j < per_channel(d); ++j) {
      sw += w[offset(d, c, j)];
      swx += w[offset(d, c, j)] * (x[offset(d, c, j)] - rm[c]) * is;
    }
    EXPECT_NEAR(db[c], sw, 1e-5);
    EXPECT_NEAR(dg[c], swx, 1e-5);
  }
}

// ---- synchronized batch norm, in one process --------------------------------------

// Runs the protocol of bnorm.h over ranks holding `sizes` samples each (the batch split
// along n), the collectives done by hand in rank order, and compares the concatenated
// outputs with batch norm over the whole batch.
void check_sync(bnorm_layout_t layout, const std::vector<int64_t>& sizes) {
  Handle h;
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const int64_t c = 3, hh = 4, ww = 5, per_sample = c * hh * ww, ranks = static_cast<int64_t>(sizes.size());
  const bnorm_tensor_t whole{total, c, hh, ww, layout, BNORM_DTYPE_F32};
  const auto x = random_tensor(whole, 51, 3.0), dy = random_tensor(whole, 52);
  const auto gamma = random_vector(c, 53, 0.5, 1.5), beta = random_vector(c, 54, -1, 1);
  const auto rm0 = random_vector(c, 55, -1, 1), rv0 = random_vector(c, 56, 0.5, 2);

  // The single-process answer.
  std::vector<float> y_ref(x.size()), dx_ref(x.size()), sm(c), si(c), dg_ref(c), db_ref(c);
  std::vector<float> rm_ref = rm0, rv_ref = rv0;
  ASSERT_EQ(bnorm_forward_training(h.h, &whole, x.data(), y_ref.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                   rm_ref.data(), rv_ref.data(), sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_backward(h.h, &whole, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx_ref.data(),
                           dg_ref.data(), db_ref.data()),
            BNORM_STATUS_SUCCESS);

  // Each rank's slice: samples are contiguous in either layout.
  std::vector<int64_t> first(ranks, 0);
  for (int64_t r = 1; r < ranks; ++r) first[r] = first[r - 1] + sizes[r - 1];
  auto desc = [&](int64_t r) { return bnorm_tensor_t{sizes[r], c, hh, ww, layout, BNORM_DTYPE_F32}; };
  auto slice = [&](const std::vector<float>& v, int64_t r) { return v.data() + first[r] * per_sample; };

  std::vector<float> gathered(ranks * 3 * c, -1.0f);
  for (int64_t r = 0; r < ranks; ++r) {
    const bnorm_tensor_t d = desc(r);
    ASSERT_EQ(bnorm_sync_local_stats(h.h, &d, sizes[r] ? slice(x, r) : nullptr, gathered.data() + r * 3 * c),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
  }
  std::vector<float> global(3 * c);
  ASSERT_EQ(bnorm_sync_merge_stats(h.h, c, ranks, gathered.data(), global.data()), BNORM_STATUS_SUCCESS);
  std::vector<float> y(x.size(), NAN), dx(x.size(), NAN), sums(ranks * 2 * c), all_sums(2 * c, 0.0f);
  std::vector<std::vector<float>> rms(ranks, rm0), rvs(ranks, rv0), sms(ranks, std::vector<float>(c)),
      sis(ranks, std::vector<float>(c)), dgs(ranks, std::vector<float>(c)), dbs(ranks, std::vector<float>(c));
  for (int64_t r = 0; r < ranks; ++r) {
    const bnorm_tensor_t d = desc(r);
    ASSERT_EQ(bnorm_sync_forward(h.h, &d, slice(x, r), y.data() + first[r] * per_sample, gamma.data(), beta.data(),
                                 global.data(), 0.1f, 1e-5f, rms[r].data(), rvs[r].data(), sms[r].data(),
                                 sis[r].data()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(bnorm_sync_backward_sums(h.h, &d, slice(x, r), slice(dy, r), sms[r].data(), sums.data() + r * 2 * c),
              BNORM_STATUS_SUCCESS);
  }
  for (int64_t r = 0; r < ranks; ++r)  // the all-reduce, in rank order
    for (int64_t i = 0; i < 2 * c; ++i) all_sums[i] += sums[r * 2 * c + i];
  for (int64_t r = 0; r < ranks; ++r) {
    const bnorm_tensor_t d = desc(r);
    ASSERT_EQ(bnorm_sync_backward(h.h, &d, slice(x, r), slice(dy, r), gamma.data(), sms[r].data(), sis[r].data(),
                                  global.data(), all_sums.data(), dx.data() + first[r] * per_sample, dgs[r].data(),
                                  dbs[r].data()),
              BNORM_STATUS_SUCCESS);
  }
  EXPECT_LT(max_channel_rel_error(whole, y, to_double(y_ref)), 1e-5);
  EXPECT_LT(max_channel_rel_error(whole, dx, to_double(dx_ref), nullptr), 1e-4);
  for (int64_t r = 0; r < ranks; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r) + " of size " + std::to_string(sizes[r]));
    // Every rank, the empty ones included, holds the same statistics and gradients.
    EXPECT_EQ(rms[r], rms[0]);
    EXPECT_EQ(rvs[r], rvs[0]);
    EXPECT_EQ(sis[r], sis[0]);
    EXPECT_EQ(dgs[r], dgs[0]);
    EXPECT_LT(rel_error(rms[r], to_double(rm_ref)), 1e-6);
    EXPECT_LT(rel_error(rvs[r], to_double(rv_ref)), 1e-6);
    EXPECT_LT(rel_error(sms[r], to_double(sm)), 1e-6);
    EXPECT_LT(rel_error(sis[r], to_double(si)), 1e-6);
    EXPECT_LT(rel_error(dgs[r], to_double(dg_ref)), 1e-5);
    EXPECT_LT(rel_error(dbs[r], to_double(db_ref)), 1e-5);
  }
}

TEST(Sync, UnevenAndEmptyRanksEqualOneProcess) {
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC}) {
    check_sync(layout, {3, 0, 5, 1});
    check_sync(layout, {0, 7});
    check_sync(layout, {2, 2, 2, 2});
  }
}

TEST(Sync, MergeIsChanInRankOrderAndEmptyStatesAreNeutral) {
  Handle h;
  // Two channels; rank 1 empty. Channel 0: {1, 2, 3} and {10}; channel 1: {4} and {4, 6}.
  const std::vector<float> gathered = {3, 2, 2, 1, 4, 0,  //
                                       0, 0, 0, 0, 0, 0,  //
                                       1, 10, 0, 2, 5, 2};
  std::vector<float> global(6);
  ASSERT_EQ(bnorm_sync_merge_stats(h.h, 2, 3, gathered.data(), global.data()), BNORM_STATUS_SUCCESS);
  EXPECT_FLOAT_EQ(global[0], 4);
  EXPECT_FLOAT_EQ(global[1], 4);  // (1 + 2 + 3 + 10) / 4
  EXPECT_FLOAT_EQ(global[2], 9 + 4 + 1 + 36);
  EXPECT_FLOAT_EQ(global[3], 3);
  EXPECT_FLOAT_EQ(global[4], 14.0f / 3);
  EXPECT_NEAR(global[5], 2 * (4 - 14.0 / 3) * (4 - 14.0 / 3) + (6 - 14.0 / 3) * (6 - 14.0 / 3), 1e-5);
  EXPECT_EQ(bnorm_sync_merge_stats(h.h, 2, 3, gathered.data(), const_cast<float*>(gathered.data()) + 4),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_sync_merge_stats(h.h, 2, 0, gathered.data(), global.data()), BNORM_STATUS_INVALID_VALUE);
}

TEST(Sync, ABatchOfOneValueLeavesRunningStatisticsAlone) {
  Handle h;
  const bnorm_tensor_t d = nchw(1, 2, 1, 1);
  const std::vector<float> x = {3, 4}, global = {1, 3, 0, 1, 4, 0};
  std::vector<float> y(2), rm = {7, 7}, rv = {8, 8}, sm(2), si(2);
  ASSERT_EQ(bnorm_sync_forward(h.h, &d, x.data(), y.data(), nullptr, nullptr, global.data(), 0.5f, 1e-5f, rm.data(),
                               rv.data(), sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(rm, (std::vector<float>{7, 7}));
  EXPECT_EQ(rv, (std::vector<float>{8, 8}));
  EXPECT_EQ(y, (std::vector<float>{0, 0}));
  EXPECT_EQ(sm, (std::vector<float>{3, 4}));
}

}  // namespace
