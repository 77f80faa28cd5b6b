// See suite.hpp.
#include "suite.hpp"

#include <cstdlib>
#include <sstream>

namespace bnorm_bench {

std::string Shape::name() const {
  std::ostringstream s;
  s << n << 'x' << c << 'x' << h << 'x' << w;
  return s.str();
}

const std::vector<Shape>& suite() {
  static const std::vector<Shape> shapes = [] {
    std::vector<Shape> v;
    // (C, H) of ResNet-50's batch norms, H = W.
    const int64_t resnet[9][2] = {{64, 112}, {64, 56}, {256, 56}, {128, 28}, {512, 28},
                                  {256, 14}, {1024, 14}, {512, 7}, {2048, 7}};
    for (int64_t n : {32, 256})
      for (const auto& ch : resnet) v.push_back(Shape{n, ch[0], ch[1], ch[1], "resnet50"});
    v.push_back(Shape{128, 6, 24, 24, "lenet"});
    v.push_back(Shape{128, 16, 8, 8, "lenet"});
    v.push_back(Shape{128, 120, 1, 1, "lenet"});
    v.push_back(Shape{128, 84, 1, 1, "lenet"});
    v.push_back(Shape{3, 5, 7, 9, "odd"});
    v.push_back(Shape{2, 1, 1, 1, "odd"});  // M = 2: the fewest values training accepts
    v.push_back(Shape{65536, 3, 1, 1, "odd"});
    v.push_back(Shape{2, 4096, 1, 1, "odd"});
    return v;
  }();
  return shapes;
}

bool parse_shape(const std::string& s, Shape* out) {
  std::vector<int64_t> dims;
  std::istringstream in(s);
  std::string tok;
  while (std::getline(in, tok, 'x')) {
    char* end = nullptr;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v <= 0) return false;
    dims.push_back(v);
  }
  if (dims.size() != 2 && dims.size() != 4) return false;
  *out = Shape{dims[0], dims[1], dims.size() == 4 ? dims[2] : 1, dims.size() == 4 ? dims[3] : 1, "user"};
  return true;
}

bool parse_shapes(const std::string& s, std::vector<Shape>* out) {
  out->clear();
  if (s == "suite") {
    *out = suite();
    return true;
  }
  std::istringstream in(s);
  std::string tok;
  while (std::getline(in, tok, ',')) {
    Shape sh;
    if (!parse_shape(tok, &sh)) return false;
    // A suite shape keeps its group, so launch-bound timing applies to it too.
    for (const Shape& k : suite())
      if (k.n == sh.n && k.c == sh.c && k.h == sh.h && k.w == sh.w) sh.group = k.group;
    out->push_back(sh);
  }
  return !out->empty();
}

const char* op_name(bnorm_op_t op) {
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING: return "forward_training";
    case BNORM_OP_FORWARD_INFERENCE: return "forward_inference";
    case BNORM_OP_BACKWARD: return "backward";
  }
  return "?";
}

bool parse_op(const std::string& s, bnorm_op_t* op) {
  for (bnorm_op_t o : kOps)
    if (s == op_name(o)) {
      *op = o;
      return true;
    }
  return false;
}

bool parse_ops(const std::string& s, std::vector<bnorm_op_t>* out) {
  out->clear();
  if (s == "all") {
    out->assign(std::begin(kOps), std::end(kOps));
    return true;
  }
  std::istringstream in(s);
  std::string tok;
  while (std::getline(in, tok, ',')) {
    bnorm_op_t op;
    if (!parse_op(tok, &op)) return false;
    out->push_back(op);
  }
  return !out->empty();
}

bool op_applies(bnorm_op_t op, const Shape& s) {
  return op == BNORM_OP_FORWARD_INFERENCE || s.per_channel() >= 2;
}

double bytes_moved(bnorm_op_t op, const Shape& s) {
  return static_cast<double>(s.bytes()) * (op == BNORM_OP_BACKWARD ? 3.0 : 2.0);
}

bool launch_bound(const Shape& s) {
  return s.group == "lenet" || s.group == "odd" || s.bytes() < (size_t{4} << 20);
}

}  // namespace bnorm_bench
