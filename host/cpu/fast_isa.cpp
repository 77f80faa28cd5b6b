// Which instruction set's loops the fast CPU path runs (fast_isa.hpp).
#include "fast_isa.hpp"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace bnorm::cpu::fast {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// F16C by CPUID (leaf 1, ECX): clang's __builtin_cpu_supports does not know the name.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

}  // namespace

bool isa_supported(Isa i) {
#if defined(__x86_64__) || defined(__i386__)
  switch (i) {
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && has_f16c();
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && has_f16c();
    case Isa::sse2:
      return true;
  }
  return false;
#else
  return i == Isa::sse2;
#endif
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::sse2: return "sse2";
  }
  return "?";
}

Isa active_isa() {
  static const Isa chosen = [] {
    const char* want = std::getenv("BNORM_CPU_ISA");
    for (Isa i : {Isa::avx512, Isa::avx2, Isa::sse2})
      if (want && std::strcmp(want, isa_name(i)) == 0 && isa_supported(i)) return i;
    for (Isa i : {Isa::avx512, Isa::avx2})
      if (isa_supported(i)) return i;
    return Isa::sse2;
  }();
  return chosen;
}

const Kernels& kernels(bnorm_dtype_t t, Isa i) {
  const int k = t == BNORM_DTYPE_F32 ? 0 : t == BNORM_DTYPE_F16 ? 1 : 2;
  switch (i) {
    case Isa::avx512: return avx512::tables()[k];
    case Isa::avx2: return avx2::tables()[k];
    case Isa::sse2: break;
  }
  return sse2::tables()[k];
}

}  // namespace bnorm::cpu::fast
