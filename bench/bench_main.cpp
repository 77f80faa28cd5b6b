// bnorm-bench: every configuration of every op on every shape of the suite, the
// dispatcher's default, and cuDNN, timed the same way in one run (see README.md).
//
// Rows, in registration order (shape-major, so one set of buffers serves a shape):
//   bnorm/<op>/<shape>/default        what dispatch picks; the label says spec and why
//   bnorm/<op>/<shape>/<spec>         each configuration of bnorm_list_variants, forced
//                                     with bnorm_set_variant (label "heuristic" on the
//                                     heuristic's own)
//   cudnn/<op>/<shape>/<mode>         spatial, spatial_persistent
// Counters: GB/s (bytes the op must move over the median time), pct_floor (the floor
// time bytes / copy bandwidth over the time, in %), launches per call, iqr_pct (spread
// of the samples), and graph_us (per-call time inside a CUDA graph) on launch-bound
// shapes.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/buffers.hpp"
#include "common/cuda_util.hpp"
#include "common/suite.hpp"
#include "common/timing.hpp"
#include "common/variants.hpp"
#include "cudnn_peer.hpp"

namespace bnorm_bench {
namespace {

struct Options {
  int device = 0;
  std::string cudnn_path;
  bool no_cudnn = false;
  bool print_suite = false;
  bool probe_cudnn = false;
  std::vector<Shape> shapes = suite();
  std::vector<bnorm_op_t> ops{std::begin(kOps), std::end(kOps)};
  TimingConfig timing;
  int graph_calls = 32;
  int graph_replays = 30;
  double copy_bytes = 1 << 30;
};

struct Global {
  Options opt;
  DeviceFacts facts;
  double copy_gbps = 0.0;
  cudaStream_t stream = nullptr;
  bnorm_handle_t h = nullptr;
  RotatingBuffers buffers;
  std::unique_ptr<Cudnn> cudnn;
};

Global& G() {
  static Global* g = new Global();
  return *g;
}

// Times call, sets the row's time and counters.
void measure(benchmark::State& st, const Shape& shape, bnorm_op_t op, const Enqueue& call,
             const std::string& label) {
  Global& g = G();
  const Timing t = time_calls(g.stream, call, g.opt.timing);
  const int launches = count_launches(g.stream, call);
  double graph_ms = -1.0;
  std::string note = label;
  if (launch_bound(shape)) {
    try {
      graph_ms = graph_ms_per_call(g.stream, call, g.opt.graph_calls, g.opt.graph_replays);
    } catch (const Error& e) {  // the eager time stands; say why the graph one is missing
      note += std::string(note.empty() ? "" : "; ") + "no graph time: " + e.what();
      exit_if_device_broken();
    }
  }
  for (auto _ : st) st.SetIterationTime(t.median_ms * 1e-3);
  const double bytes = bytes_moved(op, shape);
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["pct_floor"] = 100.0 * (bytes / (g.copy_gbps * 1e9) * 1e3) / t.median_ms;
  if (launches >= 0) st.counters["launches"] = launches;
  if (graph_ms >= 0) st.counters["graph_us"] = graph_ms * 1e3;
  st.counters["iqr_pct"] = t.iqr_pct();
  if (!note.empty()) st.SetLabel(note);
}

void bnorm_row(benchmark::State& st, Shape shape, bnorm_op_t op, std::string spec, bool heuristic) {
  Global& g = G();
  try {
    g.buffers.prepare(shape, g.facts.l2_bytes, g.h, g.stream);
    BNB_BNORM(bnorm_set_variant(g.h, op, spec.empty() ? nullptr : spec.c_str()));
    std::string label = heuristic ? "heuristic" : "";
    if (spec.empty()) {
      const bnorm_tensor_t d = shape.desc();
      char chosen[256];
      bnorm_choice_t why = BNORM_CHOICE_HEURISTIC;
      BNB_BNORM(bnorm_query_variant(g.h, op, &d, 1, chosen, sizeof chosen, &why));
      label = std::string(choice_name(why)) + " " + chosen;
    }
    const Enqueue call = [&](int64_t k) { BNB_BNORM(run_bnorm(g.h, op, g.buffers, k)); };
    measure(st, shape, op, call, label);
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    exit_if_device_broken();
  }
  bnorm_set_variant(g.h, op, nullptr);
}

void cudnn_row(benchmark::State& st, Shape shape, bnorm_op_t op, CudnnMode mode) {
  Global& g = G();
  if (!g.cudnn || !g.cudnn->ready()) {
    const std::string why = "cuDNN unavailable: " + (g.cudnn ? g.cudnn->why_not() : std::string("--no_cudnn"));
    st.SkipWithError(why.c_str());
    return;
  }
  try {
    g.buffers.prepare(shape, g.facts.l2_bytes, g.h, g.stream);
    const Enqueue call = [&](int64_t k) {
      const std::string e = g.cudnn->run(op, mode, g.buffers, k);
      if (!e.empty()) throw Error(e);
    };
    measure(st, shape, op, call, "cuDNN " + std::to_string(g.cudnn->version()));
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    exit_if_device_broken();
  }
}

void register_rows(bnorm_handle_t h, const Options& o) {
  for (const Shape& shape : o.shapes) {
    for (bnorm_op_t op : o.ops) {
      if (!op_applies(op, shape)) continue;
      const std::string base = std::string(op_name(op)) + "/" + shape.name() + "/";
      std::vector<benchmark::internal::Benchmark*> rows;
      rows.push_back(benchmark::RegisterBenchmark(("bnorm/" + base + "default").c_str(), bnorm_row,
                                                  shape, op, std::string(), false));
      const std::vector<std::string> specs = list_specs(h, op, shape.desc());
      for (size_t i = 0; i < specs.size(); ++i)
        rows.push_back(benchmark::RegisterBenchmark(("bnorm/" + base + specs[i]).c_str(), bnorm_row,
                                                    shape, op, specs[i], i == 0));
      for (CudnnMode m : {CudnnMode::kSpatial, CudnnMode::kSpatialPersistent})
        rows.push_back(benchmark::RegisterBenchmark(
            ("cudnn/" + base + cudnn_mode_name(m)).c_str(), cudnn_row, shape, op, m));
      for (auto* r : rows) r->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
    }
  }
}

void print_suite(const std::vector<Shape>& shapes) {
  std::printf("[");
  for (size_t i = 0; i < shapes.size(); ++i)
    std::printf("%s\n  {\"n\": %lld, \"c\": %lld, \"h\": %lld, \"w\": %lld, \"group\": \"%s\"}",
                i ? "," : "", static_cast<long long>(shapes[i].n), static_cast<long long>(shapes[i].c),
                static_cast<long long>(shapes[i].h), static_cast<long long>(shapes[i].w),
                shapes[i].group.c_str());
  std::printf("\n]\n");
}

void usage() {
  std::fprintf(stderr,
               "bnorm-bench [Google Benchmark flags] [options]\n"
               "  --bnorm_shapes=suite|NxCxHxW,...   shapes (default: the suite of DESIGN.md)\n"
               "  --bnorm_ops=all|op,...             forward_training,forward_inference,backward\n"
               "  --bnorm_target_ms=MS               device time per row's samples (default 40)\n"
               "  --bnorm_graph_calls=K              calls per CUDA graph on launch-bound shapes (32)\n"
               "  --bnorm_device=D                   CUDA device (0)\n"
               "  --cudnn=PATH | --no_cudnn          cuDNN library (else BNORM_CUDNN_PATH, then a search)\n"
               "  --print_suite                      print the shape suite as JSON and exit\n"
               "  --probe_cudnn                      load cuDNN, say which and whether it runs; exit\n"
               "Without a device, --benchmark_list_tests lists the rows a 132-SM sm_90 GPU would run.\n");
}

bool parse_options(int argc, char** argv, Options* o) {
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
    } else if (a == "--no_cudnn") {
      o->no_cudnn = true;
    } else if (a == "--print_suite") {
      o->print_suite = true;
    } else if (a == "--probe_cudnn") {
      o->probe_cudnn = true;
    } else if (value("--cudnn", &v)) {
      o->cudnn_path = v;
    } else if (value("--bnorm_shapes", &v)) {
      if (!parse_shapes(v, &o->shapes)) return false;
    } else if (value("--bnorm_ops", &v)) {
      if (!parse_ops(v, &o->ops)) return false;
    } else if (value("--bnorm_target_ms", &v)) {
      o->timing.target_ms = std::atof(v.c_str());
      if (!(o->timing.target_ms > 0)) return false;
    } else if (value("--bnorm_graph_calls", &v)) {
      o->graph_calls = std::atoi(v.c_str());
      if (o->graph_calls < 1) return false;
    } else if (value("--bnorm_device", &v)) {
      o->device = std::atoi(v.c_str());
    } else {
      std::fprintf(stderr, "bnorm-bench: unknown argument '%s'\n", a.c_str());
      return false;
    }
  }
  return true;
}

void add_context() {
  Global& g = G();
  const DeviceFacts& f = g.facts;
  benchmark::AddCustomContext("gpu", f.name);
  benchmark::AddCustomContext("cc", std::to_string(f.cc_major) + "." + std::to_string(f.cc_minor));
  benchmark::AddCustomContext("sm_count", std::to_string(f.sm_count));
  benchmark::AddCustomContext("sm_clock_max_mhz", std::to_string(f.sm_clock_mhz));
  benchmark::AddCustomContext("l2_bytes", std::to_string(f.l2_bytes));
  char bw[32];
  std::snprintf(bw, sizeof bw, "%.1f", g.copy_gbps);
  benchmark::AddCustomContext("copy_bandwidth_gb_per_s", bw);
  benchmark::AddCustomContext("cuda_driver", std::to_string(f.driver_version));
  benchmark::AddCustomContext("cuda_runtime", std::to_string(f.runtime_version));
  benchmark::AddCustomContext("bnorm_version", std::to_string(bnorm_get_version()));
  benchmark::AddCustomContext("commit", commit_hash());
  const char* cache = std::getenv("BNORM_TUNING_CACHE");
  benchmark::AddCustomContext("tuning_cache", cache && *cache ? cache : "none");
  if (g.cudnn && g.cudnn->ready())
    benchmark::AddCustomContext("cudnn", std::to_string(g.cudnn->version()) + " " + g.cudnn->path());
  else
    benchmark::AddCustomContext("cudnn", "unavailable: " + (g.cudnn ? g.cudnn->why_not() : std::string("--no_cudnn")));
}

int run(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0 &&
        std::strcmp(argv[i], "--benchmark_list_tests=false") != 0 &&
        std::strcmp(argv[i], "--benchmark_list_tests=0") != 0)
      listing = true;
  benchmark::Initialize(&argc, argv);
  Global& g = G();
  if (!parse_options(argc, argv, &g.opt)) {
    usage();
    return 2;
  }
  if (g.opt.print_suite) {
    print_suite(g.opt.shapes);
    return 0;
  }
  std::string why;
  const bool gpu = device_available(&why);
  if (g.opt.probe_cudnn) {  // exit 0 when cuDNN loads (and, with a device, initialises)
    Cudnn c(g.opt.cudnn_path);
    if (!c.loaded()) {
      std::printf("cuDNN: not loaded: %s\n", c.why_not().c_str());
      return 3;
    }
    std::printf("cuDNN: %zu from %s\n", c.version(), c.path().c_str());
    if (!gpu) {
      std::printf("cuDNN: not initialised: no CUDA device (%s)\n", why.c_str());
      return 0;
    }
    BNB_CUDA(cudaSetDevice(g.opt.device));
    if (!c.init(nullptr)) {
      std::printf("cuDNN: cannot initialise: %s\n", c.why_not().c_str());
      return 3;
    }
    std::printf("cuDNN: initialised\n");
    return 0;
  }
  if (!gpu && !listing) {
    std::printf("bnorm-bench: no usable CUDA device (%s): nothing to measure.\n"
                "  --benchmark_list_tests lists the suite without a device.\n",
                why.c_str());
    return 0;
  }
  ListingHandle fake;
  if (gpu) {
    BNB_BNORM(bnorm_create(&g.h, BNORM_BACKEND_CUDA, g.opt.device));
  } else {
    g.h = fake.get();
    std::fprintf(stderr, "bnorm-bench: no CUDA device (%s): listing the configurations of %s\n",
                 why.c_str(), fake.description().c_str());
  }
  register_rows(g.h, g.opt);

  if (gpu && !listing) {
    BNB_CUDA(cudaSetDevice(g.opt.device));
    BNB_CUDA(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking));
    BNB_BNORM(bnorm_set_stream(g.h, g.stream));
    g.facts = query_device(g.opt.device);
    g.copy_gbps = copy_bandwidth_gb_per_s(static_cast<size_t>(g.opt.copy_bytes), g.stream);
    std::fprintf(stderr, "bnorm-bench: %s, %d SMs, L2 %zu bytes, copy bandwidth %.1f GB/s\n",
                 g.facts.name.c_str(), g.facts.sm_count, g.facts.l2_bytes, g.copy_gbps);
    if (!g.opt.no_cudnn) {
      g.cudnn = std::make_unique<Cudnn>(g.opt.cudnn_path);
      if (g.cudnn->loaded() && g.cudnn->init(g.stream))
        std::fprintf(stderr, "bnorm-bench: cuDNN %zu from %s\n", g.cudnn->version(), g.cudnn->path().c_str());
      else
        std::fprintf(stderr, "bnorm-bench: cuDNN rows will be skipped: %s\n", g.cudnn->why_not().c_str());
    }
    add_context();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (gpu) {
    g.buffers.release();
    g.cudnn.reset();
    bnorm_destroy(g.h);
    if (g.stream) cudaStreamDestroy(g.stream);
  }
  return 0;
}

}  // namespace
}  // namespace bnorm_bench

int main(int argc, char** argv) {
  try {
    return bnorm_bench::run(argc, argv);
  } catch (const bnorm_bench::Error& e) {
    std::fprintf(stderr, "bnorm-bench: %s\n", e.what());
    return 1;
  }
}
