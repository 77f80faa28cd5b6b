// Checks of outputs against the closed-form tensor (closed_form.hpp), for any backend:
// the statistics of every channel, and the values of the sampled windows read back by
// a TensorReader (host copy or device download).
//
// Tolerances. These tests look for indexing errors, which move a statistic by a large
// fraction of a standard deviation and a value by O(1) (re-reading the first rows of a
// channel in place of the last quarter moves its mean by 0.7 std). Against that, the
// float32 accumulation of billions of values: a float32 emulation of the reductions
// over these very tensors, every policy from t128 v1 with one CTA per channel to s128,
// stays within 1e-5 of a standard deviation in the mean and 1e-5 relative in the
// variance and the gradient sums (with channel_reduce's two-level accumulation; without
// it t128 v1 drifted by 4%). So: 1e-3 on the statistics (of a std, or relative), 2e-3 on
// each value relative to the size of its terms; two orders of magnitude from either side.
// The CPU backend (float64) meets them with room to spare: ClosedForm.CpuBackend checks
// the references and this file on small shapes.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "closed_form.hpp"

namespace bnorm_test {

// count floats at element offset of a tensor buffer, in host memory.
using TensorReader = std::function<std::vector<float>(const float* base, int64_t offset, int64_t count)>;

inline TensorReader host_reader() {
  return [](const float* base, int64_t offset, int64_t count) {
    return std::vector<float>(base + offset, base + offset + count);
  };
}

constexpr float kClosedFormEps = 1e-5f;
constexpr float kClosedFormMomentum = 0.25f;
constexpr double kStatTolerance = 1e-3;
constexpr double kValueTolerance = 2e-3;

// Counts failures and reports the first few, so that a wrong kernel on 4096 channels
// does not print 4096 lines.
class Mismatches {
 public:
  explicit Mismatches(const char* what) : what_(what) {}
  ~Mismatches() { EXPECT_EQ(count_, 0) << count_ << " mismatches in " << what_ << first_; }
  void check(bool ok, const std::string& detail) {
    if (ok) return;
    if (count_++ < 5) first_ += "\n  " + detail;
  }

 private:
  const char* what_;
  int count_ = 0;
  std::string first_;
};

inline std::string at(int64_t row, int64_t ch, int64_t i, double got, double want) {
  return "(" + std::to_string(row) + ", " + std::to_string(ch) + ", " + std::to_string(i) + "): " + std::to_string(got) +
         " vs " + std::to_string(want);
}

// Forward training: save_mean, save_invstd, the blended running statistics (from
// rm0, rv0 with kClosedFormMomentum), and y at the sampled windows.
inline void check_closed_form_training(const ClosedForm& f, const TensorReader& read, const float* y,
                                       const std::vector<float>& sm, const std::vector<float>& si,
                                       const std::vector<float>& rm, const std::vector<float>& rv,
                                       const std::vector<float>& rm0, const std::vector<float>& rv0) {
  const ClosedFormSums s = closed_form_sums(f);
  const double eps = kClosedFormEps, mo = kClosedFormMomentum, m = static_cast<double>(f.m());
  Mismatches stats("statistics");
  for (int64_t ch = 0; ch < f.c; ++ch) {
    const ClosedFormChannel cf = closed_form_channel(f, s, ch);
    const double sd = std::sqrt(cf.var), invstd = 1.0 / std::sqrt(cf.var + eps);
    const double rm_ref = (1 - mo) * rm0[ch] + mo * cf.mean, rv_ref = (1 - mo) * rv0[ch] + mo * cf.var * m / (m - 1);
    stats.check(std::fabs(sm[ch] - cf.mean) <= kStatTolerance * sd + 0x1p-23 * std::fabs(cf.mean),
                "save_mean[" + std::to_string(ch) + "] " + std::to_string(sm[ch]) + " vs " + std::to_string(cf.mean));
    stats.check(std::fabs(si[ch] / invstd - 1) <= kStatTolerance,
                "save_invstd[" + std::to_string(ch) + "] " + std::to_string(si[ch]) + " vs " + std::to_string(invstd));
    stats.check(std::fabs(rm[ch] - rm_ref) <= kStatTolerance * mo * sd + 0x1p-22 * std::fabs(rm_ref),
                "running_mean[" + std::to_string(ch) + "] " + std::to_string(rm[ch]) + " vs " + std::to_string(rm_ref));
    stats.check(std::fabs(rv[ch] / rv_ref - 1) <= kStatTolerance,
                "running_var[" + std::to_string(ch) + "] " + std::to_string(rv[ch]) + " vs " + std::to_string(rv_ref));
  }
  Mismatches values("y");
  for (const Window& w : closed_form_windows(f)) {
    const ClosedFormChannel cf = closed_form_channel(f, s, w.ch);
    const double invstd = 1.0 / std::sqrt(cf.var + eps), g = ClosedForm::gamma(w.ch), b = ClosedForm::beta(w.ch);
    const std::vector<float> got = read(y, f.offset(w.row, w.ch, w.i0), w.len);
    for (int64_t j = 0; j < w.len; ++j) {
      const double xhat = (f.x(w.row, w.ch, w.i0 + j) - cf.mean) * invstd, want = xhat * g + b;
      values.check(std::fabs(got[j] - want) <= kValueTolerance * (g * (1 + std::fabs(xhat)) + std::fabs(b)),
                   at(w.row, w.ch, w.i0 + j, got[j], want));
    }
  }
}

// Inference with the given running statistics: y at the sampled windows.
inline void check_closed_form_inference(const ClosedForm& f, const TensorReader& read, const float* y,
                                        const std::vector<float>& rm, const std::vector<float>& rv) {
  Mismatches values("inference y");
  for (const Window& w : closed_form_windows(f)) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(rv[w.ch]) + kClosedFormEps);
    const double g = ClosedForm::gamma(w.ch), b = ClosedForm::beta(w.ch);
    const std::vector<float> got = read(y, f.offset(w.row, w.ch, w.i0), w.len);
    for (int64_t j = 0; j < w.len; ++j) {
      const double xhat = (f.x(w.row, w.ch, w.i0 + j) - static_cast<double>(rm[w.ch])) * invstd, want = xhat * g + b;
      values.check(std::fabs(got[j] - want) <= kValueTolerance * (g * (1 + std::fabs(xhat)) + std::fabs(b)),
                   at(w.row, w.ch, w.i0 + j, got[j], want));
    }
  }
}

// The saved statistics backward is given: the exact ones, rounded to float.
inline void closed_form_saved(const ClosedForm& f, std::vector<float>* sm, std::vector<float>* si) {
  const ClosedFormSums s = closed_form_sums(f);
  sm->resize(f.c);
  si->resize(f.c);
  for (int64_t ch = 0; ch < f.c; ++ch) {
    const ClosedFormChannel cf = closed_form_channel(f, s, ch);
    (*sm)[ch] = static_cast<float>(cf.mean);
    (*si)[ch] = static_cast<float>(1.0 / std::sqrt(cf.var + kClosedFormEps));
  }
}

// Backward from sm, si (closed_form_saved) with gamma: dgamma, dbeta, and dx at the
// sampled windows.
inline void check_closed_form_backward(const ClosedForm& f, const TensorReader& read, const float* dx,
                                       const std::vector<float>& dg, const std::vector<float>& db,
                                       const std::vector<float>& sm, const std::vector<float>& si) {
  const ClosedFormSums s = closed_form_sums(f);
  const double m = static_cast<double>(f.m());
  std::vector<double> dg_ref(f.c), db_ref(f.c), dg_scale(f.c);
  Mismatches sums("dgamma, dbeta");
  for (int64_t ch = 0; ch < f.c; ++ch) {
    const ClosedFormGrad g = closed_form_grad(f, s, ch, sm[ch]);
    db_ref[ch] = g.sum_dy;
    dg_ref[ch] = si[ch] * g.sum_dy_xc;
    dg_scale[ch] = si[ch] * std::sqrt(g.sum_dy2 * g.sum_xc2);  // >= |dgamma|'s terms' sum
    sums.check(std::fabs(db[ch] - db_ref[ch]) <= kStatTolerance * g.sum_dy,  // dy > 0
               "dbeta[" + std::to_string(ch) + "] " + std::to_string(db[ch]) + " vs " + std::to_string(db_ref[ch]));
    sums.check(std::fabs(dg[ch] - dg_ref[ch]) <= kStatTolerance * dg_scale[ch],
               "dgamma[" + std::to_string(ch) + "] " + std::to_string(dg[ch]) + " vs " + std::to_string(dg_ref[ch]));
  }
  Mismatches values("dx");
  for (const Window& w : closed_form_windows(f)) {
    const double a = ClosedForm::gamma(w.ch) * static_cast<double>(si[w.ch]);
    const std::vector<float> got = read(dx, f.offset(w.row, w.ch, w.i0), w.len);
    for (int64_t j = 0; j < w.len; ++j) {
      const double dy = f.dy(w.row, w.i0 + j);
      const double xhat = (f.x(w.row, w.ch, w.i0 + j) - static_cast<double>(sm[w.ch])) * si[w.ch];
      const double want = a / m * (m * dy - db_ref[w.ch] - xhat * dg_ref[w.ch]);
      const double terms = a * (std::fabs(dy) + std::fabs(db_ref[w.ch]) / m + std::fabs(xhat) * dg_scale[w.ch] / m);
      values.check(std::fabs(got[j] - want) <= kValueTolerance * terms, at(w.row, w.ch, w.i0 + j, got[j], want));
    }
  }
}

}  // namespace bnorm_test
