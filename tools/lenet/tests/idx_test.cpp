// The IDX reader and the split checks on malformed input: every bad file is an error
// message, never a crash, an exception, or a huge allocation.
#include "idx.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dataset.hpp"

namespace lenet {
namespace {

std::vector<uint8_t> idx_bytes(std::vector<uint32_t> dims, size_t values, uint8_t type = 0x08) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  for (size_t i = 0; i < values; ++i) b.push_back(static_cast<uint8_t>(i % 251));
  return b;
}

std::string parse(const std::vector<uint8_t>& b, IdxArray* out = nullptr) {
  IdxArray tmp;
  return parse_idx(b.data(), b.size(), out ? out : &tmp);
}

TEST(Idx, ParsesAWellFormedFile) {
  IdxArray a;
  ASSERT_EQ(parse(idx_bytes({2, 3, 4}, 24), &a), "");
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3, 4}));
  ASSERT_EQ(a.values.size(), 24u);
  EXPECT_EQ(a.values[23], 23);
}

TEST(Idx, RejectsBadMagic) {
  std::vector<uint8_t> b = idx_bytes({3}, 3);
  b[0] = 0x1f;  // a gzip stream passed as IDX starts 0x1f 0x8b
  b[1] = 0x8b;
  EXPECT_NE(parse(b).find("bad magic"), std::string::npos) << parse(b);
  EXPECT_NE(parse(idx_bytes({3}, 3, 0x0D)).find("element type 0x0d"), std::string::npos);
  EXPECT_NE(parse(idx_bytes({}, 0)).find("dimensions"), std::string::npos);
  EXPECT_NE(parse(idx_bytes({1, 1, 1, 1, 1}, 1)).find("dimensions"), std::string::npos);
}

TEST(Idx, RejectsEveryTruncation) {
  const std::vector<uint8_t> full = idx_bytes({4, 5}, 20);
  for (size_t len = 0; len < full.size(); ++len) {
    const std::vector<uint8_t> cut(full.begin(), full.begin() + len);
    EXPECT_NE(parse(cut).find("truncated"), std::string::npos)
        << "length " << len << ": " << parse(cut);
  }
}

TEST(Idx, RejectsTrailingBytes) {
  std::vector<uint8_t> b = idx_bytes({4}, 4);
  b.push_back(0);
  EXPECT_NE(parse(b).find("not an IDX file"), std::string::npos) << parse(b);
}

TEST(Idx, HugeDimensionsDoNotAllocate) {
  // 2^128 values claimed by a 20-byte file: the size check comes before any allocation.
  EXPECT_NE(
      parse(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 4)).find("truncated"),
      std::string::npos);
}

TEST(Idx, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<uint8_t> b(rng() % 64);
    for (auto& v : b) v = static_cast<uint8_t>(rng());
    if (b.size() >= 2 && trial % 2) b[0] = b[1] = 0;  // get past the magic half the time
    if (b.size() >= 3 && trial % 4 == 1) b[2] = 0x08;
    IdxArray a;
    const std::string err = parse_idx(b.data(), b.size(), &a);
    if (err.empty()) {  // then it really is consistent
      size_t count = 1;
      for (int64_t d : a.dims) count *= static_cast<size_t>(d);
      EXPECT_EQ(count, a.values.size());
    }
  }
}

IdxArray array(std::vector<int64_t> dims, uint8_t fill = 0) {
  IdxArray a;
  size_t count = 1;
  for (int64_t d : dims) count *= static_cast<size_t>(d);
  a.dims = dims;
  a.values.assign(count, fill);
  return a;
}

TEST(Split, RejectsCountMismatch) {
  Split s;
  const std::string err = make_split(array({3, 28, 28}), array({4}), 0, &s);
  EXPECT_NE(err.find("count mismatch: 3 images but 4 labels"), std::string::npos) << err;
}

TEST(Split, RejectsWrongImageDimensions) {
  Split s;
  EXPECT_NE(make_split(array({3, 27, 28}), array({3}), 0, &s).find("expected N x 28 x 28"),
            std::string::npos);
  EXPECT_NE(make_split(array({3, 784}), array({3}), 0, &s).find("expected N x 28 x 28"),
            std::string::npos);
  EXPECT_NE(make_split(array({3, 28, 28}), array({3, 1}), 0, &s).find("expected 1"),
            std::string::npos);
}

TEST(Split, RejectsOutOfRangeLabels) {
  Split s;
  IdxArray labels = array({3});
  labels.values[2] = 10;
  EXPECT_NE(make_split(array({3, 28, 28}), labels, 0, &s).find("label 10 at index 2"),
            std::string::npos);
}

TEST(Split, NormalizesAndLimits) {
  Split s;
  IdxArray images = array({3, 28, 28}, 255);
  images.values[0] = 0;
  IdxArray labels = array({3}, 9);
  ASSERT_EQ(make_split(images, labels, 2, &s), "");
  EXPECT_EQ(s.count, 2);
  EXPECT_EQ(s.images.size(), 2u * 784u);
  EXPECT_FLOAT_EQ(s.images[0], -1.0f);  // (0/255 - 0.5) / 0.5
  EXPECT_FLOAT_EQ(s.images[1], 1.0f);
  EXPECT_EQ(s.labels, (std::vector<int32_t>{9, 9}));
}

// A gzip file written with zlib, then read back (whole, and cut short).
class GzipFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "lenet_idx_test_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".gz";
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void write(const std::vector<uint8_t>& data) {
    gzFile f = gzopen(path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, data.data(), static_cast<unsigned>(data.size())),
              static_cast<int>(data.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  }
  void truncate_to(size_t bytes) {
    std::FILE* f = std::fopen(path_.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    std::vector<char> buf(bytes);
    ASSERT_EQ(std::fread(buf.data(), 1, bytes, f), bytes);
    std::fclose(f);
    f = std::fopen(path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(buf.data(), 1, bytes, f);
    std::fclose(f);
  }
  std::string path_;
};

TEST_F(GzipFile, RoundTrips) {
  const std::vector<uint8_t> data = idx_bytes({10, 28, 28}, 7840);
  write(data);
  std::vector<uint8_t> back;
  ASSERT_EQ(read_gzip_file(path_, &back), "");
  EXPECT_EQ(back, data);
}

TEST_F(GzipFile, TruncatedStreamIsAnError) {
  std::vector<uint8_t> data(200000);
  std::mt19937 rng(3);
  for (auto& v : data) v = static_cast<uint8_t>(rng());  // incompressible: a long stream
  write(data);
  truncate_to(1000);
  std::vector<uint8_t> back;
  const std::string err = read_gzip_file(path_, &back);
  EXPECT_NE(err.find(path_), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST_F(GzipFile, SizeLimitHolds) {
  write(std::vector<uint8_t>(3u << 20, 0));
  std::vector<uint8_t> back;
  EXPECT_NE(read_gzip_file(path_, &back, 1u << 20).find("more than"), std::string::npos);
}

TEST(Gzip, MissingFileIsAnError) {
  std::vector<uint8_t> back;
  const std::string err = read_gzip_file("/nonexistent/lenet/file.gz", &back);
  EXPECT_NE(err.find("/nonexistent/lenet/file.gz: cannot open"), std::string::npos) << err;
}

TEST(Split, LoadSplitNamesTheFile) {
  Split s;
  const std::string err = load_split("/nonexistent", "train", 0, &s);
  EXPECT_NE(err.find("/nonexistent/train-images-idx3-ubyte.gz"), std::string::npos) << err;
}

}  // namespace
}  // namespace lenet
