// The CPU fast path's thread pool (see thread_pool.hpp).
#include "thread_pool.hpp"

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BNORM_PAUSE() _mm_pause()
#else
#define BNORM_PAUSE() std::this_thread::yield()
#endif

namespace bnorm::cpu {
namespace {

// How long a waiting thread polls before it sleeps: a layer's backward follows its
// forward (and a small call's threads return) well within it, a GEMM between two calls
// does not keep a core spinning for long.
constexpr std::chrono::microseconds kSpin(20);

thread_local int tl_thread = 0;

// Polls until done() or kSpin has passed; true if done.
template <class F>
bool spin_until(F&& done) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (done()) return true;
    BNORM_PAUSE();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() - t0 > kSpin) return done();
  }
}

class Pool {
 public:
  void run(int threads, const std::function<void(int)>& body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) {  // another caller's job is running: this one alone
      for (int t = 0; t < threads; ++t) body(t);
      return;
    }
    grow(threads - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      body_ = &body;
      threads_ = threads;
      remaining_.store(threads - 1, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_work_.notify_all();
    body(0);
    if (!spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(m_);
      cv_done_.wait(lk, [&] { return remaining_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  // Workers 1..n exist afterwards (called with busy_ held, before the job is published:
  // a new worker starts from the generation before it, so it runs the job even if it
  // first looks after the publication).
  void grow(int n) {
    const uint64_t now = gen_.load(std::memory_order_relaxed);
    while (static_cast<int>(workers_.size()) < n) {
      const int index = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, index, now] { work(index, now); });
      workers_.back().detach();  // the pool lives as long as the process
    }
  }

  void work(int index, uint64_t seen) {
    tl_thread = index;
    for (;;) {
      if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(m_);
        cv_work_.wait(lk, [&] { return gen_.load(std::memory_order_relaxed) != seen; });
      }
      // The job's fields are read under the lock, together with its generation.
      const std::function<void(int)>* body;
      int threads;
      {
        std::lock_guard<std::mutex> lk(m_);
        seen = gen_.load(std::memory_order_relaxed);
        body = body_;
        threads = threads_;
      }
      if (index >= threads) continue;
      (*body)(index);
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);
        cv_done_.notify_one();
      }
    }
  }

  std::mutex busy_;  // one job at a time
  std::mutex m_;
  std::condition_variable cv_work_, cv_done_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> remaining_{0};
  const std::function<void(int)>* body_ = nullptr;
  int threads_ = 0;
  std::vector<std::thread> workers_;
};

// The process's pool; a child of fork() has none of its parent's threads and makes its
// own. Never destroyed: its workers sleep until the process ends.
Pool& pool() {
  static std::mutex m;
  static Pool* p = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lk(m);
  const pid_t me = getpid();
  if (!p || owner != me) {
    p = new Pool();  // a forked parent's pool stays behind, unused
    owner = me;
  }
  return *p;
}

}  // namespace

int default_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("BNORM_CPU_THREADS")) {
      const int v = std::atoi(env);
      if (v >= 1) return v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const unsigned h = std::thread::hardware_concurrency();
    return h > 0 ? static_cast<int>(h) : 1;
  }();
  return n;
}

void run_on_threads(int threads, const std::function<void(int)>& body) {
  if (threads <= 1) {
    body(0);
    return;
  }
  pool().run(threads, body);
}

int current_thread() { return tl_thread; }

}  // namespace bnorm::cpu
