// Command-line options of bnorm-lenet.
#pragma once

#include <cstdint>
#include <string>

namespace lenet {

enum class DeviceChoice { automatic, cpu, cuda };

struct Options {
  int epochs = 10;
  int64_t batch = 128;
  float lr = 1.0f;  // see README: 0.1 reaches 0.876 in ten epochs, 1.0 0.89
  uint32_t seed = 42;
  bool batch_norm = true;
  int64_t precise_bn = 50;  // batches; 0: evaluate with the training EMA
  int64_t train_limit = 0;  // 0: the whole split
  int64_t test_limit = 0;
  std::string csv;  // empty: no CSV
  DeviceChoice device = DeviceChoice::automatic;
  std::string data_dir = BNORM_LENET_DEFAULT_DATA;
  double require_test_acc = -1.0;  // < 0: no requirement
  bool help = false;
};

// Parses argv into *out. Returns "" on success, else a message for the user.
std::string parse_options(int argc, const char* const* argv, Options* out);

std::string usage(const char* program);

}  // namespace lenet
