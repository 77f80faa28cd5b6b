// The IDX file format of (Fashion-)MNIST, and reading the gzip files it ships in.
//
// parse_idx works on bytes already in memory and never trusts them: it is the entry
// point a fuzz target can call directly. Errors come back as messages, not exceptions,
// so callers decide how to report them (the harness prints and exits; tests compare).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lenet {

// An IDX array of unsigned bytes (type code 0x08, the only one (Fashion-)MNIST uses).
struct IdxArray {
  std::vector<int64_t> dims;    // outermost first, as in the file
  std::vector<uint8_t> values;  // row-major, product(dims) bytes
};

// Parses a whole IDX file. Format: two zero bytes, the element type (0x08), the number
// of dimensions, then each dimension as a big-endian uint32, then the values. The size
// must match the header exactly: a short file is truncated, a longer one is not IDX.
// Returns "" on success, else a message saying what is wrong; *out is then unspecified.
std::string parse_idx(const uint8_t* data, size_t size, IdxArray* out);

// Reads a gzip file whole (a plain file passes through zlib unchanged). A truncated or
// corrupt stream is an error. max_bytes bounds the decompressed size, so a hostile file
// cannot exhaust memory. Returns "" on success, else a message naming path.
std::string read_gzip_file(const std::string& path, std::vector<uint8_t>* out,
                           size_t max_bytes = size_t{1} << 30);

}  // namespace lenet
