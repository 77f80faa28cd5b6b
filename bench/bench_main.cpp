// bnorm-bench: every configuration of every op on every shape of the suite, the
// dispatcher's default, and cuDNN, timed the same way in one run (see README.md).
//
// Rows, in registration order (shape-major, so one set of buffers serves a shape):
//   bnorm/<op>/<shape>/default        what dispatch picks; the label says spec and why
//   bnorm/<op>/<shape>/<spec>         each configuration of bnorm_list_variants, forced
//                                     with bnorm_set_variant (label "heuristic" on the
//                                     heuristic's own)
//   cudnn/<op>/<shape>/<mode>         spatial, spatial_persistent
// then the toolbox's operations (group "toolbox", common/toolbox.hpp): frozen and
// synchronized batch norm, folding, group/instance/layer norm, as bnorm/<op>/<case>/...
// (no cuDNN peer: it has none of them).
// <shape> is NxCxHxW with _f16 / _bf16, _nhwc, _add_relu for what is not F32, NCHW,
// plain (suite.hpp); an _add_relu shape's rows time the fused relu(bn(x) + z) forward
// training and its backward (cuDNN: the Ex calls with BN_ADD_ACTIVATION).
// --groups selects suite groups, --configs=top only the configurations a tuning cache
// ranks best (see README.md).
// Counters: GB/s (bytes the op must move over the median time), pct_floor (the floor
// time bytes / copy bandwidth over the time, in %), launches per call, iqr_pct (spread
// of the samples), and graph_us (per-call time inside a CUDA graph) on launch-bound
// shapes.
#include <benchmark/benchmark.h>

#include <algorithm>
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
#include "common/toolbox.hpp"
#include "common/variants.hpp"
#include "cudnn_peer.hpp"
#include "tuning_cache.hpp"  // --configs=top reads the cache file the library loads

namespace bnorm_bench {
namespace {

struct Options {
  int device = 0;
  std::string cudnn_path;
  bool no_cudnn = false;
  bool print_suite = false;
  bool probe_cudnn = false;
  bool print_device = false;
  std::vector<Shape> shapes = suite();
  bool shapes_given = false;
  std::vector<std::string> groups;  // empty: all
  bool top_configs = false;         // --configs=top
  std::vector<bnorm_op_t> ops{std::begin(kOps), std::end(kOps)};
  bool toolbox = true;  // the toolbox group's rows
  bool toolbox_named = false;  // --groups was given (and said whether)
  std::vector<bnorm_op_t> toolbox_ops = bnorm_bench::toolbox_ops();
  bool print_toolbox = false;
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
  ToolboxBuffers toolbox;
  std::unique_ptr<Cudnn> cudnn;
};

Global& G() {
  static Global* g = new Global();
  return *g;
}

// Times call, sets the row's time and counters; bytes: what the call must move.
void measure_bytes(benchmark::State& st, const Shape& shape, double bytes, const Enqueue& call,
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
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["pct_floor"] = 100.0 * (bytes / (g.copy_gbps * 1e9) * 1e3) / t.median_ms;
  if (launches >= 0) st.counters["launches"] = launches;
  if (graph_ms >= 0) st.counters["graph_us"] = graph_ms * 1e3;
  st.counters["iqr_pct"] = t.iqr_pct();
  if (!note.empty()) st.SetLabel(note);
}

void measure(benchmark::State& st, const Shape& shape, bnorm_op_t op, const Enqueue& call,
             const std::string& label) {
  measure_bytes(st, shape, bytes_moved(op, shape), call, label);
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
      // The query knows no activation: a fused call may choose otherwise (a persistent
      // tile that holds x, dy and y, say, may not fit).
      if (shape.fused) label += " (as queried for the plain op)";
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
    // A call cuDNN refuses (a dtype, layout or fused op it lacks in this mode) skips
    // the row with cuDNN's reason, before any timing.
    const std::string refused = g.cudnn->run(op, mode, g.buffers, 0);
    if (!refused.empty()) throw Error("cuDNN refuses: " + refused);
    measure(st, shape, op, call,
            "cuDNN " + std::to_string(g.cudnn->version()) + (shape.fused ? " Ex BN_ADD_ACTIVATION" : ""));
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    exit_if_device_broken();
  }
}

void toolbox_row(benchmark::State& st, ToolboxCase tc, std::string spec, bool heuristic) {
  Global& g = G();
  try {
    g.toolbox.prepare(tc, g.facts.l2_bytes, g.stream);
    BNB_BNORM(bnorm_set_variant(g.h, tc.op, spec.empty() ? nullptr : spec.c_str()));
    std::string label = heuristic ? "heuristic" : "";
    if (spec.empty()) {
      const bnorm_tensor_t d = tc.shape.desc();
      char chosen[256];
      bnorm_choice_t why = BNORM_CHOICE_HEURISTIC;
      BNB_BNORM(bnorm_query_variant_grouped(g.h, tc.op, &d, tc.groups, 1, chosen, sizeof chosen, &why));
      label = std::string(choice_name(why)) + " " + chosen;
    }
    const Enqueue call = [&](int64_t k) { BNB_BNORM(run_toolbox(g.h, tc, g.toolbox.args(k))); };
    measure_bytes(st, tc.shape, toolbox_bytes_moved(tc), call, label);
  } catch (const Error& e) {
    st.SkipWithError(e.what());
    exit_if_device_broken();
  }
  bnorm_set_variant(g.h, tc.op, nullptr);
}

// The GPU the tuning cache's entries must name for --configs=top: the device, or
// without one the stand-in's compute capability and SM count (any name).
struct CacheGpu {
  std::string name;  // "" matches any
  int cc_major = 9, cc_minor = 0, sm_count = 132;
};

// The configurations of bnorm_list_variants to time. --configs=all: every one.
// --configs=top: the heuristic's (the list's first) and those the tuning cache file
// (BNORM_TUNING_CACHE) holds for this GPU, op and shape (winner and runners-up), in the
// list's order; every one when there is no file or no entry for the shape and op.
std::vector<std::string> configs_to_time(const std::vector<std::string>& specs, bnorm_op_t op, const Shape& shape,
                                         const bnorm::tuning::CacheFile* cache, const CacheGpu& gpu) {
  if (!cache || specs.empty()) return specs;
  std::vector<std::string> ranked;
  for (const bnorm::tuning::Entry& e : cache->entries) {
    const bnorm::tuning::Key& k = e.key;
    if ((!gpu.name.empty() && k.gpu != gpu.name) || k.cc_major != gpu.cc_major || k.cc_minor != gpu.cc_minor ||
        k.sm_count != gpu.sm_count || k.op != op || k.dtype != shape.dtype || k.layout != shape.layout ||
        k.n != shape.n || k.c != shape.c || k.h != shape.h || k.w != shape.w || !k.aligned16)
      continue;
    ranked.push_back(e.winner.spec);
    for (const bnorm::tuning::Timed& t : e.runners_up) ranked.push_back(t.spec);
  }
  if (ranked.empty()) return specs;
  std::vector<std::string> out;
  for (size_t i = 0; i < specs.size(); ++i)
    if (i == 0 || std::find(ranked.begin(), ranked.end(), specs[i]) != ranked.end()) out.push_back(specs[i]);
  return out;
}

void register_rows(bnorm_handle_t h, const Options& o, const bnorm::tuning::CacheFile* cache, const CacheGpu& gpu) {
  for (const Shape& shape : o.shapes) {
    for (bnorm_op_t op : o.ops) {
      if (!op_applies(op, shape)) continue;
      const std::string base = std::string(op_name(op)) + "/" + shape.name() + "/";
      std::vector<benchmark::internal::Benchmark*> rows;
      rows.push_back(benchmark::RegisterBenchmark(("bnorm/" + base + "default").c_str(), bnorm_row,
                                                  shape, op, std::string(), false));
      const std::vector<std::string> all = list_specs(h, op, shape.desc());
      const std::vector<std::string> specs = o.top_configs ? configs_to_time(all, op, shape, cache, gpu) : all;
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

// The toolbox's rows: per case the default and every configuration, or with
// --configs=top those the tuning cache ranks (group norm has no entries: its key would
// need the group count); no peer.
void register_toolbox_rows(bnorm_handle_t h, const Options& o, const bnorm::tuning::CacheFile* cache,
                           const CacheGpu& gpu) {
  if (!o.toolbox) return;
  for (const ToolboxCase& tc : toolbox_suite()) {
    if (std::find(o.toolbox_ops.begin(), o.toolbox_ops.end(), tc.op) == o.toolbox_ops.end()) continue;
    const std::string base = "bnorm/" + std::string(op_name(tc.op)) + "/" + tc.name() + "/";
    std::vector<benchmark::internal::Benchmark*> rows;
    rows.push_back(benchmark::RegisterBenchmark((base + "default").c_str(), toolbox_row, tc, std::string(), false));
    const std::vector<std::string> all = list_toolbox_specs(h, tc);
    const std::vector<std::string> specs = o.top_configs ? configs_to_time(all, tc.op, tc.shape, cache, gpu) : all;
    for (size_t i = 0; i < specs.size(); ++i)
      rows.push_back(benchmark::RegisterBenchmark((base + specs[i]).c_str(), toolbox_row, tc, specs[i], i == 0));
    for (auto* r : rows) r->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
  }
}

void print_suite(const std::vector<Shape>& shapes) { std::fputs(suite_json(shapes).c_str(), stdout); }

void usage() {
  std::string groups;
  for (const std::string& g : suite_groups()) groups += (groups.empty() ? "" : ",") + g;
  std::fprintf(stderr,
               "bnorm-bench [Google Benchmark flags] [options]\n"
               "  --bnorm_shapes=suite|NxCxHxW[_f16|_bf16][_nhwc][_add_relu],...\n"
               "                                     shapes (default: the suite of DESIGN.md)\n"
               "  --groups=all|group,...             suite groups (default all): %s,toolbox\n"
               "  --bnorm_ops=all|op,...             forward_training,forward_inference,backward, and the\n"
               "                                     toolbox's (backward_frozen, group_norm_forward, ...)\n"
               "                                     (an _add_relu shape: its fused forward training\n"
               "                                     and backward)\n"
               "  --configs=all|top                  all configurations (default), or the heuristic's and\n"
               "                                     the tuning cache's winner and runners-up per shape\n"
               "                                     and op (BNORM_TUNING_CACHE; all where it has none)\n"
               "  --bnorm_target_ms=MS               device time per row's samples (default 40)\n"
               "  --bnorm_graph_calls=K              calls per CUDA graph on launch-bound shapes (32)\n"
               "  --bnorm_device=D                   CUDA device (0)\n"
               "  --cudnn=PATH | --no_cudnn          cuDNN library (else BNORM_CUDNN_PATH, then a search)\n"
               "  --print_suite                      print the shape suite as JSON and exit\n"
               "  --print_toolbox                    print the toolbox's cases as JSON and exit\n"
               "  --probe_cudnn                      load cuDNN, say which and whether it runs; exit\n"
               "  --print_device                     the device's facts and measured copy bandwidth as JSON;\n"
               "                                     exit (3 without a device)\n"
               "Without a device, --benchmark_list_tests lists the rows a 132-SM sm_90 GPU would run.\n",
               groups.c_str());
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
    } else if (a == "--print_toolbox") {
      o->print_toolbox = true;
    } else if (a == "--probe_cudnn") {
      o->probe_cudnn = true;
    } else if (a == "--print_device") {
      o->print_device = true;
    } else if (value("--cudnn", &v)) {
      o->cudnn_path = v;
    } else if (value("--bnorm_shapes", &v)) {
      if (!parse_shapes(v, &o->shapes)) return false;
      o->shapes_given = true;
    } else if (value("--groups", &v)) {
      // "toolbox" is the toolbox's cases; the other names are suite groups.
      std::string suite_part;
      split_toolbox_group(v, &o->toolbox, &suite_part);
      o->toolbox_named = true;
      std::string bad;
      if (suite_part.empty()) {
        o->groups = {"toolbox"};  // matches no suite shape
      } else if (!parse_groups(suite_part, &o->groups, &bad)) {
        std::fprintf(stderr, "bnorm-bench: unknown group '%s'\n", bad.c_str());
        return false;
      }
    } else if (value("--configs", &v)) {
      if (v != "all" && v != "top") return false;
      o->top_configs = v == "top";
    } else if (value("--bnorm_ops", &v)) {
      std::vector<bnorm_op_t> all;
      if (!parse_ops(v, &all)) return false;
      if (v != "all") split_toolbox_ops(all, &o->ops, &o->toolbox_ops);
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
  // Shapes given on the command line replace the suite, the toolbox's cases included,
  // unless --groups names "toolbox".
  if (o->shapes_given && !o->toolbox_named) o->toolbox = false;
  // --groups narrows the suite, or the shapes given, to those groups.
  o->shapes = filter_groups(o->shapes, o->groups);
  if (o->shapes.empty() && !(o->toolbox && !o->shapes_given)) {
    std::fprintf(stderr, "bnorm-bench: no shape of the suite%s is in the groups given\n",
                 o->shapes_given ? " or of --bnorm_shapes" : "");
    return false;
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
  benchmark::AddCustomContext("configs", g.opt.top_configs ? "top" : "all");
  // Each shape's group, dtype and layout, for tools/bench_results.py: {"name": "group", ...}.
  std::string groups = "{";
  for (size_t i = 0; i < g.opt.shapes.size(); ++i)
    groups += (i ? ", \"" : "\"") + g.opt.shapes[i].name() + "\": \"" + g.opt.shapes[i].group + "\"";
  benchmark::AddCustomContext("shape_groups", groups + "}");
  if (g.cudnn && g.cudnn->ready())
    benchmark::AddCustomContext("cudnn", std::to_string(g.cudnn->version()) + " " + g.cudnn->path());
  else
    benchmark::AddCustomContext("cudnn", "unavailable: " + (g.cudnn ? g.cudnn->why_not() : std::string("--no_cudnn")));
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"";
}

// --print_device: what a GPU check records before anything else (tools/gpu_check.sh's
// first phase), measured as the rows' floors are: the same 1 GiB copy.
int print_device(const Options& o, bool gpu, const std::string& why) {
  if (!gpu) {
    std::printf("{\"gpu\": null, \"why\": %s}\n", json_string(why).c_str());
    return 3;
  }
  BNB_CUDA(cudaSetDevice(o.device));
  cudaStream_t s = nullptr;
  BNB_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const DeviceFacts f = query_device(o.device);
  const double gbps = copy_bandwidth_gb_per_s(static_cast<size_t>(o.copy_bytes), s);
  BNB_CUDA(cudaStreamDestroy(s));
  std::printf("{\"gpu\": %s, \"cc\": \"%d.%d\", \"sm_count\": %d, \"sm_clock_max_mhz\": %d, "
              "\"l2_bytes\": %zu, \"global_bytes\": %zu, \"cuda_driver\": %d, \"cuda_runtime\": %d, "
              "\"copy_bandwidth_gb_per_s\": %.1f, \"copy_bytes\": %.0f}\n",
              json_string(f.name).c_str(), f.cc_major, f.cc_minor, f.sm_count, f.sm_clock_mhz, f.l2_bytes,
              f.global_bytes, f.driver_version, f.runtime_version, gbps, o.copy_bytes);
  return 0;
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
  if (g.opt.print_toolbox) {
    std::fputs(toolbox_json(toolbox_suite()).c_str(), stdout);
    return 0;
  }
  std::string why;
  const bool gpu = device_available(&why);
  if (g.opt.print_device) return print_device(g.opt, gpu, why);
  if (g.opt.probe_cudnn) {  // exit 0 when cuDNN loads (and, with a device, initialises)
    Cudnn c(g.opt.cudnn_path);
    if (!c.loaded()) {
      std::printf("cuDNN: not loaded: %s\n", c.why_not().c_str());
      return 3;
    }
    std::printf("cuDNN: %zu from %s\n", c.version(), c.path().c_str());
    std::printf("cuDNN: %s\n", c.has_fused() ? "has the fused Ex calls (BN_ADD_ACTIVATION rows)"
                                             : "lacks the fused Ex calls: the _add_relu rows will be skipped");
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
  CacheGpu cache_gpu;
  if (gpu) {
    BNB_BNORM(bnorm_create(&g.h, BNORM_BACKEND_CUDA, g.opt.device));
    const DeviceFacts f = query_device(g.opt.device);
    cache_gpu = CacheGpu{f.name, f.cc_major, f.cc_minor, f.sm_count};
  } else {
    g.h = fake.get();
    std::fprintf(stderr, "bnorm-bench: no CUDA device (%s): listing the configurations of %s\n",
                 why.c_str(), fake.description().c_str());
  }
  // --configs=top ranks by the cache file the library itself loads.
  bnorm::tuning::CacheFile cache_file;
  bool have_cache = false;
  if (g.opt.top_configs) {
    const char* path = std::getenv("BNORM_TUNING_CACHE");
    if (path && *path) {
      const bnorm::Status s = bnorm::tuning::read_file(path, &cache_file);
      have_cache = s.ok();
      if (!have_cache)
        std::fprintf(stderr, "bnorm-bench: --configs=top: cannot use %s (%s): every configuration is timed\n",
                     path, s.message.c_str());
    } else {
      std::fprintf(stderr, "bnorm-bench: --configs=top without BNORM_TUNING_CACHE: every configuration is timed\n");
    }
  }
  register_rows(g.h, g.opt, have_cache ? &cache_file : nullptr, cache_gpu);
  register_toolbox_rows(g.h, g.opt, have_cache ? &cache_file : nullptr, cache_gpu);

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
    g.toolbox.release();
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
