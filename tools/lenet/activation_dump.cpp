// Writes a BnSnapshot as raw float32 plus a JSON description (see activation_dump.hpp).
#include "activation_dump.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <vector>

namespace lenet {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

File open_for_writing(const std::string& path, const char* mode) {
  File f(std::fopen(path.c_str(), mode));
  if (!f) throw std::runtime_error(path + ": cannot open for writing");
  return f;
}

void close_checked(File f, const std::string& path) {
  if (std::fclose(f.release()) != 0) throw std::runtime_error(path + ": write failed");
}

void write_floats(const std::string& path, const std::vector<float>& v) {
  File f = open_for_writing(path, "wb");
  if (std::fwrite(v.data(), sizeof(float), v.size(), f.get()) != v.size())
    throw std::runtime_error(path + ": write failed");
  close_checked(std::move(f), path);
}

// A JSON array of floats; %.9g round-trips float32.
void print_array(std::FILE* f, const char* name, const std::vector<float>& v, bool last = false) {
  std::fprintf(f, "  \"%s\": [", name);
  for (size_t i = 0; i < v.size(); ++i)
    std::fprintf(f, "%s%.9g", i ? ", " : "", static_cast<double>(v[i]));
  std::fprintf(f, "]%s\n", last ? "" : ",");
}

}  // namespace

void write_bn_snapshot(const std::string& dir, const std::string& stem, const BnSnapshot& s) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error(dir + ": cannot create directory: " + ec.message());
  const std::string input = stem + "_input.f32", output = stem + "_output.f32";
  write_floats(dir + "/" + input, s.input);
  write_floats(dir + "/" + output, s.output);

  const std::string json = dir + "/" + stem + ".json";
  File f = open_for_writing(json, "w");
  std::fprintf(f.get(),
               "{\n  \"layer\": \"%s\",\n  \"n\": %lld, \"c\": %lld, \"h\": %lld, \"w\": %lld,\n"
               "  \"layout\": \"NCHW\", \"dtype\": \"float32\",\n"
               "  \"input\": \"%s\", \"output\": \"%s\",\n  \"eps\": %.9g,\n",
               s.layer.c_str(), static_cast<long long>(s.n), static_cast<long long>(s.dims.c),
               static_cast<long long>(s.dims.h), static_cast<long long>(s.dims.w), input.c_str(),
               output.c_str(), static_cast<double>(s.eps));
  print_array(f.get(), "gamma", s.gamma);
  print_array(f.get(), "beta", s.beta);
  print_array(f.get(), "running_mean", s.running_mean);
  print_array(f.get(), "running_var", s.running_var, /*last=*/true);
  std::fprintf(f.get(), "}\n");
  close_checked(std::move(f), json);
}

}  // namespace lenet
