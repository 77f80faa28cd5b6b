// Command-line options of bnorm-lenet.
#pragma once

#include <cstdint>
#include <string>

namespace lenet {

enum class DeviceChoice { automatic, cpu, cuda };

struct Options {
  int epochs = 10;
  int64_t batch = 128;
  float lr = 0.1f;  // the seed's default; README: 1.0 trains faster with BN
  uint32_t seed = 42;
  bool batch_norm = true;
  int64_t precise_bn = 0;  // batches; 0: evaluate with the training EMA (the seed's way)
  int64_t train_limit = 0;  // 0: the whole split
  int64_t test_limit = 0;
  std::string csv;  // empty: no CSV
  std::string dump_activations;  // a directory; empty: no dump
  DeviceChoice device = DeviceChoice::automatic;
  std::string data_dir = BNORM_LENET_DEFAULT_DATA;
  double require_test_acc = -1.0;  // < 0: no requirement
  bool fold = false;  // also evaluate with batch norm folded into the layers before it
  bool help = false;
};

// Parses argv into *out. Returns "" on success, else a message for the user.
std::string parse_options(int argc, const char* const* argv, Options* out);

std::string usage(const char* program);

}  // namespace lenet
