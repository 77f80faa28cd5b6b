// --dump-activations: a BnSnapshot (lenet.hpp) on disk, for tools/experiments.
//
// In DIR, for the first BN layer ("bn1"):
//   bn1_input.f32, bn1_output.f32  raw float32 in the host's byte order (little-endian on
//                                  x86-64 and arm64), NCHW, n*c*h*w values each
//   bn1.json                       the shape, the file names, eps, and per channel gamma,
//                                  beta, running_mean and running_var
// In evaluation mode the output is, per channel,
//   (input - running_mean) / sqrt(running_var + eps) * gamma + beta.
#pragma once

#include <string>

#include "lenet.hpp"

namespace lenet {

// Creates dir if needed; throws std::runtime_error when a file cannot be written.
void write_bn_snapshot(const std::string& dir, const std::string& stem, const BnSnapshot& s);

}  // namespace lenet
