// See timing.hpp.
#include "timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "cuda_util.hpp"
#include "device_ops.hpp"

namespace bnorm_bench {
namespace {

// Events created once per process and reused: creating hundreds per row would cost
// more than the rows.
class EventPool {
 public:
  cudaEvent_t get(size_t i) {
    while (events_.size() <= i) {
      cudaEvent_t e;
      BNB_CUDA(cudaEventCreate(&e));
      events_.push_back(e);
    }
    return events_[i];
  }

 private:
  std::vector<cudaEvent_t> events_;  // left to the process's end: the context owns them
};

EventPool& pool() {
  static EventPool* p = new EventPool();
  return *p;
}

double elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0.0f;
  BNB_CUDA(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Ends a capture left open by a throwing call and drops the graph.
struct CaptureGuard {
  cudaStream_t s;
  bool open = true;
  ~CaptureGuard() {
    if (!open) return;
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(s, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
  }
};

struct GraphGuard {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~GraphGuard() {
    if (exec) cudaGraphExecDestroy(exec);
    if (g) cudaGraphDestroy(g);
  }
};

}  // namespace

Timing time_calls(cudaStream_t s, const Enqueue& call, const TimingConfig& cfg) {
  int64_t k = 0;
  // Warm-up: module loading, workspace growth and clocks out of the numbers.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    call(k++);
    if (i >= 2 && std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() >= cfg.warmup_ms)
      break;
    if (i % 16 == 15) BNB_CUDA(cudaStreamSynchronize(s));
  }
  BNB_CUDA(cudaStreamSynchronize(s));

  // A first estimate of the call's time sizes the samples.
  constexpr int kProbe = 3;
  BNB_CUDA(cudaEventRecord(pool().get(0), s));
  for (int i = 0; i < kProbe; ++i) call(k++);
  BNB_CUDA(cudaEventRecord(pool().get(1), s));
  BNB_CUDA(cudaEventSynchronize(pool().get(1)));
  const double est_ms = std::max(elapsed_ms(pool().get(0), pool().get(1)) / kProbe, 1e-4);

  Timing t;
  t.calls_per_sample =
      static_cast<int>(std::clamp(std::ceil(cfg.sample_us * 1e-3 / est_ms), 1.0, 4096.0));
  t.samples = static_cast<int>(std::clamp(std::ceil(cfg.target_ms / (est_ms * t.calls_per_sample)),
                                          static_cast<double>(cfg.min_samples),
                                          static_cast<double>(cfg.max_samples)));
  // One chain of events: sample i runs between events i and i + 1, with no host
  // synchronisation in between, so the device never idles waiting for the host.
  BNB_CUDA(cudaEventRecord(pool().get(0), s));
  for (int i = 0; i < t.samples; ++i) {
    for (int j = 0; j < t.calls_per_sample; ++j) call(k++);
    BNB_CUDA(cudaEventRecord(pool().get(i + 1), s));
  }
  BNB_CUDA(cudaEventSynchronize(pool().get(t.samples)));
  std::vector<double> per_call(t.samples);
  for (int i = 0; i < t.samples; ++i)
    per_call[i] = elapsed_ms(pool().get(i), pool().get(i + 1)) / t.calls_per_sample;
  t.median_ms = quantile(per_call, 0.5);
  t.q25_ms = quantile(per_call, 0.25);
  t.q75_ms = quantile(per_call, 0.75);
  t.min_ms = *std::min_element(per_call.begin(), per_call.end());
  return t;
}

double graph_ms_per_call(cudaStream_t s, const Enqueue& call, int calls, int replays) {
  GraphGuard gg;
  {
    CaptureGuard cap{s};
    BNB_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < calls; ++i) call(i);
    cap.open = false;
    BNB_CUDA(cudaStreamEndCapture(s, &gg.g));
  }
  BNB_CUDA(cudaGraphInstantiate(&gg.exec, gg.g, 0));
  for (int i = 0; i < 3; ++i) BNB_CUDA(cudaGraphLaunch(gg.exec, s));  // warm-up
  BNB_CUDA(cudaEventRecord(pool().get(0), s));
  for (int i = 0; i < replays; ++i) {
    BNB_CUDA(cudaGraphLaunch(gg.exec, s));
    BNB_CUDA(cudaEventRecord(pool().get(i + 1), s));
  }
  BNB_CUDA(cudaEventSynchronize(pool().get(replays)));
  std::vector<double> per_call(replays);
  for (int i = 0; i < replays; ++i) per_call[i] = elapsed_ms(pool().get(i), pool().get(i + 1)) / calls;
  return quantile(per_call, 0.5);
}

int count_launches(cudaStream_t s, const Enqueue& call) {
  GraphGuard gg;
  try {
    CaptureGuard cap{s};
    BNB_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    call(0);
    cap.open = false;
    BNB_CUDA(cudaStreamEndCapture(s, &gg.g));
  } catch (const Error&) {
    cudaGetLastError();
    return -1;
  }
  size_t n = 0;
  BNB_CUDA(cudaGraphGetNodes(gg.g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n) BNB_CUDA(cudaGraphGetNodes(gg.g, nodes.data(), &n));
  int launches = 0;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    BNB_CUDA(cudaGraphNodeGetType(node, &type));
    if (type == cudaGraphNodeTypeKernel || type == cudaGraphNodeTypeMemset ||
        type == cudaGraphNodeTypeMemcpy)
      ++launches;
  }
  return launches;
}

double copy_bandwidth_gb_per_s(size_t bytes, cudaStream_t s) {
  DeviceBuffer src(bytes), dst(bytes);
  fill_uniform(src.f(), static_cast<int64_t>(bytes / sizeof(float)), 99, -1.0f, 1.0f, s);
  for (int i = 0; i < 2; ++i)
    BNB_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
  constexpr int kCopies = 10;
  BNB_CUDA(cudaEventRecord(pool().get(0), s));
  for (int i = 0; i < kCopies; ++i) {
    BNB_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
    BNB_CUDA(cudaEventRecord(pool().get(i + 1), s));
  }
  BNB_CUDA(cudaEventSynchronize(pool().get(kCopies)));
  std::vector<double> ms(kCopies);
  for (int i = 0; i < kCopies; ++i) ms[i] = elapsed_ms(pool().get(i), pool().get(i + 1));
  return 2.0 * static_cast<double>(bytes) / (quantile(ms, 0.5) * 1e-3) / 1e9;
}

}  // namespace bnorm_bench
