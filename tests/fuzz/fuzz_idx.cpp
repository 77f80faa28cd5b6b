// libFuzzer target: the LeNet harness's IDX reader (tools/lenet/idx.hpp) on arbitrary
// bytes, both ways the harness meets them: parse_idx on the bytes themselves, and
// read_gzip_file on the bytes written to a file (gzip or plain) followed by parse_idx on
// what it decompressed.
//
// Properties, beyond ASan/UBSan finding nothing:
//   - a parse that succeeds describes the bytes exactly: magic 00 00 08, 1 to 4
//     dimensions as in the header, values = the bytes after the header, their count the
//     product of the dimensions (so no header can claim more than the file holds);
//   - a failure always has a message, and read_gzip_file's names the file;
//   - read_gzip_file never returns more than max_bytes (a gzip bomb is an error).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "idx.hpp"

namespace {

constexpr size_t kMaxDecompressed = size_t{1} << 20;

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void check_parse(const uint8_t* data, size_t size) {
  lenet::IdxArray a;
  const std::string err = lenet::parse_idx(data, size, &a);
  if (!err.empty()) return;
  FUZZ_CHECK(size >= 4 && data[0] == 0 && data[1] == 0 && data[2] == 0x08, "accepted a bad magic");
  const size_t ndims = data[3];
  FUZZ_CHECK(ndims >= 1 && ndims <= 4 && a.dims.size() == ndims, "accepted %zu dimensions", ndims);
  const size_t header = 4 + 4 * ndims;
  FUZZ_CHECK(size >= header, "accepted a truncated header");
  unsigned __int128 count = 1;
  for (size_t i = 0; i < ndims; ++i) {
    const uint32_t d = be32(data + 4 + 4 * i);
    FUZZ_CHECK(a.dims[i] == static_cast<int64_t>(d), "dimension %zu: %lld, the header says %u", i,
               static_cast<long long>(a.dims[i]), d);
    count *= d;
  }
  FUZZ_CHECK(count == size - header && a.values.size() == size - header,
             "%zu values after a %zu-byte header of %zu bytes", a.values.size(), header, size);
  FUZZ_CHECK(a.values.empty() || std::memcmp(a.values.data(), data + header, a.values.size()) == 0,
             "the values are not the file's bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bnorm_fuzz::ScratchFile file;
  check_parse(data, size);

  // The file path costs a file write and a 1 MiB zero-filled chunk per input: every
  // gzip stream takes it, and one plain input in eight (picked by its last byte).
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip && (size == 0 || data[size - 1] % 8 != 0)) return 0;
  file.write(data, size);
  std::vector<uint8_t> bytes;
  const std::string err = lenet::read_gzip_file(file.path(), &bytes, kMaxDecompressed);
  if (!err.empty()) {
    FUZZ_CHECK(err.find(file.path()) != std::string::npos, "the message does not name the file: %s", err.c_str());
    return 0;
  }
  FUZZ_CHECK(bytes.size() <= kMaxDecompressed, "read %zu bytes, more than the bound", bytes.size());
  check_parse(bytes.data(), bytes.size());
  return 0;
}
