// The CPU fast path's threads: one small pool for the process. A job runs a body on t
// threads at once (the caller is thread 0) and returns when all are done.
//
// Why not OpenMP: between two parallel regions OpenMP's threads keep spinning (libgomp:
// about 300,000 polls by default), and bnorm is called between other libraries' work. In
// the LeNet harness they took the cores from OpenBLAS's GEMMs: 10 epochs ran 1.6x slower
// than with the threads asleep (OMP_WAIT_POLICY=passive), which in turn wakes too slowly
// for small calls. Here a worker spins a few microseconds (the next call of a layer's
// forward and backward comes that soon), then sleeps on a condition variable.
#pragma once

#include <functional>

namespace bnorm::cpu {

// The threads a call gets when a handle asks for 0: BNORM_CPU_THREADS if set, else the
// processors this process may run on (its affinity mask).
int default_threads();

// Runs body(t) for t in [0, threads), the caller running t = 0, others on the pool's
// workers (started as needed, kept for the next call). While another caller's job is
// running (two handles on two threads), this one runs every t itself, in order: a job's
// result never depends on which thread runs which t. body must not throw.
void run_on_threads(int threads, const std::function<void(int)>& body);

// The index of the calling thread within the current job: 0 outside one.
int current_thread();

}  // namespace bnorm::cpu
