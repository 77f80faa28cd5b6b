// bnorm-bench-cpu: the CPU backend on the suite's shapes, its fast path (cpu_fast) beside
// its float64 oracle (cpu_reference, the CPU backend before the fast path), timed the
// same way in one run; tools/cpu_bench.py puts PyTorch CPU (bench/peers/pytorch_bn.py
// --device cpu) beside them.
//
// Rows: cpu/<op>/<shape>/<variant>, op one of forward_training, forward_inference,
// backward and train_step (a forward training and its backward, what one step of a
// network asks of a batch norm layer). Time: the median per call over samples of
// back-to-back calls on the same buffers (a layer's input is fresh in cache in a
// network too; tensors past the caches stream from memory either way), wall clock.
// Counters: GB/s (the bytes the op must move: forward 2S, backward 3S, a step 5S, S the
// stored bytes of x), pct_floor (those bytes at the measured memory bandwidth, over the
// time, in %), threads. The context has the CPU, the bandwidth (a multi-threaded memcpy
// of 1 GiB, bytes read plus written), the instruction set the loops use and the commit.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bnorm/bnorm.h"
#include "common/suite.hpp"
#include "cpu/fast_isa.hpp"  // the instruction set, for the context

#ifndef BNORM_BENCH_COMMIT
#define BNORM_BENCH_COMMIT "unknown"
#endif

namespace bnorm_bench {
namespace {

using Clock = std::chrono::steady_clock;

enum class Op { forward_training, forward_inference, backward, train_step };
const char* name_of(Op op) {
  switch (op) {
    case Op::forward_training: return "forward_training";
    case Op::forward_inference: return "forward_inference";
    case Op::backward: return "backward";
    case Op::train_step: return "train_step";
  }
  return "?";
}

struct Options {
  std::vector<Shape> shapes;
  std::vector<Op> ops{Op::forward_training, Op::forward_inference, Op::backward, Op::train_step};
  int threads = 0;                       // 0: the library's default
  std::string reference = "auto";        // auto: shapes up to reference_limit values
  int64_t reference_limit = 1 << 24;
  double target_ms = 200.0;
  double bandwidth_gbps = 0.0;           // 0: measured
  bool print_suite = false;
};

struct Tensors {
  std::vector<unsigned char> x, y, dy, dx;
  std::vector<float> gamma, beta, rm, rv, sm, si, dg, db;
};

// Random values (never zeros) in the shape's dtype.
void fill(std::vector<unsigned char>& b, const Shape& s, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  b.resize(s.bytes());
  for (int64_t i = 0; i < s.numel(); ++i) {
    const float v = 0.5f + 1.5f * nd(g);
    if (s.dtype == BNORM_DTYPE_F32) {
      std::memcpy(&b[4 * i], &v, 4);
    } else if (s.dtype == BNORM_DTYPE_F16) {
      const __half h = __float2half_rn(v);
      std::memcpy(&b[2 * i], &h, 2);
    } else {
      const __nv_bfloat16 h = __float2bfloat16_rn(v);
      std::memcpy(&b[2 * i], &h, 2);
    }
  }
}

Tensors make_tensors(const Shape& s) {
  Tensors t;
  fill(t.x, s, 1);
  fill(t.dy, s, 2);
  t.y.resize(s.bytes());
  t.dx.resize(s.bytes());
  t.gamma.assign(s.c, 1.25f);
  t.beta.assign(s.c, -0.5f);
  t.rm.assign(s.c, 0.1f);
  t.rv.assign(s.c, 2.0f);
  t.sm.assign(s.c, 0.0f);
  t.si.assign(s.c, 1.0f);
  t.dg.resize(s.c);
  t.db.resize(s.c);
  return t;
}

bnorm_status_t call(bnorm_handle_t h, Op op, const Shape& s, Tensors& t) {
  const bnorm_tensor_t d = s.desc();
  auto fwd = [&] {
    return bnorm_forward_training(h, &d, t.x.data(), t.y.data(), t.gamma.data(), t.beta.data(), 0.1f, 1e-5f,
                                  t.rm.data(), t.rv.data(), t.sm.data(), t.si.data());
  };
  auto bwd = [&] {
    return bnorm_backward(h, &d, t.x.data(), t.dy.data(), t.gamma.data(), t.sm.data(), t.si.data(), t.dx.data(),
                          t.dg.data(), t.db.data());
  };
  switch (op) {
    case Op::forward_training: return fwd();
    case Op::forward_inference:
      return bnorm_forward_inference(h, &d, t.x.data(), t.y.data(), t.gamma.data(), t.beta.data(), t.rm.data(),
                                     t.rv.data(), 1e-5f);
    case Op::backward: return bwd();
    case Op::train_step: {
      const bnorm_status_t st = fwd();
      return st == BNORM_STATUS_SUCCESS ? bwd() : st;
    }
  }
  return BNORM_STATUS_INTERNAL_ERROR;
}

double bytes_of(Op op, const Shape& s) {
  const double S = static_cast<double>(s.bytes());
  switch (op) {
    case Op::forward_training:
    case Op::forward_inference: return 2 * S;
    case Op::backward: return 3 * S;
    case Op::train_step: return 5 * S;
  }
  return 0;
}

// The median per call: warm-up calls, then samples of enough calls to last 1 ms each,
// until about target_ms have passed (at least 5 samples, at most 500).
double median_ms(const std::function<void()>& f, double target_ms) {
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  auto t0 = Clock::now();
  f();
  const double first = ms_since(t0);
  for (int i = 0; i < 2 && first < 100; ++i) f();
  t0 = Clock::now();
  f();
  const double est = std::max(ms_since(t0), 1e-4);
  const int per = std::max(1, static_cast<int>(1.0 / est));
  std::vector<double> samples;
  const auto start = Clock::now();
  while (samples.size() < 5 || (ms_since(start) < target_ms && samples.size() < 500)) {
    t0 = Clock::now();
    for (int i = 0; i < per; ++i) f();
    samples.push_back(ms_since(t0) / per);
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return samples[samples.size() / 2];
}

// memcpy of `bytes` split over threads, bytes read plus written per second, median of 9.
double memory_bandwidth_gbps(size_t bytes, int threads) {
  std::vector<unsigned char> a(bytes, 1), b(bytes, 2);
  auto copy = [&] {
    std::vector<std::thread> pool;
    const size_t part = bytes / threads;
    for (int i = 0; i < threads; ++i)
      pool.emplace_back([&, i] {
        const size_t n = i == threads - 1 ? bytes - part * i : part;
        std::memcpy(b.data() + part * i, a.data() + part * i, n);
      });
    for (auto& t : pool) t.join();
  };
  copy();
  std::vector<double> s;
  for (int i = 0; i < 9; ++i) {
    const auto t0 = Clock::now();
    copy();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return 2.0 * static_cast<double>(bytes) / s[s.size() / 2] / 1e9;
}

struct Global {
  Options opt;
  double bandwidth = 0.0;
  int threads = 1;
};
Global& G() {
  static Global g;
  return g;
}

void row(benchmark::State& st, Shape s, Op op, std::string variant) {
  Global& g = G();
  bnorm_handle_t h = nullptr;
  if (bnorm_create(&h, BNORM_BACKEND_CPU, 0) != BNORM_STATUS_SUCCESS) {
    st.SkipWithError(bnorm_last_error());
    return;
  }
  for (int o = BNORM_OP_FORWARD_TRAINING; o <= BNORM_OP_SYNC_BACKWARD; ++o)
    bnorm_set_variant(h, static_cast<bnorm_op_t>(o), variant.c_str());
  bnorm_set_cpu_threads(h, g.opt.threads);
  Tensors t = make_tensors(s);
  bnorm_status_t status = BNORM_STATUS_SUCCESS;
  const double ms = median_ms(
      [&] {
        const bnorm_status_t r = call(h, op, s, t);
        if (r != BNORM_STATUS_SUCCESS) status = r;
      },
      variant == "cpu_reference" ? std::min(g.opt.target_ms, 100.0) : g.opt.target_ms);
  if (status != BNORM_STATUS_SUCCESS) {
    st.SkipWithError(bnorm_last_error());
    bnorm_destroy(h);
    return;
  }
  int threads = 1;
  bnorm_get_cpu_threads(h, &threads);
  bnorm_destroy(h);
  for (auto _ : st) st.SetIterationTime(ms * 1e-3);
  const double bytes = bytes_of(op, s);
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["pct_floor"] = 100.0 * (bytes / (g.bandwidth * 1e9) * 1e3) / ms;
  st.counters["threads"] = variant == "cpu_reference" ? 1 : threads;
}

bool wants_reference(const Options& o, const Shape& s) {
  if (o.reference == "on") return true;
  if (o.reference == "off") return false;
  return s.numel() <= o.reference_limit;
}

void usage() {
  std::fprintf(stderr,
               "bnorm-bench-cpu [--groups=lenet,odd,resnet50 | --bnorm_shapes=S,...] [--bnorm_ops=a,b]\n"
               "    [--threads=N] [--reference=auto|on|off] [--target_ms=200] [--bandwidth_gbps=B]\n"
               "    [--print_suite] [Google Benchmark flags: --benchmark_out=F --benchmark_out_format=json ...]\n");
}

bool parse(int argc, char** argv, Options* o, std::vector<char*>* rest) {
  std::string groups = "lenet,odd,resnet50", shapes;
  rest->push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* k) -> const char* {
      const size_t n = std::strlen(k);
      return a.compare(0, n, k) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = val("--groups=")) {
      groups = v;
    } else if (const char* v = val("--bnorm_shapes=")) {
      shapes = v;
    } else if (const char* v = val("--bnorm_ops=")) {
      o->ops.clear();
      std::string s = v;
      for (size_t p = 0; p <= s.size();) {
        const size_t q = std::min(s.find(',', p), s.size());
        const std::string n = s.substr(p, q - p);
        bool found = false;
        for (Op op : {Op::forward_training, Op::forward_inference, Op::backward, Op::train_step})
          if (n == name_of(op)) o->ops.push_back(op), found = true;
        if (!found) {
          std::fprintf(stderr, "bnorm-bench-cpu: unknown op '%s'\n", n.c_str());
          return false;
        }
        p = q + 1;
      }
    } else if (const char* v = val("--threads=")) {
      o->threads = std::atoi(v);
    } else if (const char* v = val("--reference=")) {
      o->reference = v;
    } else if (const char* v = val("--target_ms=")) {
      o->target_ms = std::atof(v);
    } else if (const char* v = val("--bandwidth_gbps=")) {
      o->bandwidth_gbps = std::atof(v);
    } else if (a == "--print_suite") {
      o->print_suite = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      return false;
    } else {
      rest->push_back(argv[i]);
    }
  }
  if (!shapes.empty()) {
    if (!parse_shapes(shapes, &o->shapes)) {
      std::fprintf(stderr, "bnorm-bench-cpu: malformed --bnorm_shapes '%s'\n", shapes.c_str());
      return false;
    }
  } else {
    std::vector<std::string> gs;
    std::string bad;
    if (!parse_groups(groups, &gs, &bad)) {
      std::fprintf(stderr, "bnorm-bench-cpu: unknown group '%s'\n", bad.c_str());
      return false;
    }
    o->shapes = filter_groups(suite(), gs);
  }
  return true;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

int run(int argc, char** argv) {
  Global& g = G();
  std::vector<char*> rest;
  if (!parse(argc, argv, &g.opt, &rest)) return 2;
  if (g.opt.print_suite) {
    std::printf("%s\n", suite_json(g.opt.shapes).c_str());
    return 0;
  }
  int rc = static_cast<int>(rest.size());
  benchmark::Initialize(&rc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rc, rest.data())) return 2;

  bnorm_handle_t h = nullptr;
  if (bnorm_create(&h, BNORM_BACKEND_CPU, 0) != BNORM_STATUS_SUCCESS) return 1;
  bnorm_set_cpu_threads(h, g.opt.threads);
  bnorm_get_cpu_threads(h, &g.threads);
  bnorm_destroy(h);
  const bool listing = [&] {
    for (char* a : rest)
      if (std::strncmp(a, "--benchmark_list_tests", 22) == 0) return true;
    return false;
  }();
  g.bandwidth = g.opt.bandwidth_gbps > 0 ? g.opt.bandwidth_gbps
                : listing               ? 1.0
                                        : memory_bandwidth_gbps(size_t{1} << 30, g.threads);
  for (const Shape& s : g.opt.shapes)
    for (Op op : g.opt.ops) {
      if (op != Op::forward_inference && s.per_channel() < 2) continue;
      if (s.fused) continue;
      for (const char* v : {"cpu_fast", "cpu_reference"}) {
        if (std::strcmp(v, "cpu_reference") == 0 && !wants_reference(g.opt, s)) continue;
        const std::string name = std::string("cpu/") + name_of(op) + "/" + s.name() + "/" + v;
        benchmark::RegisterBenchmark(name.c_str(), row, s, op, std::string(v))
            ->UseManualTime()
            ->Iterations(1)
            ->Unit(benchmark::kMillisecond);
      }
    }
  benchmark::AddCustomContext("cpu", cpu_model());
  benchmark::AddCustomContext("cpu_threads", std::to_string(g.threads));
  benchmark::AddCustomContext("cpu_isa", bnorm::cpu::fast::isa_name(bnorm::cpu::fast::active_isa()));
  benchmark::AddCustomContext("memory_bandwidth_gb_per_s", std::to_string(g.bandwidth));
  benchmark::AddCustomContext("bnorm_version", std::to_string(bnorm_get_version()));
  const char* commit = std::getenv("BNORM_COMMIT");
  benchmark::AddCustomContext("commit", commit && *commit ? commit : BNORM_BENCH_COMMIT);
  if (!listing)
    std::fprintf(stderr, "bnorm-bench-cpu: %s, %d threads, %s loops, memory bandwidth %.1f GB/s\n",
                 cpu_model().c_str(), g.threads, bnorm::cpu::fast::isa_name(bnorm::cpu::fast::active_isa()),
                 g.bandwidth);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace bnorm_bench

int main(int argc, char** argv) { return bnorm_bench::run(argc, argv); }
