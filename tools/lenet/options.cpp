// Command-line parsing for bnorm-lenet (see options.hpp).
#include "options.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace lenet {

namespace {

// Whole-string integer in [lo, hi]: "12abc", "", and out-of-range values are errors.
bool parse_int(const char* s, int64_t lo, int64_t hi, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_real(const char* s, double lo, double hi, double* out) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (errno || end == s || *end || !std::isfinite(v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

}  // namespace

std::string usage(const char* program) {
  return std::string("usage: ") + program + R"( [options]
Trains BN-LeNet on Fashion-MNIST with bnorm's batch norm and prints one line per epoch.
  --epochs N            epochs (default 10)
  --batch N             mini-batch size, >= 2 (default 128)
  --lr X                SGD learning rate (default 0.1; BN-LeNet tolerates 0.1 to 1.0)
  --seed N              seed of the weights and the shuffling (default 42)
  --no-bn               the same network without batch norm (biases instead)
  --precise-bn N        before each evaluation, set BN's running statistics to the
                        average over N training batches under the current weights
                        (default 0: evaluate with the training EMA, momentum 0.1)
  --train-limit N       train on the first N training images only
  --test-limit N        test on the first N test images only
  --csv FILE            write one row per epoch to FILE
  --dump-activations DIR
                        after training, write the first BN layer's input and output
                        for the first test batch (evaluation mode) to DIR as raw
                        float32, with bn1.json describing them
  --device D            cpu, cuda, or auto: the GPU when one is usable (default auto)
  --data DIR            the IDX gzip files (default )" BNORM_LENET_DEFAULT_DATA R"()
  --require-test-acc A  exit with status 3 if the final test accuracy is below A
  --fold                after training, fold every batch norm into the convolution or
                        linear layer before it (bnorm_fold_into_weights), evaluate that
                        network too and report both test accuracies; exit with status 4
                        if they differ by more than one test image
  --help                this text
)";
}

std::string parse_options(int argc, const char* const* argv, Options* out) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      out->help = true;
      continue;
    }
    if (arg == "--no-bn") {
      out->batch_norm = false;
      continue;
    }
    if (arg == "--fold") {
      out->fold = true;
      continue;
    }
    static const char* const kWithValue[] = {
        "--epochs", "--batch",      "--lr",     "--seed", "--train-limit",     "--test-limit",
        "--csv",    "--precise-bn", "--device", "--data", "--require-test-acc",
        "--dump-activations"};
    bool known = false;
    for (const char* name : kWithValue) known = known || arg == name;
    if (!known) return "unknown option " + arg + " (see --help)";
    if (i + 1 >= argc) return arg + " needs a value (see --help)";
    const char* v = argv[++i];
    const std::string bad = "invalid value '" + std::string(v) + "' for " + arg;
    int64_t n = 0;
    double x = 0.0;
    if (arg == "--epochs") {
      if (!parse_int(v, 1, 100000, &n)) return bad + ": expected an integer >= 1";
      out->epochs = static_cast<int>(n);
    } else if (arg == "--batch") {
      // Batch norm needs two values per channel; a linear BN sees one per example.
      if (!parse_int(v, 2, 1 << 16, &n)) return bad + ": expected an integer in [2, 65536]";
      out->batch = n;
    } else if (arg == "--lr") {
      if (!parse_real(v, 0.0, 1e6, &x) || x <= 0.0) return bad + ": expected a number > 0";
      out->lr = static_cast<float>(x);
    } else if (arg == "--seed") {
      if (!parse_int(v, 0, std::numeric_limits<uint32_t>::max(), &n))
        return bad + ": expected an integer in [0, 2^32)";
      out->seed = static_cast<uint32_t>(n);
    } else if (arg == "--train-limit" || arg == "--test-limit") {
      if (!parse_int(v, 1, std::numeric_limits<int32_t>::max(), &n))
        return bad + ": expected an integer >= 1";
      (arg == "--train-limit" ? out->train_limit : out->test_limit) = n;
    } else if (arg == "--precise-bn") {
      if (!parse_int(v, 0, 1 << 20, &n)) return bad + ": expected an integer >= 0";
      out->precise_bn = n;
    } else if (arg == "--csv") {
      out->csv = v;
    } else if (arg == "--dump-activations") {
      if (!*v) return bad + ": expected a directory";
      out->dump_activations = v;
    } else if (arg == "--device") {
      const std::string d = v;
      if (d == "auto")
        out->device = DeviceChoice::automatic;
      else if (d == "cpu")
        out->device = DeviceChoice::cpu;
      else if (d == "cuda" || d == "gpu")
        out->device = DeviceChoice::cuda;
      else
        return bad + ": expected cpu, cuda or auto";
    } else if (arg == "--data") {
      out->data_dir = v;
    } else if (arg == "--require-test-acc") {
      if (!parse_real(v, 0.0, 1.0, &x)) return bad + ": expected a number in [0, 1]";
      out->require_test_acc = x;
    }
  }
  if (!out->dump_activations.empty() && !out->batch_norm)
    return "--dump-activations needs batch norm (it cannot go with --no-bn)";
  return "";
}

}  // namespace lenet
