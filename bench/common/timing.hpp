// How the benchmark and the tuner time a call: CUDA events around batches of calls on
// rotating buffers after a warm-up, the median over many batches; the same calls
// captured in a CUDA graph; the launches of one call; the device's copy bandwidth.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>

namespace bnorm_bench {

// Enqueues call number k (on rotating set k) on the stream; throws Error on failure.
using Enqueue = std::function<void(int64_t k)>;

struct TimingConfig {
  double target_ms = 40.0;   // device time spent on samples, about
  int min_samples = 10;
  int max_samples = 200;
  double sample_us = 200.0;  // each sample runs enough back-to-back calls to last this long
  double warmup_ms = 2.0;    // and at least 3 calls
};

struct Timing {
  double median_ms = 0.0;  // per call
  double q25_ms = 0.0, q75_ms = 0.0, min_ms = 0.0;
  int samples = 0;
  int calls_per_sample = 0;
  double iqr_pct() const { return median_ms > 0 ? 100.0 * (q75_ms - q25_ms) / median_ms : 0.0; }
};

// Eager calls: per-call time is a sample's event time over its calls. Calls are issued
// back to back, so for a launch-bound op it includes the host's issue rate, as a
// framework calling bnorm would see it.
Timing time_calls(cudaStream_t s, const Enqueue& call, const TimingConfig& cfg);

// Per-call time when calls calls are captured in one CUDA graph and replayed (the
// launch gaps shrink). replays replays are timed one by one; the median is taken.
double graph_ms_per_call(cudaStream_t s, const Enqueue& call, int calls, int replays);

// Kernel, memset and memcpy nodes in a graph capturing one call: the launches per op.
// -1 if the call cannot be captured. Run it after a warm call: a first call may grow a
// workspace, which synchronises and would break the capture.
int count_launches(cudaStream_t s, const Enqueue& call);

// Device-to-device copy bandwidth in GB/s (1e9 bytes), counting bytes read plus
// written, median of timed copies of bytes each.
double copy_bandwidth_gb_per_s(size_t bytes, cudaStream_t s);

}  // namespace bnorm_bench
