// The CPU backend's fast path (see fast.hpp): how a call's work is cut into blocks, which
// thread runs which, and the per-channel arithmetic between the passes. The loops over
// values are in fast_kernels.hpp.
//
// Two geometries. Planes (NCHW with h*w > 1): channel c is n runs of h*w values, cut into
// blocks of whole samples; a block's statistics are a Welford state, a channel's the
// merge of its blocks in order. Rows (NHWC, and any (N, C) tensor): n*h*w rows of c
// values, cut into blocks of rows; the loops see a row set as one flat run whose value i
// belongs to lane i % w, w = c (times k rows when c is small, so a step still fills
// kLanes lanes), and lanes fold into channels in order.
//
// Planes past kWindowMin bytes run in windows of adjacent channels (by_windows): a
// window's statistics, then its output while it is still in the L3, both in memory
// order. Smaller planes with enough channels run a channel per task, statistics then
// output from the L2. Otherwise the passes run one after the other over all blocks,
// each in parallel.
#include "fast.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "thread_pool.hpp"


namespace bnorm::cpu::fast {
namespace {

// Values per block: enough that a task pays for its scheduling many times over, few
// enough that a few-channel tensor still splits over the threads.
constexpr int64_t kBlock = 32768;
// Fewer values than this per thread and a call uses fewer threads: the fork and join
// (a few microseconds) would cost more than they save.
constexpr int64_t kPerThread = 16384;
// Values per lane in one chunk of a row set: float32 sums of 128 values stay within
// 8e-6 relative error at worst, and each chunk costs a float64 merge per lane.
constexpr int64_t kRowsPerLaneChunk = 128;
// The widest lane set that still groups rows: its arrays stay in L1 (4 of 16 KiB).
constexpr int64_t kMaxLaneWidth = 4096;

int thread_id() { return current_thread(); }

int threads_for(const Context& ctx, int64_t values) {
  const int64_t by_work = std::max<int64_t>(1, values / kPerThread);
  return static_cast<int>(std::min<int64_t>(max_threads(ctx), by_work));
}

// f(i) for i in [0, n) on nt threads, each a contiguous range of i: the same range
// from call to call, so a thread finds its channels in its own cache. f must not throw.
template <class F>
void parallel_for(int nt, int64_t n, F&& f) {
  const int t = static_cast<int>(std::min<int64_t>(nt, n));
  if (t <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  run_on_threads(t, [&](int k) {
    for (int64_t i = n * k / t; i < n * (k + 1) / t; ++i) f(i);
  });
}

template <class V>
typename V::value_type* grown(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A lane array's size: the loops read lanes in whole blocks of kLanes.
int64_t padded(int w) { return ceil_div(w, kLanes) * kLanes; }

// n floats of v as lane arrays of w each, padded, the padding zero.
float* lane_arrays(std::vector<float>& v, int n, int w) {
  const int64_t pw = padded(w);
  float* p = grown(v, static_cast<size_t>(n * pw));
  std::fill(p, p + n * pw, 0.0f);
  return p;
}

struct Geo {
  bool rows = false;
  int64_t n = 0, c = 0, hw = 0;
  // planes: samples per block, blocks per channel
  int64_t nb = 1, blocks = 1;
  // rows: lane width, rows per chunk and per block, blocks, rows in all
  int w = 1;
  int64_t chunk_rows = 1, block_rows = 1, row_blocks = 1, total_rows = 0;
  bool stream = false;  // outputs past the caches
  bool windowed = false;  // runs in windows (by_windows), its short planes a lane per value (Segs::lanes)

  Segs segs(int64_t ch, int64_t b) const {
    const int64_t n0 = b * nb, cnt = std::min(nb, n - n0);
    return Segs{(n0 * c + ch) * hw, hw, c * hw, cnt, windowed};
  }
  int64_t row0(int64_t b) const { return b * block_rows; }
  int64_t rows_in(int64_t b) const { return std::min(block_rows, total_rows - b * block_rows); }
};

Geo geometry(int64_t n, int64_t c, int64_t hw, bool channels_last) {
  Geo g;
  g.n = n;
  g.c = c;
  g.hw = hw;
  g.rows = channels_last || hw == 1;
  if (n * hw == 0) {
    g.blocks = g.row_blocks = 0;
  } else if (!g.rows) {
    const int64_t want = std::min(n, std::max<int64_t>(1, ceil_div(n * hw, kBlock)));
    g.nb = ceil_div(n, want);
    g.blocks = ceil_div(n, g.nb);
  } else {
    // k rows per lane set, w = k * c a whole number of blocks (lcm(c, kLanes)) while that
    // stays small, so rows meet no partial blocks; else one row, its tail partial.
    const int64_t l = std::lcm(c, static_cast<int64_t>(kLanes));
    const int64_t k = l <= kMaxLaneWidth ? l / c : 1;
    g.w = static_cast<int>(c * k);
    g.total_rows = n * hw;
    g.chunk_rows = kRowsPerLaneChunk * k;
    g.block_rows = g.chunk_rows * std::max<int64_t>(1, kBlock / (g.chunk_rows * c));
    g.row_blocks = ceil_div(g.total_rows, g.block_rows);
  }
  return g;
}

// Outputs of at least this many bytes are written past the caches (float32): they
// would not stay cached for the next layer anyway, and a normal store reads each line
// before writing it. Planes of kLanes values or more: a short plane streamed on its own
// is mostly its unaligned head and tail, normal stores beside non-temporal ones (that
// ran (256, 512, 7, 7) inference at a seventh of its speed), so the passes over short
// planes walk many planes as one run (affine_flat, dx_flat, the windows' spans) and
// store aligned full blocks. Tensors that large with planes under kStreamRun values all
// run in windows: no pass takes them a plane at a time.
constexpr int64_t kStreamBytes = int64_t{16} << 20;
constexpr int64_t kStreamRun = 1024;

size_t elem_size(bnorm_dtype_t t) { return t == BNORM_DTYPE_F32 ? 4 : 2; }

// Windows for x of this many bytes or more, of planes shorter than kStreamRun values:
// smaller tensors stay in the L3 from call to call and run a channel per task (one
// fork and join, not two per window); long planes are long runs already, and their
// channel per task (statistics, then output from the L2 or L3) ran 0.72 to 1.0 times
// the windows' time on (32, 64, 56, 56) to (256, 64, 112, 112) (bench/NOTES.md).
constexpr int64_t kWindowMin = int64_t{8} << 20;

Geo geometry(const bnorm_tensor_t& d) {
  Geo g = geometry(d.n, d.c, d.h * d.w, d.layout == BNORM_LAYOUT_NHWC);
  g.stream = !g.rows && d.dtype == BNORM_DTYPE_F32 && d.n * d.c * d.h * d.w * 4 >= kStreamBytes &&
             d.h * d.w >= kLanes;
  // The tensors that run in windows (windows_for, the one place this is decided): their
  // statistics and sums read a window's planes in memory order, a lane per value, on
  // every path (1.4 times as fast on 7x7 layers; on tensors in the caches, a channel per
  // task, slower: bench/NOTES.md).
  g.windowed = !g.rows && d.h * d.w < kStreamRun &&
               d.n * d.c * d.h * d.w * static_cast<int64_t>(elem_size(d.dtype)) >= kWindowMin;
  return g;
}

const char* at(const void* p, int64_t elems, size_t elem) {
  return p ? static_cast<const char*>(p) + elems * static_cast<int64_t>(elem) : nullptr;
}
char* at(void* p, int64_t elems, size_t elem) {
  return p ? static_cast<char*>(p) + elems * static_cast<int64_t>(elem) : nullptr;
}

// ---- the passes, over all channels ---------------------------------------------------------

// Channels of short planes per task at most: a window's channels are shared by the
// threads in tasks of this many, so that they are many enough to share evenly.
constexpr int64_t kMaxAcross = 64;

// Channel ranges a width of channels is cut into per block of samples: tasks enough for
// nt threads, and evenly shared where they are few.
int64_t parts_for(const Geo& g, int64_t width, int nt) {
  int64_t parts = g.hw < kChunk ? ceil_div(width, kMaxAcross) : 1;
  while (parts < width && (parts * g.blocks < nt || (parts * g.blocks < 4 * nt && parts * g.blocks % nt))) ++parts;
  return std::min(parts, width);
}

// f(c, nch, b) for the tasks of channels [c0, c0 + width) cut in parts ranges, block by block.
template <class F>
void across_tasks(int nt, const Geo& g, int64_t c0, int64_t width, int64_t parts, F&& f) {
  parallel_for(nt, parts * g.blocks, [&](int64_t i) {
    const int64_t b = i / parts, j = i % parts, a = c0 + width * j / parts;
    f(a, c0 + width * (j + 1) / parts - a, b);
  });
}


// Chan's merge of (nb, mb, qb) into (na, ma, qa), as welford_merge computes it, without
// branches: loops of it over channels vectorize. An empty side leaves the other as it
// is (the weight is 1 or 0), both empty stay empty.
inline void merge_into(double& na, double& ma, double& qa, double nb, double mb, double qb) {
  const double n = na + nb;
  const double delta = mb - ma;
  const double wb = n > 0.0 ? nb / n : 0.0;
  ma = ma + delta * wb;
  qa = qa + qb + delta * delta * na * wb;
  na = n;
}

// Per-channel Welford states as three arrays (loops over channels vectorize).
struct States {
  double *n, *mean, *m2;
  Welford<double> at(int64_t c) const { return Welford<double>{n[c], mean[c], m2[c]}; }
  void set(int64_t c, const Welford<double>& s) const {
    n[c] = s.count;
    mean[c] = s.mean;
    m2[c] = s.m2;
  }
};
States states_in(std::vector<double>& v, int64_t count, int64_t first = 0) {
  double* p = grown(v, static_cast<size_t>(3 * (first + count)));
  return States{p + 3 * first, p + 3 * first + count, p + 3 * first + 2 * count};
}

// Channels [c0, c1)'s states from their blocks' (st[c * blocks + b]), merged in order.
void merge_blocks(const Welford<double>* st, int64_t blocks, int64_t c0, int64_t c1, const States& out) {
  for (int64_t c = c0; c < c1; ++c) {
    Welford<double> s = welford_empty<double>();
    for (int64_t b = 0; b < blocks; ++b) s = welford_merge(s, st[c * blocks + b]);
    out.set(c, s);
  }
}
// The same for sums.
void add_blocks(const Sums* bs, int64_t blocks, int64_t c0, int64_t c1, Sums* out) {
  for (int64_t c = c0; c < c1; ++c) {
    Sums s{0.0, 0.0};
    for (int64_t b = 0; b < blocks; ++b) {
      s.g += bs[c * blocks + b].g;
      s.gx += bs[c * blocks + b].gx;
    }
    out[c] = s;
  }
}

// Per-channel Welford states of x.
void reduce_stats(Context& ctx, const Kernels& k, const Geo& g, bnorm_dtype_t t, const void* x, const States& out) {
  Workspace& ws = *ctx.ws;
  const size_t es = elem_size(t);
  if (!g.rows) {
    Welford<double>* st = grown(ws.states, g.c * g.blocks);
    const int nt = threads_for(ctx, g.n * g.c * g.hw);
    across_tasks(nt, g, 0, g.c, parts_for(g, g.c, nt), [&](int64_t c, int64_t nch, int64_t b) {
      k.stats_across(x, g.segs(c, b), nch, st + c * g.blocks + b, g.blocks);
    });
    merge_blocks(st, g.blocks, 0, g.c, out);
    return;
  }
  // Rows: a block's channel states as three arrays (count, mean, M2), merged lane set
  // by lane set and block by block in loops over the channels.
  const int nt = threads_for(ctx, g.total_rows * g.c);
  const int64_t pw = padded(g.w);
  double* st = grown(ws.wide_states, static_cast<size_t>(3 * g.c * g.row_blocks));
  float* scratch = grown(ws.scratch, static_cast<size_t>(nt * 3 * pw));
  double* wide = grown(ws.wide, static_cast<size_t>(nt * 2 * pw));
  const int k_sets = g.w / static_cast<int>(g.c);
  parallel_for(nt, g.row_blocks, [&](int64_t b) {
    const int tid = thread_id();
    float* scr = scratch + tid * 3 * pw;
    double* lmean = wide + tid * 2 * pw;
    double* lm2 = lmean + pw;
    double *bn = st + 3 * g.c * b, *bm = bn + g.c, *bq = bm + g.c;
    const int64_t r0 = g.row0(b), rows = g.rows_in(b);
    for (int64_t r = 0; r < rows; r += g.chunk_rows) {
      const int64_t nvals = std::min(g.chunk_rows, rows - r) * g.c;
      k.lane_stats(at(x, (r0 + r) * g.c, es), nvals, g.w, scr, lmean, lm2);
      const int64_t full = nvals / g.w, part = nvals % g.w;
      for (int j = 0; j < k_sets; ++j) {
        const int64_t l0 = j * g.c;
        if (r == 0 && j == 0) {  // the block's first lane set: its states as they are
          for (int64_t c = 0; c < g.c; ++c) bn[c] = static_cast<double>(full + (c < part ? 1 : 0));
          std::copy(lmean, lmean + g.c, bm);
          std::copy(lm2, lm2 + g.c, bq);
          continue;
        }
        for (int64_t c = 0; c < g.c; ++c)
          merge_into(bn[c], bm[c], bq[c], static_cast<double>(full + (l0 + c < part ? 1 : 0)), lmean[l0 + c],
                     lm2[l0 + c]);
      }
    }
  });
  double *n0 = st, *m0 = st + g.c, *q0 = st + 2 * g.c;
  for (int64_t b = 1; b < g.row_blocks; ++b) {
    const double *bn = st + 3 * g.c * b, *bm = bn + g.c, *bq = bm + g.c;
    for (int64_t c = 0; c < g.c; ++c) merge_into(n0[c], m0[c], q0[c], bn[c], bm[c], bq[c]);
  }
  std::copy(n0, n0 + g.c, out.n);
  std::copy(m0, m0 + g.c, out.mean);
  std::copy(q0, q0 + g.c, out.m2);
}

// Per-channel sums of g and g * (x - mean[c]), g = dy masked by y > 0 when mask is given.
void reduce_sums(Context& ctx, const Kernels& k, const Geo& g, bnorm_dtype_t t, const void* x, const void* mask,
                 const void* dy, const float* mean, Sums* out) {
  Workspace& ws = *ctx.ws;
  const size_t es = elem_size(t);
  if (!g.rows) {
    Sums* bs = grown(ws.sums, g.c * g.blocks);
    const int nt = threads_for(ctx, g.n * g.c * g.hw);
    across_tasks(nt, g, 0, g.c, parts_for(g, g.c, nt), [&](int64_t c, int64_t nch, int64_t b) {
      k.grad_sums_across(x, mask, dy, g.segs(c, b), nch, mean + c, bs + c * g.blocks + b, g.blocks);
    });
    add_blocks(bs, g.blocks, 0, g.c, out);
    return;
  }
  // Rows: per block, the lanes' float64 sums (sg, sgx over w lanes), folded into the
  // channels lane set by lane set; then the blocks in order.
  const int nt = threads_for(ctx, g.total_rows * g.c);
  const int64_t pw = padded(g.w);
  double* bs = grown(ws.wide_states, static_cast<size_t>(2 * pw * g.row_blocks));
  float* lane_mean = lane_arrays(ws.lanes, 1, g.w);
  for (int l = 0; l < g.w; l += static_cast<int>(g.c)) std::copy(mean, mean + g.c, lane_mean + l);
  float* scratch = grown(ws.scratch, static_cast<size_t>(nt * 2 * pw));
  const int k_sets = g.w / static_cast<int>(g.c);
  parallel_for(nt, g.row_blocks, [&](int64_t b) {
    const int tid = thread_id();
    float* scr = scratch + tid * 2 * pw;
    double* sg = bs + 2 * pw * b;
    double* sgx = sg + pw;
    std::fill(sg, sg + 2 * pw, 0.0);
    const int64_t r0 = g.row0(b), rows = g.rows_in(b);
    for (int64_t r = 0; r < rows; r += g.chunk_rows) {
      const int64_t nvals = std::min(g.chunk_rows, rows - r) * g.c;
      const int64_t o = (r0 + r) * g.c;
      k.lane_grad_sums(at(x, o, es), at(mask, o, es), at(dy, o, es), nvals, g.w, lane_mean, scr, sg, sgx);
    }
    for (int j = 1; j < k_sets; ++j)
      for (int64_t c = 0; c < g.c; ++c) {
        sg[c] += sg[j * g.c + c];
        sgx[c] += sgx[j * g.c + c];
      }
  });
  double *g0 = bs, *x0 = bs + pw;
  for (int64_t b = 1; b < g.row_blocks; ++b)
    for (int64_t c = 0; c < g.c; ++c) {
      g0[c] += bs[2 * pw * b + c];
      x0[c] += bs[2 * pw * b + pw + c];
    }
  for (int64_t c = 0; c < g.c; ++c) out[c] = Sums{g0[c], x0[c]};
}

// Per-channel coefficients of an elementwise pass as four float arrays (an Affine's
// fields in order, or a DxCoef's). For channels-last calls they are lane arrays:
// channel c's at c, repeated over the lane set's rows by spread(), padded with zeros.
struct Coefs {
  float* p[4];
  int64_t c = 0;
  void set(int64_t i, const Affine& a) const {
    p[0][i] = a.mean_hi;
    p[1][i] = a.mean_lo;
    p[2][i] = a.scale;
    p[3][i] = a.shift;
  }
  void set(int64_t i, const DxCoef& a) const {
    p[0][i] = a.mean;
    p[1][i] = a.g;
    p[2][i] = a.xc;
    p[3][i] = a.c0;
  }
  Affine affine(int64_t i) const { return Affine{p[0][i], p[1][i], p[2][i], p[3][i]}; }
  DxCoef dx(int64_t i) const { return DxCoef{p[0][i], p[1][i], p[2][i], p[3][i]}; }
};

Coefs coefs_for(Workspace& ws, const Geo& g) {
  const int64_t width = g.rows ? padded(g.w) : g.c;
  float* base = grown(ws.lanes, static_cast<size_t>(4 * width));
  Coefs cf;
  cf.c = g.c;
  for (int i = 0; i < 4; ++i) {
    cf.p[i] = base + i * width;
    if (g.rows) std::fill(cf.p[i] + g.w, cf.p[i] + width, 0.0f);
  }
  return cf;
}

// Channels-last: channel c's coefficients at every lane of it.
void spread(const Geo& g, const Coefs& cf) {
  if (!g.rows) return;
  for (int i = 0; i < 4; ++i)
    for (int64_t l = g.c; l < g.w; l += g.c) std::copy(cf.p[i], cf.p[i] + g.c, cf.p[i] + l);
}

void map_affine(Context& ctx, const Kernels& k, const Geo& g, bnorm_dtype_t t, const void* x, const void* z,
                void* y, const Coefs& cf, bool relu) {
  const size_t es = elem_size(t);
  if (!g.rows) {
    const int nt = threads_for(ctx, g.n * g.c * g.hw);
    const LaneAffine la{cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
    const int64_t runs = g.n * g.c, per = std::max<int64_t>(1, kBlock / g.hw);
    parallel_for(nt, ceil_div(runs, per), [&](int64_t i) {
      k.affine_flat(x, z, y, i * per, std::min(runs, (i + 1) * per), g.hw, g.c, la, relu, g.stream);
    });
    return;
  }
  spread(g, cf);
  const LaneAffine la{cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
  const int nt = threads_for(ctx, g.total_rows * g.c);
  parallel_for(nt, g.row_blocks, [&](int64_t b) {
    const int64_t o = g.row0(b) * g.c;
    k.lane_affine(at(x, o, es), at(z, o, es), at(y, o, es), g.rows_in(b) * g.c, g.w, la, relu);
  });
}

void map_dx(Context& ctx, const Kernels& k, const Geo& g, bnorm_dtype_t t, const void* x, const void* mask,
            const void* dy, void* dx, void* dz, const Coefs& cf, bool relu) {
  const size_t es = elem_size(t);
  if (!g.rows) {
    const int nt = threads_for(ctx, g.n * g.c * g.hw);
    const LaneDx la{cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
    const int64_t runs = g.n * g.c, per = std::max<int64_t>(1, kBlock / g.hw);
    parallel_for(nt, ceil_div(runs, per), [&](int64_t i) {
      k.dx_flat(x, mask, dy, dx, dz, i * per, std::min(runs, (i + 1) * per), g.hw, g.c, la, relu, g.stream);
    });
    return;
  }
  spread(g, cf);
  const LaneDx la{cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
  const int nt = threads_for(ctx, g.total_rows * g.c);
  parallel_for(nt, g.row_blocks, [&](int64_t b) {
    const int64_t o = g.row0(b) * g.c;
    k.lane_dx(at(x, o, es), at(mask, o, es), at(dy, o, es), at(dx, o, es), at(dz, o, es), g.rows_in(b) * g.c,
              g.w, la, relu);
  });
}

// A channel per task, both passes back to back, when there are channels enough for the
// threads: the same blocks and merge order as reduce_stats + map_affine.
bool channel_tasks(const Context& ctx, const Geo& g) {
  if (g.rows) return false;
  const int nt = threads_for(ctx, g.n * g.c * g.hw);
  return g.blocks == 1 || g.c >= 2 * static_cast<int64_t>(nt);
}

// Planes past the caches run in windows of adjacent channels, each window's statistics
// then its output while its data is still in the L3: the tensor is read once from memory
// (the floors; a channel past the L3, as (256, 64, 112, 112)'s 12.8 MB, is read twice)
// and read in memory order, a window's channels side by side (runs of
// width planes; a channel's own planes are a sample apart, and short runs that far apart
// are read at a third of the memory's speed). Threads share a window by blocks of samples
// and ranges of its channels: a channel's block states, and their merge, are those of
// reduce_stats, so windows and ranges change the order of work, never a result.
//
// The bytes a window's tensors (those read, and outputs not streamed) may fill: an
// eighth of a 32 MiB L3. Measured on a 2-core Zen 3 (bench/NOTES.md): a second read of
// 4 MiB runs at 78 GB/s, of 8 MiB at 61, of 16 MiB at 40 (the memory: 25); 4 MiB
// windows ran (256, 512, 7, 7) 10% faster than 8.
constexpr int64_t kWindowBytes = int64_t{4} << 20;

struct Windows {
  int64_t width = 0;  // channels per window; 0: no windows
  int64_t parts = 1;  // channel ranges per window and block of samples
};

// For the tensors geometry() marks windowed. bytes: those of a value's tensors that
// stay cached between the passes.
Windows windows_for(const Context& ctx, const Geo& g, int64_t bytes) {
  Windows w;
  const int64_t per_channel = g.n * g.hw * bytes;
  if (!g.windowed || g.blocks == 0) return w;
  w.width = std::clamp<int64_t>(kWindowBytes / per_channel, 1, g.c);
  w.width = ceil_div(g.c, ceil_div(g.c, w.width));  // windows of near-equal width
  w.parts = parts_for(g, w.width, threads_for(ctx, g.n * g.c * g.hw));
  return w;
}

// A window's planes of one sample are one run with a coefficient per value (spans), so
// a tail is partial once per run of planes, not once per plane (a masked store per 7x7
// plane cost a fifth of the output pass), and outputs stream from the kStreamBytes that
// Geo::stream takes, in aligned full blocks. The arithmetic of affine() and dx_map() per
// value: the same bits.
bool streams(const bnorm_tensor_t& d) {
  return d.dtype == BNORM_DTYPE_F32 && d.n * d.c * d.h * d.w * 4 >= kStreamBytes;
}

// The four coefficient arrays of cf for channels [c0, c1), value by value.
Coefs spread_spans(Workspace& ws, const Geo& g, const Coefs& cf, int64_t c0, int64_t c1) {
  const int64_t len = padded(static_cast<int>((c1 - c0) * g.hw)) + kLanes;
  float* base = grown(ws.spans, static_cast<size_t>(4 * len));
  Coefs out;
  out.c = c1 - c0;
  for (int i = 0; i < 4; ++i) {
    out.p[i] = base + i * len;
    for (int64_t c = c0; c < c1; ++c) std::fill_n(out.p[i] + (c - c0) * g.hw, g.hw, cf.p[i][c]);
    std::fill(out.p[i] + (c1 - c0) * g.hw, out.p[i] + len, 0.0f);
  }
  return out;
}

// stats(c, nch, b) for a window's tasks (channels [c, c + nch), block of samples b),
// then finish(c0, c1) for the window (cf's coefficients of its channels), then for the
// same tasks, sample by sample, apply(o, len, p): the run of len values at o (the
// sample's planes [c, c + nch)) and its coefficients per value, p[0..3].
template <class Stats, class Finish, class Apply>
void by_windows(const Context& ctx, const Geo& g, const Windows& w, const Coefs& cf, Stats&& stats,
                Finish&& finish, Apply&& apply) {
  const int nt = threads_for(ctx, g.n * g.c * g.hw);
  for (int64_t c0 = 0; c0 < g.c; c0 += w.width) {
    const int64_t c1 = std::min(g.c, c0 + w.width), parts = std::min(w.parts, c1 - c0);
    across_tasks(nt, g, c0, c1 - c0, parts, stats);
    finish(c0, c1);
    const Coefs sp = spread_spans(*ctx.ws, g, cf, c0, c1);
    across_tasks(nt, g, c0, c1 - c0, parts, [&](int64_t c, int64_t nch, int64_t b) {
      const int64_t l = (c - c0) * g.hw;
      const float* p[4] = {sp.p[0] + l, sp.p[1] + l, sp.p[2] + l, sp.p[3] + l};
      for (int64_t n = b * g.nb; n < std::min(g.n, (b + 1) * g.nb); ++n) apply((n * g.c + c) * g.hw, nch * g.hw, p);
    });
  }
}

// ---- per-channel arithmetic between the passes -----------------------------------------------

Affine affine_of(double mean, double invstd, const float* gamma, const float* beta, int64_t c) {
  const double g = gamma ? gamma[c] : 1.0;
  const float hi = static_cast<float>(mean);
  return Affine{hi, static_cast<float>(mean - static_cast<double>(hi)), static_cast<float>(invstd * g),
                beta ? beta[c] : 0.0f};
}

TrainingFinish training_finish(const Coefs& cf, const States& st, const float* gamma, const float* beta,
                               float momentum, float eps, float* running_mean, float* running_var, float* save_mean,
                               float* save_invstd) {
  return TrainingFinish{st.n,        st.mean, st.m2,   gamma,   beta,   momentum, eps,
                        running_mean, running_var, save_mean, save_invstd, cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
}

BackwardFinish backward_finish(const Coefs& cf, const Sums* sums, const float* save_mean, const float* save_invstd,
                               const float* gamma, double m, float* dgamma, float* dbeta) {
  return BackwardFinish{sums, save_mean, save_invstd, gamma, m, dgamma, dbeta, cf.p[0], cf.p[1], cf.p[2], cf.p[3]};
}

}  // namespace

int max_threads(const Context& ctx) { return ctx.threads > 0 ? ctx.threads : default_threads(); }

// ---- batch norm ------------------------------------------------------------------------------

void forward_training(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* z, void* y,
                      const float* gamma, const float* beta, float momentum, float eps, float* running_mean,
                      float* running_var, float* save_mean, float* save_invstd, bool relu) {
  const Kernels& k = kernels(d.dtype);
  const Geo g = geometry(d);
  const States channel = states_in(ctx.ws->channel_states, d.c);
  const Coefs cf = coefs_for(*ctx.ws, g);
  const TrainingFinish f = training_finish(cf, channel, gamma, beta, momentum, eps, running_mean, running_var,
                                           save_mean, save_invstd);
  const size_t es = elem_size(d.dtype);
  const bool stream = streams(d);
  const Windows w = windows_for(ctx, g, static_cast<int64_t>(es) * (1 + (z ? 1 : 0) + (stream ? 0 : 1)));
  if (w.width > 0) {
    Welford<double>* st = grown(ctx.ws->states, g.c * g.blocks);
    by_windows(
        ctx, g, w, cf,
        [&](int64_t c, int64_t nch, int64_t b) { k.stats_across(x, g.segs(c, b), nch, st + c * g.blocks + b, g.blocks); },
        [&](int64_t c0, int64_t c1) {
          merge_blocks(st, g.blocks, c0, c1, channel);
          k.finish_training(f, c0, c1);
        },
        [&](int64_t o, int64_t len, const float* const* p) {
          k.span_affine(at(x, o, es), at(z, o, es), at(y, o, es), len, LaneAffine{p[0], p[1], p[2], p[3]}, relu,
                        stream);
        });
    return;
  }
  if (channel_tasks(ctx, g)) {
    parallel_for(threads_for(ctx, g.n * g.c * g.hw), g.c, [&](int64_t c) {
      Welford<double> s = welford_empty<double>();
      for (int64_t b = 0; b < g.blocks; ++b) s = welford_merge(s, k.stats(x, g.segs(c, b)));
      channel.set(c, s);
      finish_training_channel(f, c);
      for (int64_t b = 0; b < g.blocks; ++b) k.affine(x, z, y, g.segs(c, b), cf.affine(c), relu, g.stream);
    });
    return;
  }
  reduce_stats(ctx, k, g, d.dtype, x, channel);
  k.finish_training(f, 0, d.c);
  map_affine(ctx, k, g, d.dtype, x, z, y, cf, relu);
}


void forward_inference(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* z, void* y,
                       const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                       float eps, bool relu) {
  const Geo g = geometry(d);
  const Coefs cf = coefs_for(*ctx.ws, g);
  for (int64_t c = 0; c < d.c; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
    cf.set(c, affine_of(running_mean[c], invstd, gamma, beta, c));
  }
  map_affine(ctx, kernels(d.dtype), g, d.dtype, x, z, y, cf, relu);
}

void backward(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* y, const void* dy,
              const float* gamma, const float* save_mean, const float* save_invstd, void* dx, void* dz,
              float* dgamma, float* dbeta, bool relu) {
  const Kernels& k = kernels(d.dtype);
  const Geo g = geometry(d);
  const double m = static_cast<double>(d.n * d.h * d.w);
  const void* mask = relu ? y : nullptr;
  Sums* sums = grown(ctx.ws->channel_sums, d.c);
  const Coefs cf = coefs_for(*ctx.ws, g);
  const BackwardFinish f = backward_finish(cf, sums, save_mean, save_invstd, gamma, m, dgamma, dbeta);
  const size_t es = elem_size(d.dtype);
  const bool stream = streams(d);
  const Windows w = windows_for(
      ctx, g, static_cast<int64_t>(es) * (2 + (relu ? 1 : 0) + (stream ? 0 : 1) + (dz ? 1 : 0)));
  if (w.width > 0) {
    Sums* bs = grown(ctx.ws->sums, g.c * g.blocks);
    by_windows(
        ctx, g, w, cf,
        [&](int64_t c, int64_t nch, int64_t b) {
          k.grad_sums_across(x, mask, dy, g.segs(c, b), nch, save_mean + c, bs + c * g.blocks + b, g.blocks);
        },
        [&](int64_t c0, int64_t c1) {
          add_blocks(bs, g.blocks, c0, c1, sums);
          k.finish_backward(f, c0, c1);
        },
        [&](int64_t o, int64_t len, const float* const* p) {
          k.span_dx(at(x, o, es), at(mask, o, es), at(dy, o, es), at(dx, o, es), at(dz, o, es), len,
                    LaneDx{p[0], p[1], p[2], p[3]}, relu, stream);
        });
    return;
  }
  if (channel_tasks(ctx, g)) {
    parallel_for(threads_for(ctx, g.n * g.c * g.hw), g.c, [&](int64_t c) {
      Sums s{0.0, 0.0};
      for (int64_t b = 0; b < g.blocks; ++b) {
        const Sums p = k.grad_sums(x, mask, dy, g.segs(c, b), save_mean[c]);
        s.g += p.g;
        s.gx += p.gx;
      }
      sums[c] = s;
      finish_backward_channel(f, c);
      for (int64_t b = 0; b < g.blocks; ++b) k.dx_map(x, mask, dy, dx, dz, g.segs(c, b), cf.dx(c), relu, g.stream);
    });
    return;
  }
  reduce_sums(ctx, k, g, d.dtype, x, mask, dy, save_mean, sums);
  k.finish_backward(f, 0, d.c);
  map_dx(ctx, k, g, d.dtype, x, mask, dy, dx, dz, cf, relu);
}

// ---- batch norm with given statistics ----------------------------------------------------------

void backward_frozen(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                     const float* running_mean, const float* running_var, float eps, void* dx, float* dgamma,
                     float* dbeta) {
  const Kernels& k = kernels(d.dtype);
  const Geo g = geometry(d);
  // The parameter gradients are sums over the batch with the running statistics; dx is
  // dy scaled, x unread. Sums first: dx may alias dy.
  if (dgamma || dbeta) {
    Sums* sums = grown(ctx.ws->channel_sums, d.c);
    reduce_sums(ctx, k, g, d.dtype, x, nullptr, dy, running_mean, sums);
    for (int64_t c = 0; c < d.c; ++c) {
      const double is = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
      if (dgamma) dgamma[c] = static_cast<float>(sums[c].gx * is);
      if (dbeta) dbeta[c] = static_cast<float>(sums[c].g);
    }
  }
  const Coefs cf = coefs_for(*ctx.ws, g);
  for (int64_t c = 0; c < d.c; ++c) {
    const double is = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
    cf.set(c, DxCoef{running_mean[c], static_cast<float>((gamma ? gamma[c] : 1.0) * is), 0.0f, 0.0f});
  }
  map_dx(ctx, k, g, d.dtype, nullptr, nullptr, dy, dx, nullptr, cf, false);
}

void fold_into_weights(Context& ctx, const bnorm_tensor_t& d, const void* weight, const float* bias,
                       const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                       float eps, void* weight_out, float* bias_out) {
  const Kernels& k = kernels(d.dtype);
  const int64_t per = d.c * d.h * d.w;  // an output channel's weights, contiguous in either layout
  const size_t es = elem_size(d.dtype);
  parallel_for(threads_for(ctx, d.n * per), d.n, [&](int64_t o) {
    const double s =
        (gamma ? gamma[o] : 1.0) / std::sqrt(static_cast<double>(running_var[o]) + static_cast<double>(eps));
    k.scale_run(at(weight, o * per, es), at(weight_out, o * per, es), per, static_cast<float>(s));
    const double b = bias ? bias[o] : 0.0;
    bias_out[o] = static_cast<float>((b - running_mean[o]) * s + (beta ? beta[o] : 0.0));
  });
}

void sync_local_stats(Context& ctx, const bnorm_tensor_t& d, const void* x, float* local_stats) {
  const States st = states_in(ctx.ws->channel_states, d.c);
  reduce_stats(ctx, kernels(d.dtype), geometry(d), d.dtype, x, st);
  for (int64_t c = 0; c < d.c; ++c) {
    local_stats[3 * c] = static_cast<float>(st.n[c]);
    local_stats[3 * c + 1] = static_cast<float>(st.mean[c]);
    local_stats[3 * c + 2] = static_cast<float>(st.m2[c]);
  }
}

void sync_forward(Context& ctx, const bnorm_tensor_t& d, const void* x, void* y, const float* gamma,
                  const float* beta, const float* global_stats, float momentum, float eps, float* running_mean,
                  float* running_var, float* save_mean, float* save_invstd) {
  const Geo g = geometry(d);
  const Coefs cf = coefs_for(*ctx.ws, g);
  for (int64_t c = 0; c < d.c; ++c) {
    const double count = global_stats[3 * c], mean = global_stats[3 * c + 1], m2 = global_stats[3 * c + 2];
    const double var = count > 0.0 ? std::max(m2 / count, 0.0) : 0.0;
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
    cf.set(c, affine_of(mean, invstd, gamma, beta, c));
    if (save_mean) save_mean[c] = static_cast<float>(mean);
    if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
    // A batch of fewer than two values over all ranks has no unbiased variance.
    if (running_mean && count >= 2.0) {
      const double mo = momentum;
      running_mean[c] = static_cast<float>((1.0 - mo) * running_mean[c] + mo * mean);
      running_var[c] = static_cast<float>((1.0 - mo) * running_var[c] + mo * std::max(m2 / (count - 1.0), 0.0));
    }
  }
  map_affine(ctx, kernels(d.dtype), g, d.dtype, x, nullptr, y, cf, false);
}

void sync_backward_sums(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy,
                        const float* save_mean, float* local_sums) {
  Sums* sums = grown(ctx.ws->channel_sums, d.c);
  reduce_sums(ctx, kernels(d.dtype), geometry(d), d.dtype, x, nullptr, dy, save_mean, sums);
  for (int64_t c = 0; c < d.c; ++c) {
    local_sums[2 * c] = static_cast<float>(sums[c].g);
    local_sums[2 * c + 1] = static_cast<float>(sums[c].gx);
  }
}

void sync_backward(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                   const float* save_mean, const float* save_invstd, const float* global_stats,
                   const float* global_sums, void* dx, float* dgamma, float* dbeta) {
  const Geo g = geometry(d);
  const Coefs cf = coefs_for(*ctx.ws, g);
  Sums* sums = grown(ctx.ws->channel_sums, d.c);
  BackwardFinish f = backward_finish(cf, sums, save_mean, save_invstd, gamma, 1.0, dgamma, dbeta);
  for (int64_t c = 0; c < d.c; ++c) {
    sums[c] = Sums{global_sums[2 * c], global_sums[2 * c + 1]};
    f.m = std::max(1.0, static_cast<double>(global_stats[3 * c]));  // the whole batch's count
    finish_backward_channel(f, c);
  }
  map_dx(ctx, kernels(d.dtype), g, d.dtype, x, nullptr, dy, dx, nullptr, cf, false);
}

// ---- the per-sample norms ------------------------------------------------------------------------
// Sample n's group g is one contiguous run of (c / groups) * h * w values in NCHW, and in
// either layout when it is the whole sample (layer norm, groups = 1) or h * w = 1: then
// the (n, g) pairs are the channels of an NCHW view (1, n * groups, run). Channels-last
// groups of several channels are per sample a row set (the channels of h * w rows),
// whose channel states merge into group states.

namespace {

bool groups_contiguous(const bnorm_tensor_t& d, int64_t groups) {
  return d.layout == BNORM_LAYOUT_NCHW || groups == 1 || d.h * d.w == 1;
}

// Welford states of every (n, g), n-major, into ws.channel_states.
States group_states(Context& ctx, const Kernels& k, const bnorm_tensor_t& d, int64_t groups,
                              const void* x) {
  const int64_t hw = d.h * d.w, cpg = d.c / groups;
  const size_t es = elem_size(d.dtype);
  if (groups_contiguous(d, groups)) {
    const States st = states_in(ctx.ws->channel_states, d.n * groups);
    reduce_stats(ctx, k, geometry(1, d.n * groups, cpg * hw, false), d.dtype, x, st);
    return st;
  }
  grown(ctx.ws->channel_states, static_cast<size_t>(3 * (d.n * groups + d.c)));
  const States st = states_in(ctx.ws->channel_states, d.n * groups);
  const States per_channel = states_in(ctx.ws->channel_states, d.c, d.n * groups);
  const Geo g = geometry(1, d.c, hw, true);
  for (int64_t n = 0; n < d.n; ++n) {
    reduce_stats(ctx, k, g, d.dtype, at(x, n * hw * d.c, es), per_channel);
    for (int64_t gi = 0; gi < groups; ++gi) {
      Welford<double> s = welford_empty<double>();
      for (int64_t c = gi * cpg; c < (gi + 1) * cpg; ++c) s = welford_merge(s, per_channel.at(c));
      st.set(n * groups + gi, s);
    }
  }
  return st;
}

// A per-value parameter array in memory order: feature c * hw + i sits at i * c + c in
// a channels-last sample. Returns p itself where the orders agree.
const float* in_memory_order(const bnorm_tensor_t& d, const float* p, float* buf) {
  const int64_t hw = d.h * d.w;
  if (!p || d.layout == BNORM_LAYOUT_NCHW || hw == 1) return p;
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t i = 0; i < hw; ++i) buf[i * d.c + c] = p[c * hw + i];
  return buf;
}

}  // namespace

void per_sample_forward(Context& ctx, const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x,
                        void* y, const float* gamma, const float* beta, float eps, float* save_mean,
                        float* save_invstd) {
  const Kernels& k = kernels(d.dtype);
  const int64_t hw = d.h * d.w, cpg = d.c / groups, ng = d.n * groups, per_sample = d.c * hw;
  const size_t es = elem_size(d.dtype);
  const States st = group_states(ctx, k, d, groups, x);
  // mean_hi, mean_lo, invstd per (n, g); then the per-value parameters in memory order.
  float* v = grown(ctx.ws->values, 3 * ng + (per_value ? 2 * per_sample : 0));
  for (int64_t j = 0; j < ng; ++j) {
    const double mean = st.mean[j];
    const double invstd = 1.0 / std::sqrt(std::max(st.m2[j] / st.n[j], 0.0) + static_cast<double>(eps));
    v[j] = static_cast<float>(mean);
    v[ng + j] = static_cast<float>(mean - static_cast<double>(v[j]));
    v[2 * ng + j] = static_cast<float>(invstd);
    if (save_mean) save_mean[j] = static_cast<float>(mean);
    if (save_invstd) save_invstd[j] = static_cast<float>(invstd);
  }
  const int nt = threads_for(ctx, d.n * per_sample);
  if (per_value) {  // layer norm: groups = 1, a sample is one run
    const float* gm = in_memory_order(d, gamma, v + 3 * ng);
    const float* bt = in_memory_order(d, beta, v + 3 * ng + per_sample);
    parallel_for(nt, d.n, [&](int64_t n) {
      k.affine_per_value(at(x, n * per_sample, es), at(y, n * per_sample, es), per_sample, v[n], v[ng + n],
                         v[2 * ng + n], gm, bt);
    });
    return;
  }
  auto coef = [&](int64_t n, int64_t c) {
    const int64_t j = n * groups + c / cpg;
    return Affine{v[j], v[ng + j], static_cast<float>(static_cast<double>(v[2 * ng + j]) * (gamma ? gamma[c] : 1.0)),
                  beta ? beta[c] : 0.0f};
  };
  if (d.layout == BNORM_LAYOUT_NCHW || hw == 1) {
    const Geo g = geometry(1, d.n * d.c, hw, false);
    const Coefs cf = coefs_for(*ctx.ws, g);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t c = 0; c < d.c; ++c) cf.set(n * d.c + c, coef(n, c));
    map_affine(ctx, k, g, d.dtype, x, nullptr, y, cf, false);
    return;
  }
  const Geo g = geometry(1, d.c, hw, true);
  for (int64_t n = 0; n < d.n; ++n) {
    const Coefs cf = coefs_for(*ctx.ws, g);
    for (int64_t c = 0; c < d.c; ++c) cf.set(c, coef(n, c));
    map_affine(ctx, k, g, d.dtype, at(x, n * per_sample, es), nullptr, at(y, n * per_sample, es), cf, false);
  }
}

void per_sample_backward(Context& ctx, const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x,
                         const void* dy, const float* gamma, const float* save_mean, const float* save_invstd,
                         void* dx, float* dgamma, float* dbeta) {
  const Kernels& k = kernels(d.dtype);
  const int64_t hw = d.h * d.w, cpg = d.c / groups, per_sample = d.c * hw;
  const double len = static_cast<double>(cpg * hw);
  const size_t es = elem_size(d.dtype);
  const int nt = threads_for(ctx, d.n * per_sample);
  if (per_value) {  // layer norm: one group per sample, a parameter per value
    float* gm_buf = grown(ctx.ws->values, per_sample);
    const float* gm = in_memory_order(d, gamma, gm_buf);
    // The parameter gradients first (dx may alias dy): per feature, over the samples in
    // order, features split in blocks over the threads.
    if (dgamma || dbeta) {
      double* acc = grown(ctx.ws->wide, 2 * per_sample);
      std::fill(acc, acc + 2 * per_sample, 0.0);
      const int64_t fb = std::max<int64_t>(kLanes, kBlock / std::max<int64_t>(1, d.n)) / kLanes * kLanes;
      parallel_for(nt, ceil_div(per_sample, fb), [&](int64_t b) {
        const int64_t f0 = b * fb, f1 = std::min(per_sample, f0 + fb);
        k.column_grads(x, dy, d.n, per_sample, f0, f1, save_mean, save_invstd, acc, acc + per_sample);
      });
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t f = c * hw + i;
          const int64_t o = d.layout == BNORM_LAYOUT_NCHW || hw == 1 ? f : i * d.c + c;
          if (dgamma) dgamma[f] = static_cast<float>(acc[o]);
          if (dbeta) dbeta[f] = static_cast<float>(acc[per_sample + o]);
        }
    }
    parallel_for(nt, d.n, [&](int64_t n) {
      const float mean = save_mean[n], invstd = save_invstd[n];
      const void* xn = at(x, n * per_sample, es);
      const void* dyn = at(dy, n * per_sample, es);
      const Sums s = k.weighted_grad_sums(xn, dyn, per_sample, mean, gm);
      const double is = invstd, sum_gx = s.gx * is;
      k.dx_per_value(xn, dyn, at(dx, n * per_sample, es), per_sample, mean, invstd, gm,
                     static_cast<float>(-is * is * sum_gx / len), static_cast<float>(-is * s.g / len));
    });
    return;
  }
  // Per (n, c): sum(dy) and sum(dy * (x - mean of its group)).
  const int64_t nc = d.n * d.c;
  Sums* s = grown(ctx.ws->channel_sums, nc);
  float* mean_of = grown(ctx.ws->values, nc);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c) mean_of[n * d.c + c] = save_mean[n * groups + c / cpg];
  const bool planes = d.layout == BNORM_LAYOUT_NCHW || hw == 1;
  if (planes) {
    reduce_sums(ctx, k, geometry(1, nc, hw, false), d.dtype, x, nullptr, dy, mean_of, s);
  } else {
    const Geo g = geometry(1, d.c, hw, true);
    for (int64_t n = 0; n < d.n; ++n)
      reduce_sums(ctx, k, g, d.dtype, at(x, n * per_sample, es), nullptr, at(dy, n * per_sample, es),
                  mean_of + n * d.c, s + n * d.c);
  }
  if (dgamma || dbeta)
    for (int64_t c = 0; c < d.c; ++c) {
      double dg = 0.0, db = 0.0;
      for (int64_t n = 0; n < d.n; ++n) {
        dg += s[n * d.c + c].gx * save_invstd[n * groups + c / cpg];
        db += s[n * d.c + c].g;
      }
      if (dgamma) dgamma[c] = static_cast<float>(dg);
      if (dbeta) dbeta[c] = static_cast<float>(db);
    }
  // dx = invstd * (gamma * dy - sum_g / len - xhat * sum_gx / len), the sums over the
  // group of gamma * dy and gamma * dy * xhat.
  DxCoef* coef = grown(ctx.ws->dx, nc);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t j = n * groups + gi;
      const double is = save_invstd[j];
      double sum_g = 0.0, sum_gx = 0.0;
      for (int64_t c = gi * cpg; c < (gi + 1) * cpg; ++c) {
        const double gc = gamma ? gamma[c] : 1.0;
        sum_g += gc * s[n * d.c + c].g;
        sum_gx += gc * s[n * d.c + c].gx;
      }
      sum_gx *= is;
      for (int64_t c = gi * cpg; c < (gi + 1) * cpg; ++c)
        coef[n * d.c + c] = DxCoef{save_mean[j], static_cast<float>(is * (gamma ? gamma[c] : 1.0)),
                                   static_cast<float>(-is * is * sum_gx / len), static_cast<float>(-is * sum_g / len)};
    }
  if (planes) {
    const Geo g = geometry(1, nc, hw, false);
    const Coefs cf = coefs_for(*ctx.ws, g);
    for (int64_t i = 0; i < nc; ++i) cf.set(i, coef[i]);
    map_dx(ctx, k, g, d.dtype, x, nullptr, dy, dx, nullptr, cf, false);
  } else {
    const Geo g = geometry(1, d.c, hw, true);
    for (int64_t n = 0; n < d.n; ++n) {
      const Coefs cf = coefs_for(*ctx.ws, g);
      for (int64_t c = 0; c < d.c; ++c) cf.set(c, coef[n * d.c + c]);
      map_dx(ctx, k, g, d.dtype, at(x, n * per_sample, es), nullptr, at(dy, n * per_sample, es),
             at(dx, n * per_sample, es), nullptr, cf, false);
    }
  }
}

}  // namespace bnorm::cpu::fast
