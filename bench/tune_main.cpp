// bnorm-tune: for each shape and op, every configuration of bnorm_list_variants is
// checked against the CPU reference, the correct ones are timed, and the fastest is
// written to the tuning cache with two runners-up (see README.md, "The tuner").
//
// Per (shape, op):
//   1. fresh random non-zero inputs in the shape's dtype and layout; the reference
//      once, by the CPU backend (float64 accumulation) through the public API;
//   2. per configuration, twice: outputs poisoned with NaN, running statistics
//      restored, one forced call; the first run's outputs against the reference
//      (relative error within --rtol, every value written), the second bitwise equal
//      to the first. A configuration failing either is logged and never cached;
//   3. the correct ones timed as bnorm-bench times them (rotating buffers, events,
//      median), the fastest few re-timed in interleaved rounds; the heuristic's own
//      choice wins when within 2% of the fastest (the simpler choice, and no cache
//      entry is needed to get it);
//   4. the entry (winner + two runners-up) merged into the cache file, which is
//      rewritten atomically after every entry so a run cut short keeps its work.
// The toolbox's operations (group "toolbox", common/toolbox.hpp) go through the same
// steps, their reference being the CPU backend's run of the same call; group norm is
// checked and timed but not cached (the key has no group count).
// Fused shapes (_add_relu) are skipped: the cache key has no activation, and their
// calls use the entries of the plain op of the same dtype, layout and shape.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/buffers.hpp"
#include "common/cuda_util.hpp"
#include "common/device_ops.hpp"
#include "common/suite.hpp"
#include "common/timing.hpp"
#include "common/toolbox.hpp"
#include "common/variants.hpp"
#include "tuning_cache.hpp"

namespace bnorm_bench {
namespace {

using json = nlohmann::ordered_json;
namespace tuning = bnorm::tuning;

constexpr double kPreferHeuristicWithin = 1.02;

struct Options {
  std::string out = "bnorm_tuning.json";
  std::string report;
  std::vector<Shape> shapes = suite();
  bool shapes_given = false;
  std::vector<std::string> groups;  // empty: all
  std::vector<bnorm_op_t> ops{std::begin(kOps), std::end(kOps)};
  bool toolbox = true;  // the toolbox's cases
  bool toolbox_named = false;
  std::vector<bnorm_op_t> toolbox_ops = bnorm_bench::toolbox_ops();
  int device = 0;
  double rtol = 1e-4;
  int finalists = 3;
  int rounds = 5;
  bool fresh = false;
  bool list = false;
  bool check_only = false;
  uint64_t seed = 0;
  TimingConfig timing;
};

void usage() {
  std::string groups;
  for (const std::string& g : suite_groups()) groups += (groups.empty() ? "" : ",") + g;
  std::fprintf(stderr,
               "bnorm-tune [options]\n"
               "  --out=FILE          the tuning cache to write (default bnorm_tuning.json); entries\n"
               "                      of other shapes and GPUs already in it are kept\n"
               "  --fresh             start a new file instead of merging into FILE\n"
               "  --report=FILE       every configuration's verdict and time, as JSON\n"
               "  --shapes=suite|NxCxHxW[_f16|_bf16][_nhwc],...   (default: the suite)\n"
               "  --groups=all|group,...   suite groups (default all): %s,toolbox\n"
               "  --ops=all|op,...    forward_training,forward_inference,backward, and the toolbox's\n"
               "                      (backward_frozen, group_norm_forward, ...)\n"
               "  --rtol=X            relative error allowed against the reference (1e-4)\n"
               "  --finalists=K       fastest configurations re-timed interleaved (3)\n"
               "  --rounds=R          interleaved rounds (5)\n"
               "  --target_ms=MS      device time per timing (default 20)\n"
               "  --seed=S            input seed (default: random)\n"
               "  --device=D          CUDA device (0)\n"
               "  --check_only        only check every configuration (no timing, no cache); exit 3\n"
               "                      if any is rejected: a correctness sweep, e.g. under\n"
               "                      compute-sanitizer\n"
               "  --list              print the configurations per shape and op, and exit\n"
               "                      (without a device: those of a stand-in 132-SM sm_90 GPU)\n"
               "  --rtol applies to fp32 outputs; a 16-bit y or dx is allowed 4 units of its rounding\n"
               "  as well (as the tests allow). Fused shapes (_add_relu) are skipped: the cache key\n"
               "  has no activation.\n",
               groups.c_str());
}

bool parse_options(int argc, char** argv, Options* o) {
  o->timing.target_ms = 20.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag, std::string* out) {
      const std::string f = std::string(flag) + "=";
      if (a.compare(0, f.size(), f) != 0) return false;
      *out = a.substr(f.size());
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--fresh") {
      o->fresh = true;
    } else if (a == "--list") {
      o->list = true;
    } else if (a == "--check_only") {
      o->check_only = true;
    } else if (value("--out", &v)) {
      o->out = v;
    } else if (value("--report", &v)) {
      o->report = v;
    } else if (value("--shapes", &v)) {
      if (!parse_shapes(v, &o->shapes)) return false;
      o->shapes_given = true;
    } else if (value("--groups", &v)) {
      std::string bad, suite_part;
      split_toolbox_group(v, &o->toolbox, &suite_part);
      o->toolbox_named = true;
      if (suite_part.empty()) {
        o->groups = {"toolbox"};  // matches no suite shape
      } else if (!parse_groups(suite_part, &o->groups, &bad)) {
        std::fprintf(stderr, "bnorm-tune: unknown group '%s'\n", bad.c_str());
        return false;
      }
    } else if (value("--ops", &v)) {
      std::vector<bnorm_op_t> all;
      if (!parse_ops(v, &all)) return false;
      if (v != "all") split_toolbox_ops(all, &o->ops, &o->toolbox_ops);
    } else if (value("--rtol", &v)) {
      o->rtol = std::atof(v.c_str());
      if (!(o->rtol > 0)) return false;
    } else if (value("--finalists", &v)) {
      o->finalists = std::atoi(v.c_str());
      if (o->finalists < 1) return false;
    } else if (value("--rounds", &v)) {
      o->rounds = std::atoi(v.c_str());
      if (o->rounds < 1) return false;
    } else if (value("--target_ms", &v)) {
      o->timing.target_ms = std::atof(v.c_str());
      if (!(o->timing.target_ms > 0)) return false;
    } else if (value("--seed", &v)) {
      o->seed = std::strtoull(v.c_str(), nullptr, 0);
    } else if (value("--device", &v)) {
      o->device = std::atoi(v.c_str());
    } else {
      std::fprintf(stderr, "bnorm-tune: unknown argument '%s'\n", a.c_str());
      return false;
    }
  }
  if (o->shapes_given && !o->toolbox_named) o->toolbox = false;
  o->shapes = filter_groups(o->shapes, o->groups);
  if (o->shapes.empty() && !(o->toolbox && !o->shapes_given)) {
    std::fprintf(stderr, "bnorm-tune: no shape of the suite%s is in the groups given\n",
                 o->shapes_given ? " or of --shapes" : "");
    return false;
  }
  return true;
}

// ||a - ref|| / ||ref|| on the host; +inf if a holds a NaN or Inf (an unwritten value).
// Candidates are checked against the CPU backend's float64 variant, not its fast one.
void use_oracle(bnorm_handle_t cpu) {
  for (int op = BNORM_OP_FORWARD_TRAINING; op <= BNORM_OP_SYNC_BACKWARD; ++op)
    bnorm_set_variant(cpu, static_cast<bnorm_op_t>(op), "cpu_reference");
}

double rel_error(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double v = a[i], r = ref[i];
    if (!std::isfinite(v)) return std::numeric_limits<double>::infinity();
    num += (v - r) * (v - r);
    den += r * r;
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

void upload(float* dst, const std::vector<float>& src, cudaStream_t s) {
  BNB_CUDA(cudaMemcpyAsync(dst, src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice, s));
}
std::vector<float> download(const float* src, size_t n, cudaStream_t s) {
  std::vector<float> v(n);
  BNB_CUDA(cudaMemcpyAsync(v.data(), src, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  BNB_CUDA(cudaStreamSynchronize(s));
  return v;
}

// A tensor on the host in its stored form (float, half or bfloat16 bits).
using Bytes = std::vector<unsigned char>;
void upload_bytes(void* dst, const Bytes& src, cudaStream_t s) {
  BNB_CUDA(cudaMemcpyAsync(dst, src.data(), src.size(), cudaMemcpyHostToDevice, s));
}
Bytes download_bytes(const void* src, size_t bytes, cudaStream_t s) {
  Bytes v(bytes);
  BNB_CUDA(cudaMemcpyAsync(v.data(), src, bytes, cudaMemcpyDeviceToHost, s));
  BNB_CUDA(cudaStreamSynchronize(s));
  return v;
}

// The tolerance of a tensor output (y, dx): a 16-bit one differs from the reference by
// its rounding too (the GPU rounds an fp32 result, the CPU an fp64 one), as the tests
// allow: 4 units of the dtype's roundoff.
double tensor_rtol(bnorm_dtype_t t, double rtol) {
  const double u = t == BNORM_DTYPE_F32 ? 0x1p-24 : t == BNORM_DTYPE_F16 ? 0x1p-11 : 0x1p-8;
  return std::max(rtol, 4 * u);
}

// One shape's inputs and CPU references, and the device buffers of the checks.
// Tensors are in the shape's dtype and layout; per-channel vectors are fp32.
struct Problem {
  Shape shape;
  Bytes x, dy;
  std::vector<float> gamma, beta, rm0, rv0;
  // References: forward training, inference, backward (from the reference's own saved
  // statistics, which the GPU backward gets too).
  Bytes y_train;
  std::vector<float> save_mean, save_invstd, rm_train, rv_train;
  Bytes y_infer;
  Bytes dx;
  std::vector<float> dgamma, dbeta;

  DeviceBuffer d_x, d_dy, d_out, d_first, d_ref, d_chan;
  size_t cstride = 0;
  float* chan(int i) const { return d_chan.f() + i * cstride; }
  // Per-channel device vectors.
  float* gamma_d() const { return chan(0); }
  float* beta_d() const { return chan(1); }
  float* rm_d() const { return chan(2); }
  float* rv_d() const { return chan(3); }
  float* save_mean_d() const { return chan(4); }    // forward output
  float* save_invstd_d() const { return chan(5); }  // forward output
  float* saved_mean_in() const { return chan(6); }  // backward input
  float* saved_invstd_in() const { return chan(7); }
  float* dgamma_d() const { return chan(8); }
  float* dbeta_d() const { return chan(9); }
};

void build_problem(Problem& p, const Shape& s, uint64_t seed, cudaStream_t st) {
  p.shape = s;
  const int64_t n = s.numel();
  const size_t bytes = s.bytes();
  p.d_x.reset(bytes);
  p.d_dy.reset(bytes);
  p.d_out.reset(bytes);
  p.d_first.reset(bytes);
  p.d_ref.reset(bytes);
  p.cstride = (static_cast<size_t>(s.c) + 63) / 64 * 64;
  p.d_chan.reset(10 * p.cstride * sizeof(float));

  // Inputs: per-channel means and spreads, drawn on the device, then the host copies
  // for the reference.
  fill_channels(p.d_x.get(), s.dtype, s.layout, n, s.c, s.h * s.w, seed, st);
  fill_channels(p.d_dy.get(), s.dtype, s.layout, n, s.c, s.h * s.w, seed ^ 0xD1D1D1D1ull, st);
  p.x = download_bytes(p.d_x.get(), bytes, st);
  p.dy = download_bytes(p.d_dy.get(), bytes, st);
  std::mt19937_64 rng(seed);
  auto uniform = [&](double lo, double hi) {
    std::vector<float> v(s.c);
    std::uniform_real_distribution<double> u(lo, hi);
    for (float& e : v) e = static_cast<float>(u(rng));
    return v;
  };
  p.gamma = uniform(0.5, 1.5);
  p.beta = uniform(-0.5, 0.5);
  p.rm0 = uniform(-0.5, 0.5);
  p.rv0 = uniform(0.5, 2.0);
  upload(p.gamma_d(), p.gamma, st);
  upload(p.beta_d(), p.beta, st);

  bnorm_handle_t cpu = nullptr;
  BNB_BNORM(bnorm_create(&cpu, BNORM_BACKEND_CPU, 0));
  use_oracle(cpu);
  const bnorm_tensor_t d = s.desc();
  p.y_infer.assign(bytes, 0);
  BNB_BNORM(bnorm_forward_inference(cpu, &d, p.x.data(), p.y_infer.data(), p.gamma.data(),
                                    p.beta.data(), p.rm0.data(), p.rv0.data(), kEps));
  if (s.per_channel() >= 2) {
    p.y_train.assign(bytes, 0);
    p.save_mean.assign(s.c, 0.0f);
    p.save_invstd.assign(s.c, 0.0f);
    p.rm_train = p.rm0;
    p.rv_train = p.rv0;
    BNB_BNORM(bnorm_forward_training(cpu, &d, p.x.data(), p.y_train.data(), p.gamma.data(),
                                     p.beta.data(), kMomentum, kEps, p.rm_train.data(),
                                     p.rv_train.data(), p.save_mean.data(), p.save_invstd.data()));
    p.dx.assign(bytes, 0);
    p.dgamma.assign(s.c, 0.0f);
    p.dbeta.assign(s.c, 0.0f);
    BNB_BNORM(bnorm_backward(cpu, &d, p.x.data(), p.dy.data(), p.gamma.data(), p.save_mean.data(),
                             p.save_invstd.data(), p.dx.data(), p.dgamma.data(), p.dbeta.data()));
    upload(p.saved_mean_in(), p.save_mean, st);
    upload(p.saved_invstd_in(), p.save_invstd, st);
  }
  bnorm_destroy(cpu);
  BNB_CUDA(cudaStreamSynchronize(st));
}

// The per-channel outputs of op, as (name, device pointer, reference).
struct ChannelOut {
  const char* name;
  float* d;
  const std::vector<float>* ref;
};
std::vector<ChannelOut> channel_outputs(const Problem& p, bnorm_op_t op) {
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING:
      return {{"save_mean", p.save_mean_d(), &p.save_mean},
              {"save_invstd", p.save_invstd_d(), &p.save_invstd},
              {"running_mean", p.rm_d(), &p.rm_train},
              {"running_var", p.rv_d(), &p.rv_train}};
    case BNORM_OP_BACKWARD:
      return {{"dgamma", p.dgamma_d(), &p.dgamma}, {"dbeta", p.dbeta_d(), &p.dbeta}};
    default: break;
  }
  return {};
}
const Bytes& tensor_reference(const Problem& p, bnorm_op_t op) {
  return op == BNORM_OP_FORWARD_TRAINING ? p.y_train : op == BNORM_OP_BACKWARD ? p.dx : p.y_infer;
}

bnorm_status_t call_checked(bnorm_handle_t h, bnorm_op_t op, const Problem& p) {
  const bnorm_tensor_t d = p.shape.desc();
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING:
      return bnorm_forward_training(h, &d, p.d_x.get(), p.d_out.get(), p.gamma_d(), p.beta_d(), kMomentum,
                                    kEps, p.rm_d(), p.rv_d(), p.save_mean_d(), p.save_invstd_d());
    case BNORM_OP_FORWARD_INFERENCE:
      return bnorm_forward_inference(h, &d, p.d_x.get(), p.d_out.get(), p.gamma_d(), p.beta_d(), p.rm_d(),
                                     p.rv_d(), kEps);
    case BNORM_OP_BACKWARD:
      return bnorm_backward(h, &d, p.d_x.get(), p.d_dy.get(), p.gamma_d(), p.saved_mean_in(),
                            p.saved_invstd_in(), p.d_out.get(), p.dgamma_d(), p.dbeta_d());
    default: break;
  }
  return BNORM_STATUS_INVALID_VALUE;
}

struct Candidate {
  std::string spec;
  bool heuristic = false;
  std::string verdict = "ok";  // ok | wrong | not_repeatable | failed
  std::string detail;
  json errors = json::object();
  double first_ms = 0.0, final_ms = 0.0;
  bool finalist = false;
  bool correct() const { return verdict == "ok"; }
};

// Two poisoned runs of the forced configuration: correct against the reference, and
// bitwise repeatable.
void check(bnorm_handle_t h, bnorm_op_t op, const Problem& p, Comparer& cmp, double rtol,
           cudaStream_t st, Candidate* c) {
  const int64_t n = p.shape.numel();
  const std::vector<ChannelOut> outs = channel_outputs(p, op);
  std::vector<std::vector<float>> first(outs.size());
  for (int run = 0; run < 2; ++run) {
    // NaN in every output (all-ones bytes are a NaN), running statistics as before.
    BNB_CUDA(cudaMemsetAsync(p.d_out.get(), 0xFF, p.shape.bytes(), st));
    for (const ChannelOut& o : outs) BNB_CUDA(cudaMemsetAsync(o.d, 0xFF, p.shape.c * sizeof(float), st));
    upload(p.rm_d(), p.rm0, st);
    upload(p.rv_d(), p.rv0, st);
    const bnorm_status_t s = call_checked(h, op, p);
    if (s != BNORM_STATUS_SUCCESS) {
      c->verdict = "failed";
      c->detail = std::string(bnorm_status_string(s)) + ": " + bnorm_last_error();
      return;
    }
    BNB_CUDA(cudaStreamSynchronize(st));
    if (run == 0) {
      const double e = cmp.compare(p.d_out.get(), p.d_ref.get(), p.shape.dtype, n, st).rel();
      c->errors[op == BNORM_OP_BACKWARD ? "dx" : "y"] = std::isfinite(e) ? json(e) : json("inf");
      bool wrong = !(e <= tensor_rtol(p.shape.dtype, rtol));
      for (size_t i = 0; i < outs.size(); ++i) {
        first[i] = download(outs[i].d, p.shape.c, st);
        const double ei = rel_error(first[i], *outs[i].ref);
        c->errors[outs[i].name] = std::isfinite(ei) ? json(ei) : json("inf");
        wrong = wrong || !(ei <= rtol);
      }
      if (wrong) {
        c->verdict = "wrong";
        c->detail = "relative error above " + std::to_string(rtol) + " (or a value left unwritten)";
        return;
      }
      BNB_CUDA(cudaMemcpyAsync(p.d_first.get(), p.d_out.get(), p.shape.bytes(), cudaMemcpyDeviceToDevice, st));
    } else {
      const unsigned long long diff = cmp.bitwise_differences(p.d_out.get(), p.d_first.get(), p.shape.dtype, n, st);
      std::string differs = diff ? std::to_string(diff) + " values of the tensor" : "";
      for (size_t i = 0; i < outs.size(); ++i) {
        const std::vector<float> again = download(outs[i].d, p.shape.c, st);
        if (std::memcmp(again.data(), first[i].data(), again.size() * sizeof(float)) != 0)
          differs += std::string(differs.empty() ? "" : ", ") + outs[i].name;
      }
      if (!differs.empty()) {
        c->verdict = "not_repeatable";
        c->detail = "second run differs: " + differs;
      }
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string fmt_ms(double ms) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", ms);
  return b;
}

struct Context {
  Options opt;
  DeviceFacts facts;
  double copy_gbps = 0.0;
  cudaStream_t stream = nullptr;
  bnorm_handle_t h = nullptr;
  RotatingBuffers rot;
  ToolboxBuffers tb;
  tuning::CacheFile cache;
  json report = json::array();
  int rejected = 0;
};

void write_cache(Context& cx) {
  const bnorm::Status s = tuning::write_file(cx.opt.out, cx.cache);
  if (!s.ok()) throw Error("cannot write the tuning cache: " + s.message);
}

void write_report(const Context& cx) {
  if (cx.opt.report.empty()) return;
  json j;
  j["gpu"] = cx.facts.name;
  j["sm_count"] = cx.facts.sm_count;
  j["copy_bandwidth_gb_per_s"] = cx.copy_gbps;
  j["commit"] = commit_hash();
  j["rtol"] = cx.opt.rtol;
  j["rejected"] = cx.rejected;
  j["results"] = cx.report;
  const std::string tmp = cx.opt.report + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) throw Error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), cx.opt.report.c_str()) != 0) throw Error("cannot rename " + tmp);
}

void upsert(tuning::CacheFile& f, const tuning::Entry& e) {
  for (tuning::Entry& old : f.entries) {
    const tuning::Key &a = old.key, &b = e.key;
    if (a.gpu == b.gpu && a.cc_major == b.cc_major && a.cc_minor == b.cc_minor &&
        a.sm_count == b.sm_count && a.op == b.op && a.dtype == b.dtype && a.layout == b.layout &&
        a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w && a.aligned16 == b.aligned16) {
      old = e;
      return;
    }
  }
  f.entries.push_back(e);
}

// What tune_candidates needs of one (operation, shape): its name, the cache key's shape
// (or none), how to check one forced configuration, and the call to time.
struct Tunable {
  bnorm_op_t op;
  std::string name;     // the shape's or case's name
  Shape key;            // the tuning cache's key: dims, dtype, layout
  bool cacheable;       // false: checked and timed, not written to the cache
  double bytes;         // what a call must move
  std::vector<std::string> specs;  // the heuristic's first
  std::function<void(Candidate*)> check;
  std::function<void()> prepare_timing;  // rotating buffers for the timed calls
  Enqueue call;
};

void tune_candidates(Context& cx, const Tunable& t) {
  const bnorm_op_t op = t.op;
  std::vector<Candidate> cands(t.specs.size());
  for (size_t i = 0; i < t.specs.size(); ++i) {
    cands[i].spec = t.specs[i];
    cands[i].heuristic = i == 0;
  }

  // Correct first.
  for (Candidate& c : cands) {
    BNB_BNORM(bnorm_set_variant(cx.h, op, c.spec.c_str()));
    try {
      t.check(&c);
    } catch (const Error& e) {  // a CUDA error here (a kernel fault) ends the run: name the culprit
      throw Error(std::string(op_name(op)) + " " + t.name + " " + c.spec + ": " + e.what());
    }
    if (!c.correct()) {
      ++cx.rejected;
      std::printf("  REJECTED %-32s %s: %s %s\n", c.spec.c_str(), c.verdict.c_str(), c.detail.c_str(),
                  c.errors.dump().c_str());
    }
  }
  if (cx.opt.check_only) {
    size_t correct = 0;
    for (const Candidate& c : cands) correct += c.correct();
    std::printf("%-18s %-16s %3zu configs, %3zu correct\n", op_name(op), t.name.c_str(), cands.size(), correct);
    json rep = {{"op", op_name(op)}, {"shape", t.name}, {"configs", json::array()}};
    for (const Candidate& c : cands)
      rep["configs"].push_back({{"spec", c.spec}, {"verdict", c.verdict}, {"errors", c.errors}});
    cx.report.push_back(rep);
    BNB_BNORM(bnorm_set_variant(cx.h, op, nullptr));
    std::fflush(stdout);
    return;
  }
  // Then fast, on rotating buffers as bnorm-bench times.
  BNB_BNORM(bnorm_set_variant(cx.h, op, nullptr));
  t.prepare_timing();
  std::vector<Candidate*> ok;
  for (Candidate& c : cands) {
    if (!c.correct()) continue;
    BNB_BNORM(bnorm_set_variant(cx.h, op, c.spec.c_str()));
    c.first_ms = time_calls(cx.stream, t.call, cx.opt.timing).median_ms;
    ok.push_back(&c);
  }
  json rep = {{"op", op_name(op)}, {"shape", t.name}, {"configs", json::array()}};
  if (ok.empty()) {
    std::printf("%-18s %-16s no correct configuration: nothing cached\n", op_name(op), t.name.c_str());
  } else {
    // The fastest few and the heuristic's own, re-timed in interleaved rounds so that a
    // drift of clocks or temperature hits all of them alike.
    std::vector<Candidate*> order = ok;
    std::stable_sort(order.begin(), order.end(),
                     [](const Candidate* a, const Candidate* b) { return a->first_ms < b->first_ms; });
    std::vector<Candidate*> finals(order.begin(), order.begin() + std::min<size_t>(order.size(), cx.opt.finalists));
    if (cands[0].correct() && std::find(finals.begin(), finals.end(), &cands[0]) == finals.end())
      finals.push_back(&cands[0]);
    TimingConfig quick = cx.opt.timing;
    quick.target_ms = std::max(2.0, cx.opt.timing.target_ms / 2);
    std::vector<std::vector<double>> rounds(finals.size());
    for (int r = 0; r < cx.opt.rounds; ++r)
      for (size_t i = 0; i < finals.size(); ++i) {
        BNB_BNORM(bnorm_set_variant(cx.h, op, finals[i]->spec.c_str()));
        rounds[i].push_back(time_calls(cx.stream, t.call, quick).median_ms);
      }
    for (size_t i = 0; i < finals.size(); ++i) {
      finals[i]->finalist = true;
      finals[i]->final_ms = median(rounds[i]);
    }
    std::stable_sort(finals.begin(), finals.end(),
                     [](const Candidate* a, const Candidate* b) { return a->final_ms < b->final_ms; });
    const Candidate* best = finals[0];
    const Candidate* heur = cands[0].finalist ? &cands[0] : nullptr;
    const Candidate* winner = heur && heur->final_ms <= best->final_ms * kPreferHeuristicWithin ? heur : best;

    if (t.cacheable) {
      const Shape& s = t.key;
      tuning::Entry e;
      e.key.gpu = cx.facts.name;
      e.key.cc_major = cx.facts.cc_major;
      e.key.cc_minor = cx.facts.cc_minor;
      e.key.sm_count = cx.facts.sm_count;
      e.key.op = op;
      e.key.dtype = s.dtype;
      e.key.layout = s.layout;
      e.key.n = s.n;
      e.key.c = s.c;
      e.key.h = s.h;
      e.key.w = s.w;
      e.key.aligned16 = true;
      e.winner = {winner->spec, winner->final_ms};
      for (const Candidate* f : finals)
        if (f != winner && e.runners_up.size() < 2) e.runners_up.push_back({f->spec, f->final_ms});
      upsert(cx.cache, e);
      write_cache(cx);
    }

    const double floor_ms = t.bytes / (cx.copy_gbps * 1e9) * 1e3;
    std::printf("%-18s %-16s %3zu configs, %3zu correct; winner %-30s %s ms (%.0f%% of floor)%s%s",
                op_name(op), t.name.c_str(), cands.size(), ok.size(), winner->spec.c_str(),
                fmt_ms(winner->final_ms).c_str(), 100.0 * floor_ms / winner->final_ms,
                winner == heur ? " = heuristic" : "", t.cacheable ? "" : " (not cached)");
    if (heur && winner != heur)
      std::printf("; heuristic %s ms (+%.1f%%)", fmt_ms(heur->final_ms).c_str(),
                  100.0 * (heur->final_ms / winner->final_ms - 1.0));
    std::printf("\n");
    rep["winner"] = winner->spec;
    rep["winner_ms"] = winner->final_ms;
    rep["floor_ms"] = floor_ms;
  }
  rep["heuristic"] = cands.empty() ? "" : cands[0].spec;
  for (const Candidate& c : cands) {
    json j = {{"spec", c.spec}, {"verdict", c.verdict}, {"errors", c.errors}};
    if (!c.detail.empty()) j["detail"] = c.detail;
    if (c.correct()) j["time_ms"] = c.first_ms;
    if (c.finalist) j["final_ms"] = c.final_ms;
    rep["configs"].push_back(j);
  }
  cx.report.push_back(rep);
  bnorm_set_variant(cx.h, op, nullptr);
  std::fflush(stdout);
}

void tune_op(Context& cx, const Problem& p, bnorm_op_t op, Comparer& cmp) {
  const Shape& s = p.shape;
  upload_bytes(p.d_ref.get(), tensor_reference(p, op), cx.stream);
  Tunable t;
  t.op = op;
  t.name = s.name();
  t.key = s;
  t.cacheable = true;
  t.bytes = bytes_moved(op, s);
  t.specs = list_specs(cx.h, op, s.desc());
  t.check = [&](Candidate* c) { check(cx.h, op, p, cmp, cx.opt.rtol, cx.stream, c); };
  // Their saved statistics come from the heuristic's forward, not from the last (maybe
  // rejected) candidate.
  t.prepare_timing = [&] { cx.rot.prepare(s, cx.facts.l2_bytes, cx.h, cx.stream); };
  t.call = [&](int64_t k) { BNB_BNORM(run_bnorm(cx.h, op, cx.rot, k)); };
  tune_candidates(cx, t);
}

// ---- the toolbox --------------------------------------------------------------------

// A case's reference: the CPU backend's call on set 0's inputs, with the arrays'
// initial values (fill_slot) that every checked call starts from again.
struct ToolboxProblem {
  ToolboxCase tc;
  std::vector<float> slots[8];
  Bytes ref_tensor;
  std::vector<std::vector<float>> ref_arrays;  // per toolbox_outputs(tc).arrays
  DeviceBuffer d_ref, d_first;
};

void build_toolbox_problem(Context& cx, ToolboxProblem& p) {
  const ToolboxCase& tc = p.tc;
  cx.tb.prepare(tc, cx.facts.l2_bytes, cx.stream);
  const size_t bytes = tc.shape.bytes();
  const ToolboxArgs dev = cx.tb.args(0);
  Bytes x = download_bytes(dev.x, bytes, cx.stream), dy = download_bytes(dev.dy, bytes, cx.stream), out(bytes);
  std::vector<float> host[8];
  ToolboxArgs a{x.data(), dy.data(), out.data(), {}};
  for (int i = 0; i < 8; ++i) {
    p.slots[i] = fill_slot(tc, i, 0x7001);  // what ToolboxBuffers::prepare uploaded
    host[i] = p.slots[i];
    a.a[i] = host[i].data();
  }
  bnorm_handle_t cpu = nullptr;
  BNB_BNORM(bnorm_create(&cpu, BNORM_BACKEND_CPU, 0));
  use_oracle(cpu);
  const bnorm_status_t st = run_toolbox(cpu, tc, a);
  bnorm_destroy(cpu);
  BNB_BNORM(st);
  const ToolboxOutputs outs = toolbox_outputs(tc);
  if (outs.tensor) {
    p.ref_tensor = out;
    p.d_ref.reset(bytes);
    p.d_first.reset(bytes);
    upload_bytes(p.d_ref.get(), out, cx.stream);
  }
  for (const auto& [i, len] : outs.arrays) p.ref_arrays.emplace_back(host[i].begin(), host[i].begin() + len);
}

// Two poisoned runs of the forced configuration on set 0: correct against the CPU's
// call, and bitwise repeatable.
void check_toolbox(Context& cx, const ToolboxProblem& p, Comparer& cmp, Candidate* c) {
  const ToolboxCase& tc = p.tc;
  const ToolboxOutputs outs = toolbox_outputs(tc);
  const ToolboxArgs dev = cx.tb.args(0);
  const int64_t n = tc.shape.numel();
  std::vector<std::vector<float>> first(outs.arrays.size());
  for (int run = 0; run < 2; ++run) {
    for (int i = 0; i < 8; ++i) upload(cx.tb.array(i), p.slots[i], cx.stream);  // inputs, in/out arrays
    for (const auto& [i, len] : outs.arrays)
      if (i >= 4) BNB_CUDA(cudaMemsetAsync(cx.tb.array(i), 0xFF, len * sizeof(float), cx.stream));
    if (outs.tensor) BNB_CUDA(cudaMemsetAsync(dev.out, 0xFF, tc.shape.bytes(), cx.stream));
    const bnorm_status_t s = run_toolbox(cx.h, tc, dev);
    if (s != BNORM_STATUS_SUCCESS) {
      c->verdict = "failed";
      c->detail = std::string(bnorm_status_string(s)) + ": " + bnorm_last_error();
      return;
    }
    BNB_CUDA(cudaStreamSynchronize(cx.stream));
    std::string differs;
    bool wrong = false;
    if (outs.tensor) {
      if (run == 0) {
        const double e = cmp.compare(dev.out, p.d_ref.get(), tc.shape.dtype, n, cx.stream).rel();
        c->errors["out"] = std::isfinite(e) ? json(e) : json("inf");
        wrong = !(e <= tensor_rtol(tc.shape.dtype, cx.opt.rtol));
        BNB_CUDA(cudaMemcpyAsync(p.d_first.get(), dev.out, tc.shape.bytes(), cudaMemcpyDeviceToDevice, cx.stream));
      } else if (cmp.bitwise_differences(dev.out, p.d_first.get(), tc.shape.dtype, n, cx.stream)) {
        differs = "the tensor";
      }
    }
    for (size_t j = 0; j < outs.arrays.size(); ++j) {
      const auto [i, len] = outs.arrays[j];
      const std::vector<float> got = download(cx.tb.array(i), static_cast<size_t>(len), cx.stream);
      const std::string name = "array" + std::to_string(i);
      if (run == 0) {
        first[j] = got;
        const double e = rel_error(got, p.ref_arrays[j]);
        c->errors[name] = std::isfinite(e) ? json(e) : json("inf");
        wrong = wrong || !(e <= cx.opt.rtol);
      } else if (std::memcmp(got.data(), first[j].data(), got.size() * sizeof(float)) != 0) {
        differs += (differs.empty() ? "" : ", ") + name;
      }
    }
    if (wrong) {
      c->verdict = "wrong";
      c->detail = "relative error above " + std::to_string(cx.opt.rtol) + " (or a value left unwritten)";
      return;
    }
    if (!differs.empty()) {
      c->verdict = "not_repeatable";
      c->detail = "second run differs: " + differs;
    }
  }
}

void tune_toolbox(Context& cx, const ToolboxCase& tc, Comparer& cmp) {
  ToolboxProblem p;
  p.tc = tc;
  build_toolbox_problem(cx, p);
  Tunable t;
  t.op = tc.op;
  t.name = tc.name();
  t.key = tc.shape;
  t.cacheable = tc.op != BNORM_OP_GROUP_NORM_FORWARD && tc.op != BNORM_OP_GROUP_NORM_BACKWARD;
  t.bytes = toolbox_bytes_moved(tc);
  t.specs = list_toolbox_specs(cx.h, tc);
  t.check = [&](Candidate* c) { check_toolbox(cx, p, cmp, c); };
  t.prepare_timing = [] {};  // the checks ran on the same rotating buffers
  t.call = [&](int64_t k) { BNB_BNORM(run_toolbox(cx.h, tc, cx.tb.args(k))); };
  tune_candidates(cx, t);
}

int list_only(const Options& o) {
  std::string why;
  ListingHandle fake;
  bnorm_handle_t h = fake.get();
  bnorm_handle_t real = nullptr;
  if (device_available(&why) && bnorm_create(&real, BNORM_BACKEND_CUDA, o.device) == BNORM_STATUS_SUCCESS)
    h = real;
  else
    std::printf("# no CUDA device (%s): the configurations of %s\n", why.c_str(), fake.description().c_str());
  for (const Shape& s : o.shapes)
    for (bnorm_op_t op : o.ops) {
      if (!op_applies(op, s) || s.fused) continue;
      const std::vector<std::string> specs = list_specs(h, op, s.desc());
      std::printf("%s %s %zu:", op_name(op), s.name().c_str(), specs.size());
      for (const std::string& sp : specs) std::printf(" %s", sp.c_str());
      std::printf("\n");
    }
  if (o.toolbox)
    for (const ToolboxCase& tc : toolbox_suite()) {
      if (std::find(o.toolbox_ops.begin(), o.toolbox_ops.end(), tc.op) == o.toolbox_ops.end()) continue;
      const std::vector<std::string> specs = list_toolbox_specs(h, tc);
      std::printf("%s %s %zu:", op_name(tc.op), tc.name().c_str(), specs.size());
      for (const std::string& sp : specs) std::printf(" %s", sp.c_str());
      std::printf("\n");
    }
  if (real) bnorm_destroy(real);
  return 0;
}

int run(int argc, char** argv) {
  Context cx;
  if (!parse_options(argc, argv, &cx.opt)) {
    usage();
    return 2;
  }
  if (cx.opt.list) return list_only(cx.opt);
  std::string why;
  if (!device_available(&why)) {
    std::printf("bnorm-tune: no usable CUDA device (%s): nothing to tune.\n", why.c_str());
    return 0;
  }
  // The tuner forces every configuration itself; neither an override from the
  // environment nor an older cache may decide anything here.
  if (std::getenv("BNORM_VARIANT")) {
    std::fprintf(stderr, "bnorm-tune: ignoring BNORM_VARIANT\n");
    unsetenv("BNORM_VARIANT");
  }
  BNB_BNORM(bnorm_tuning_clear());
  if (cx.opt.seed == 0) cx.opt.seed = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();

  BNB_CUDA(cudaSetDevice(cx.opt.device));
  BNB_CUDA(cudaStreamCreateWithFlags(&cx.stream, cudaStreamNonBlocking));
  BNB_BNORM(bnorm_create(&cx.h, BNORM_BACKEND_CUDA, cx.opt.device));
  BNB_BNORM(bnorm_set_stream(cx.h, cx.stream));
  cx.facts = query_device(cx.opt.device);
  if (!cx.opt.check_only) cx.copy_gbps = copy_bandwidth_gb_per_s(size_t{1} << 30, cx.stream);
  std::printf("bnorm-tune: %s (cc %d.%d, %d SMs), copy bandwidth %.1f GB/s, seed %llu, rtol %g\n",
              cx.facts.name.c_str(), cx.facts.cc_major, cx.facts.cc_minor, cx.facts.sm_count,
              cx.copy_gbps, static_cast<unsigned long long>(cx.opt.seed), cx.opt.rtol);

  if (!cx.opt.check_only && !cx.opt.fresh && access(cx.opt.out.c_str(), F_OK) == 0) {
    const bnorm::Status s = tuning::read_file(cx.opt.out, &cx.cache);
    if (!s.ok()) {
      std::fprintf(stderr, "bnorm-tune: starting a new cache: %s\n", s.message.c_str());
      cx.cache = tuning::CacheFile{};
    } else {
      std::printf("bnorm-tune: merging into %s (%zu entries)\n", cx.opt.out.c_str(), cx.cache.entries.size());
    }
  }
  tuning::DeviceInfo info{cx.facts.name,           cx.facts.cc_major,        cx.facts.cc_minor,
                          cx.facts.sm_count,       cx.facts.driver_version,  cx.facts.runtime_version,
                          cx.copy_gbps,            utc_now(),                commit_hash()};
  bool replaced = false;
  for (tuning::DeviceInfo& d : cx.cache.devices)
    if (d.gpu == info.gpu && d.cc_major == info.cc_major && d.cc_minor == info.cc_minor &&
        d.sm_count == info.sm_count) {
      d = info;
      replaced = true;
    }
  if (!replaced) cx.cache.devices.push_back(info);

  Comparer cmp;
  uint64_t seed = cx.opt.seed;
  for (const Shape& s : cx.opt.shapes) {
    if (s.fused) {
      std::printf("%-18s %-16s skipped: fused rows use the plain op's entries (the key has no activation)\n", "",
                  s.name().c_str());
      continue;
    }
    Problem p;
    build_problem(p, s, seed++, cx.stream);  // fresh inputs per shape
    for (bnorm_op_t op : cx.opt.ops) {
      if (!op_applies(op, s)) {
        std::printf("%-18s %-16s skipped: training needs n*h*w >= 2\n", op_name(op), s.name().c_str());
        continue;
      }
      tune_op(cx, p, op, cmp);
      write_report(cx);
    }
    cx.rot.release();  // the next shape's buffers may be large
  }
  if (cx.opt.toolbox)
    for (const ToolboxCase& tc : toolbox_suite()) {
      if (std::find(cx.opt.toolbox_ops.begin(), cx.opt.toolbox_ops.end(), tc.op) == cx.opt.toolbox_ops.end())
        continue;
      tune_toolbox(cx, tc, cmp);
      write_report(cx);
    }
  cx.tb.release();
  write_report(cx);
  if (cx.opt.check_only)
    std::printf("bnorm-tune: checked; %d configuration(s) rejected%s\n", cx.rejected,
                cx.rejected ? " (see above: a library bug)" : "");
  else
    std::printf("bnorm-tune: %zu entries in %s; %d configuration(s) rejected%s\n", cx.cache.entries.size(),
                cx.opt.out.c_str(), cx.rejected, cx.rejected ? " (see above: a library bug)" : "");
  bnorm_destroy(cx.h);
  cudaStreamDestroy(cx.stream);
  return cx.opt.check_only && cx.rejected ? 3 : 0;
}

}  // namespace
}  // namespace bnorm_bench

int main(int argc, char** argv) {
  try {
    return bnorm_bench::run(argc, argv);
  } catch (const bnorm_bench::Error& e) {
    std::fprintf(stderr, "bnorm-tune: %s\n", e.what());
    return 1;
  }
}
