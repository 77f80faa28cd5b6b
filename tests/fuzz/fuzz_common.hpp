// Helpers shared by the fuzz targets: a failure report that survives -close_fd_mask, and
// a scratch file for targets whose code under test reads a path.
#pragma once

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace bnorm_fuzz {

// Prints the broken property and aborts: libFuzzer saves the input as a crash. The
// message goes to stdout as well, which -close_fd_mask=2 leaves open.
[[noreturn]] inline void fail(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stdout, "fuzz property violated: %s\n", buf);
  std::fflush(stdout);
  std::fprintf(stderr, "fuzz property violated: %s\n", buf);
  std::abort();
}

#define FUZZ_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::bnorm_fuzz::fail(__VA_ARGS__); \
  } while (0)

// One file per process, rewritten for every input; removed at exit.
class ScratchFile {
 public:
  ScratchFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/bnorm-fuzz-XXXXXX";
    const int fd = mkstemp(path_.data());
    if (fd < 0) fail("cannot create a scratch file under %s", path_.c_str());
    close(fd);
  }
  ~ScratchFile() { unlink(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& write(const void* data, size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) fail("cannot open %s", path_.c_str());
    if (size && std::fwrite(data, 1, size, f) != size) fail("cannot write %s", path_.c_str());
    std::fclose(f);
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace bnorm_fuzz
