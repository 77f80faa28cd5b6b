// bnorm-lenet: trains BN-LeNet on Fashion-MNIST, batch norm through bnorm's C API.
//
// Loads both splits, moves them to the backend once (on the GPU the epoch loop never
// touches host memory apart from the shuffled order), then per epoch: shuffle, train
// on full mini-batches, re-estimate BN's running statistics (precise BN, see
// LeNet::recalibrate), evaluate the test split with them, print a line. After the last
// epoch, optionally dump the first BN layer's activations on a test batch, and with
// --fold fold the trained network's batch norms into the layers before them and
// evaluate the folded network too.
// Exit status: 0 success, 1 error (data, device), 2 bad usage, 3 below --require-test-acc,
// 4 --fold changed the test accuracy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "activation_dump.hpp"
#include "backend.hpp"
#include "dataset.hpp"
#include "lenet.hpp"
#include "options.hpp"
#include "rng.hpp"

namespace lenet {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::unique_ptr<Backend> choose_backend(DeviceChoice choice) {
  if (choice == DeviceChoice::cpu) return make_cpu_backend();
  std::string why_not;
  std::unique_ptr<Backend> be = make_cuda_backend(&why_not);
  if (be) return be;
  if (choice == DeviceChoice::cuda) throw std::runtime_error("--device cuda: " + why_not);
  std::fprintf(stderr, "note: no usable GPU (%s); running on the CPU\n", why_not.c_str());
  return make_cpu_backend();
}

// A split in the backend's memory.
struct DeviceSplit {
  DeviceSplit(Backend& be, const Split& s)
      : count(s.count), images(be, s.count * kPixels), labels(be, s.count) {
    images.upload(s.images);
    labels.upload(s.labels);
  }
  int64_t count;
  Array<float> images;
  Array<int32_t> labels;
};

struct EpochResult {
  double loss, train_acc, test_acc, images_per_s, seconds;
};

class Csv {
 public:
  explicit Csv(const std::string& path) {
    if (path.empty()) return;
    f_ = std::fopen(path.c_str(), "w");
    if (!f_) throw std::runtime_error(path + ": cannot open for writing");
    std::fprintf(f_, "epoch,loss,train_acc,test_acc,images_per_s,seconds\n");
  }
  ~Csv() {
    if (f_) std::fclose(f_);
  }
  void row(int epoch, const EpochResult& r) {
    if (!f_) return;
    std::fprintf(f_, "%d,%.6f,%.6f,%.6f,%.1f,%.3f\n", epoch, r.loss, r.train_acc, r.test_acc,
                 r.images_per_s, r.seconds);
    if (std::fflush(f_) != 0) throw std::runtime_error("CSV write failed");
  }

 private:
  std::FILE* f_ = nullptr;
};

void print_first(const char* what, const std::vector<float>& params, int64_t offset, int64_t n) {
  std::printf("bn1 %s[0:%lld]:", what, static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) std::printf(" %.4f", params[offset + i]);
  std::printf("\n");
}

int run(const Options& opt) {
  Split train, test;
  for (auto [split, prefix, limit] :
       {std::tuple{&train, "train", opt.train_limit}, std::tuple{&test, "t10k", opt.test_limit}}) {
    const std::string err = load_split(opt.data_dir, prefix, limit, split);
    if (!err.empty()) {
      std::fprintf(stderr, "error: %s\n", err.c_str());
      return 1;
    }
  }

  if (train.count < opt.batch) {
    std::fprintf(stderr, "error: %lld training images make no full batch of %lld\n",
                 static_cast<long long>(train.count), static_cast<long long>(opt.batch));
    return 2;
  }

  const std::unique_ptr<Backend> be = choose_backend(opt.device);
  std::printf(
      "bnorm-lenet: %s | bn=%s precise_bn=%lld epochs=%d batch=%lld lr=%g seed=%u "
      "train=%lld test=%lld\n",
      be->description().c_str(), opt.batch_norm ? "on" : "off",
      static_cast<long long>(opt.batch_norm ? opt.precise_bn : 0), opt.epochs,
      static_cast<long long>(opt.batch), static_cast<double>(opt.lr), opt.seed,
      static_cast<long long>(train.count), static_cast<long long>(test.count));

  const DeviceSplit train_d(*be, train), test_d(*be, test);
  Array<int32_t> order_d(*be, train.count);
  Array<float> batch_x(*be, opt.batch * kPixels);
  Array<int32_t> batch_y(*be, opt.batch);
  LeNet net(*be, LeNetConfig{opt.batch_norm, opt.batch, opt.seed});
  Csv csv(opt.csv);

  // The shuffle has its own engine, seeded apart from the weights' one.
  std::mt19937 shuffle_rng(opt.seed ^ 0x5bd1e995u);
  std::vector<int32_t> order(static_cast<size_t>(train.count));
  std::iota(order.begin(), order.end(), 0);

  // Full batches only (PyTorch's drop_last=True). A short last batch takes a step as
  // long as the others from a noisier gradient and noisier batch statistics, right
  // before the evaluation: on 10000 images (a last batch of 16) at lr 1.0, the model
  // after that step classified 54% of training images right where the epoch had run at
  // 75%; without the step, 79%. And a batch of one has no variance at all.
  const int64_t batches = train.count / opt.batch;
  const int64_t trained = batches * opt.batch;
  auto gather_batch = [&](int64_t b) {  // the b-th batch of this epoch's order
    be->gather_rows(opt.batch, kPixels, order_d.data() + b * opt.batch, train_d.images.data(),
                    train_d.labels.data(), batch_x.data(), batch_y.data());
  };

  const Clock::time_point start = Clock::now();
  EpochResult r{};
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    const Clock::time_point t0 = Clock::now();
    shuffle(order, shuffle_rng);
    order_d.upload(order);
    net.reset_totals();
    for (int64_t b = 0; b < batches; ++b) {
      gather_batch(b);
      net.train_step(batch_x.data(), batch_y.data(), opt.batch, opt.lr);
    }
    const Totals tr = net.totals();  // waits for the GPU: the training time is complete
    const double train_seconds = seconds_since(t0);

    if (opt.batch_norm && opt.precise_bn > 0) {
      // The first batches of this epoch's order: a fixed-size random sample.
      net.begin_recalibration();
      for (int64_t b = 0; b < std::min(opt.precise_bn, batches); ++b) {
        gather_batch(b);
        net.recalibrate(batch_x.data(), opt.batch);
      }
    }

    net.reset_totals();
    for (int64_t b = 0; b < test.count; b += opt.batch) {
      const int64_t n = std::min(opt.batch, test.count - b);
      net.evaluate(test_d.images.data() + b * kPixels, test_d.labels.data() + b, n);
    }
    const Totals te = net.totals();

    r = {tr.loss_sum / trained, tr.correct / trained, te.correct / test.count,
         static_cast<double>(trained) / train_seconds, seconds_since(t0)};
    std::printf("epoch %2d/%d  loss %.4f  train_acc %.4f  test_acc %.4f  img/s %8.0f  sec %7.2f\n",
                epoch, opt.epochs, r.loss, r.train_acc, r.test_acc, r.images_per_s, r.seconds);
    std::fflush(stdout);
    csv.row(epoch, r);
  }
  const double total_seconds = seconds_since(start);

  if (!opt.dump_activations.empty()) {
    const int64_t n = std::min(opt.batch, test.count);
    const BnSnapshot snap = net.first_bn_snapshot(test_d.images.data(), n);
    write_bn_snapshot(opt.dump_activations, "bn1", snap);
    std::printf("activations: %s input and output of %lld test images in %s/bn1*\n",
                snap.layer.c_str(), static_cast<long long>(n), opt.dump_activations.c_str());
  }

  if (const BatchNorm* bn = net.first_batch_norm()) {
    const std::vector<float> params = net.params().values().download();
    const int64_t shown = std::min<int64_t>(5, bn->in_dims().c);
    print_first("gamma", params, bn->gamma_offset(), shown);
    print_first("beta", params, bn->beta_offset(), shown);
  } else {
    std::printf("bn1: none (--no-bn)\n");
  }
  std::printf("final: test_acc=%.4f loss=%.4f seconds=%.1f device=%s\n", r.test_acc, r.loss,
              total_seconds, device_name(be->device()));

  if (opt.fold && opt.batch_norm) {
    // The inference network: no batch norm, its convolutions and linears with biases.
    LeNet folded(*be, LeNetConfig{false, opt.batch, opt.seed});
    net.fold_into(folded);
    folded.reset_totals();
    for (int64_t b = 0; b < test.count; b += opt.batch) {
      const int64_t n = std::min(opt.batch, test.count - b);
      folded.evaluate(test_d.images.data() + b * kPixels, test_d.labels.data() + b, n);
    }
    const Totals tf = folded.totals();
    const double folded_acc = tf.correct / test.count;
    // Folding changes only the rounding: at most an example sitting on a decision
    // boundary could change its class.
    const bool same = std::abs(folded_acc - r.test_acc) * test.count <= 1.0 + 1e-9;
    std::printf("fold: test_acc=%.4f with batch norm folded into the layers before it, %.4f unfolded: %s\n",
                folded_acc, r.test_acc, same ? "same" : "CHANGED");
    if (!same) {
      std::fprintf(stderr, "error: folding changed the test accuracy from %.4f to %.4f\n", r.test_acc, folded_acc);
      return 4;
    }
  } else if (opt.fold) {
    std::printf("fold: nothing to fold (--no-bn)\n");
  }

  if (opt.require_test_acc >= 0.0 && !(r.test_acc >= opt.require_test_acc)) {
    std::fprintf(stderr, "error: test accuracy %.4f is below the required %.4f\n", r.test_acc,
                 opt.require_test_acc);
    return 3;
  }
  return 0;
}

}  // namespace
}  // namespace lenet

int main(int argc, char** argv) {
  lenet::Options opt;
  const std::string err = lenet::parse_options(argc, argv, &opt);
  if (!err.empty()) {
    std::fprintf(stderr, "error: %s\n", err.c_str());
    return 2;
  }
  if (opt.help) {
    std::fputs(lenet::usage(argv[0]).c_str(), stdout);
    return 0;
  }
  try {
    return lenet::run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
