// Status plus message: how every layer below the API reports a failure. The API turns
// a failed Status into the thread-local last-error message and the returned code.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

#include "bnorm/bnorm.h"

namespace bnorm {

struct Status {
  bnorm_status_t code = BNORM_STATUS_SUCCESS;
  std::string message;
  bool ok() const { return code == BNORM_STATUS_SUCCESS; }
};

inline Status ok_status() { return Status{}; }

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
inline Status
make_status(bnorm_status_t code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return Status{code, buf};
}

// Records a failed s as the calling thread's last error (bnorm_last_error) and returns
// its code: for C entry points defined outside api.cpp. Defined in api.cpp.
bnorm_status_t report_status(const Status& s);

// Propagates a failed Status out of the enclosing function.
#define BNORM_TRY(expr)               \
  do {                                \
    ::bnorm::Status bnorm_s_ = (expr); \
    if (!bnorm_s_.ok()) return bnorm_s_; \
  } while (0)

}  // namespace bnorm
