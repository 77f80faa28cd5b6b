// IDX parsing and gzip reading (see idx.hpp).
#include "idx.hpp"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

namespace lenet {

namespace {

constexpr uint8_t kTypeUnsignedByte = 0x08;
// (Fashion-)MNIST uses 1 (labels) and 3 (images); a few more keep the parser general
// without letting a hostile header claim 255 dimensions.
constexpr int kMaxDims = 4;

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string format(const char* fmt, unsigned long long a, unsigned long long b = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

}  // namespace

std::string parse_idx(const uint8_t* data, size_t size, IdxArray* out) {
  if (data == nullptr && size != 0) return "no data";
  if (size < 4) return format("truncated: %llu bytes, shorter than the 4-byte IDX magic", size);
  if (data[0] != 0 || data[1] != 0)
    return format("bad magic: first bytes are 0x%02llx 0x%02llx, IDX files start with 0x00 0x00",
                  data[0], data[1]);
  if (data[2] != kTypeUnsignedByte)
    return format("element type 0x%02llx is not supported (only 0x08, unsigned byte)", data[2]);
  const int ndims = data[3];
  if (ndims < 1 || ndims > kMaxDims)
    return format("%llu dimensions; expected 1 to %llu", static_cast<unsigned long long>(ndims),
                  kMaxDims);
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (size < header)
    return format("truncated: %llu bytes, the header alone needs %llu", size, header);

  out->dims.assign(ndims, 0);
  // Each dimension is < 2^32 and there are at most 4, but their product can still pass
  // 2^64: check every step against the bytes actually present.
  uint64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    const uint64_t d = read_be32(data + 4 + 4 * i);
    out->dims[i] = static_cast<int64_t>(d);
    if (d != 0 && count > (size - header) / d) {
      count = std::numeric_limits<uint64_t>::max();
      break;
    }
    count *= d;
  }
  if (count != size - header) {
    if (count == std::numeric_limits<uint64_t>::max() || count > size - header)
      return format("truncated: the header promises more values than the %llu bytes after it",
                    size - header);
    return format("%llu bytes after the values the header describes (%llu): not an IDX file",
                  size - header - count, count);
  }
  out->values.assign(data + header, data + size);
  return "";
}

std::string read_gzip_file(const std::string& path, std::vector<uint8_t>* out, size_t max_bytes) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return path + ": cannot open (" + std::strerror(errno) + ")";
  out->clear();
  std::string err;
  constexpr unsigned kChunk = 1u << 20;
  for (;;) {
    const size_t old = out->size();
    if (old >= max_bytes) {
      err = path + ": more than " + std::to_string(max_bytes) + " bytes once decompressed";
      break;
    }
    out->resize(old + kChunk);
    const int got = gzread(f, out->data() + old, kChunk);
    if (got < 0) {
      int code = 0;
      err = path + ": " + gzerror(f, &code);
      break;
    }
    out->resize(old + static_cast<size_t>(got));
    if (got == 0) {
      // gzread reports a stream cut short as end of data; gzerror tells the difference.
      int code = 0;
      const char* msg = gzerror(f, &code);
      if (code != Z_OK) err = path + ": " + msg + " (truncated or corrupt gzip data)";
      break;
    }
  }
  const int close = gzclose(f);
  if (err.empty() && close != Z_OK)
    err = path + ": gzip stream is truncated or corrupt (gzclose: " + std::to_string(close) + ")";
  return err;
}

}  // namespace lenet
