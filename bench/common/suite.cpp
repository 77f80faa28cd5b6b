// See suite.hpp.
#include "suite.hpp"

#include "dispatch.hpp"  // the op names the library uses

#include <cstdlib>
#include <sstream>

namespace bnorm_bench {

const char* dtype_name(bnorm_dtype_t t) {
  switch (t) {
    case BNORM_DTYPE_F32: return "f32";
    case BNORM_DTYPE_F16: return "f16";
    case BNORM_DTYPE_BF16: return "bf16";
  }
  return "?";
}

const char* layout_name(bnorm_layout_t l) { return l == BNORM_LAYOUT_NHWC ? "nhwc" : "nchw"; }

std::string Shape::name() const {
  std::ostringstream s;
  s << n << 'x' << c << 'x' << h << 'x' << w;
  if (dtype != BNORM_DTYPE_F32) s << '_' << dtype_name(dtype);
  if (layout != BNORM_LAYOUT_NCHW) s << '_' << layout_name(layout);
  if (fused) s << "_add_relu";
  return s.str();
}

bool Shape::same(const Shape& o) const {
  return n == o.n && c == o.c && h == o.h && w == o.w && dtype == o.dtype && layout == o.layout &&
         fused == o.fused;
}

const std::vector<Shape>& suite() {
  static const std::vector<Shape> shapes = [] {
    std::vector<Shape> v;
    // (C, H) of ResNet-50's batch norms, H = W.
    const int64_t resnet[9][2] = {{64, 112}, {64, 56}, {256, 56}, {128, 28}, {512, 28},
                                  {256, 14}, {1024, 14}, {512, 7}, {2048, 7}};
    auto resnet50 = [&](std::initializer_list<int64_t> batches, const char* group, bnorm_dtype_t t,
                        bnorm_layout_t l, bool fused) {
      for (int64_t n : batches)
        for (const auto& ch : resnet) v.push_back(Shape{n, ch[0], ch[1], ch[1], group, t, l, fused});
    };
    // The F32 NCHW suite first, in its original order: its rows and names are unchanged.
    resnet50({32, 256}, "resnet50", BNORM_DTYPE_F32, BNORM_LAYOUT_NCHW, false);
    v.push_back(Shape{128, 6, 24, 24, "lenet"});
    v.push_back(Shape{128, 16, 8, 8, "lenet"});
    v.push_back(Shape{128, 120, 1, 1, "lenet"});
    v.push_back(Shape{128, 84, 1, 1, "lenet"});
    v.push_back(Shape{3, 5, 7, 9, "odd"});
    v.push_back(Shape{2, 1, 1, 1, "odd"});  // M = 2: the fewest values training accepts
    v.push_back(Shape{65536, 3, 1, 1, "odd"});
    v.push_back(Shape{2, 4096, 1, 1, "odd"});
    // Half precision (fp32 statistics), channels-last, and the fused residual block.
    resnet50({32, 256}, "resnet50-f16", BNORM_DTYPE_F16, BNORM_LAYOUT_NCHW, false);
    resnet50({32, 256}, "resnet50-bf16", BNORM_DTYPE_BF16, BNORM_LAYOUT_NCHW, false);
    resnet50({32, 256}, "resnet50-nhwc", BNORM_DTYPE_F32, BNORM_LAYOUT_NHWC, false);
    resnet50({32}, "resnet50-nhwc-f16", BNORM_DTYPE_F16, BNORM_LAYOUT_NHWC, false);
    resnet50({32}, "resnet50-fused", BNORM_DTYPE_F32, BNORM_LAYOUT_NCHW, true);
    return v;
  }();
  return shapes;
}

std::vector<std::string> suite_groups() {
  std::vector<std::string> out;
  for (const Shape& s : suite()) {
    bool seen = false;
    for (const std::string& g : out) seen = seen || g == s.group;
    if (!seen) out.push_back(s.group);
  }
  return out;
}

bool parse_shape(const std::string& s, Shape* out) {
  std::string dims_part = s, rest;
  if (const size_t u = s.find('_'); u != std::string::npos) {
    dims_part = s.substr(0, u);
    rest = s.substr(u);  // "_f16_nhwc"
  }
  std::vector<int64_t> dims;
  std::istringstream in(dims_part);
  std::string tok;
  while (std::getline(in, tok, 'x')) {
    char* end = nullptr;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v <= 0) return false;
    dims.push_back(v);
  }
  if (dims.size() != 2 && dims.size() != 4) return false;
  Shape sh{dims[0], dims[1], dims.size() == 4 ? dims[2] : 1, dims.size() == 4 ? dims[3] : 1, "user"};
  // The suffixes, in name()'s order, each at most once.
  auto take = [&](const char* suffix) {
    const std::string f = suffix;
    if (rest.compare(0, f.size(), f) != 0) return false;
    if (rest.size() > f.size() && rest[f.size()] != '_') return false;
    rest = rest.substr(f.size());
    return true;
  };
  if (take("_f16"))
    sh.dtype = BNORM_DTYPE_F16;
  else if (take("_bf16"))
    sh.dtype = BNORM_DTYPE_BF16;
  if (take("_nhwc")) sh.layout = BNORM_LAYOUT_NHWC;
  if (take("_add_relu")) sh.fused = true;
  if (!rest.empty()) return false;
  *out = sh;
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
    // A suite shape keeps its group, so launch-bound timing and --groups apply to it too.
    for (const Shape& k : suite())
      if (k.same(sh)) sh.group = k.group;
    out->push_back(sh);
  }
  return !out->empty();
}

bool parse_groups(const std::string& s, std::vector<std::string>* out, std::string* bad) {
  out->clear();
  const std::vector<std::string> known = suite_groups();
  if (s == "all") {
    *out = known;
    return true;
  }
  std::istringstream in(s);
  std::string tok;
  while (std::getline(in, tok, ',')) {
    bool ok = false;
    for (const std::string& g : known) ok = ok || g == tok;
    if (!ok) {
      *bad = tok;
      return false;
    }
    out->push_back(tok);
  }
  if (out->empty()) *bad = s;
  return !out->empty();
}

std::vector<Shape> filter_groups(const std::vector<Shape>& shapes, const std::vector<std::string>& groups) {
  if (groups.empty()) return shapes;
  std::vector<Shape> out;
  for (const Shape& s : shapes)
    for (const std::string& g : groups)
      if (s.group == g) {
        out.push_back(s);
        break;
      }
  return out;
}

const char* op_name(bnorm_op_t op) { return bnorm::op_name(op); }

bool parse_op(const std::string& s, bnorm_op_t* op) {
  for (int o = BNORM_OP_FORWARD_TRAINING; o <= BNORM_OP_SYNC_BACKWARD; ++o)
    if (s == op_name(static_cast<bnorm_op_t>(o))) {
      *op = static_cast<bnorm_op_t>(o);
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
  if (op == BNORM_OP_FORWARD_INFERENCE) return !s.fused;
  return s.per_channel() >= 2;
}

double bytes_moved(bnorm_op_t op, const Shape& s) {
  const double S = static_cast<double>(s.bytes());
  if (s.fused) return S * (op == BNORM_OP_BACKWARD ? 5.0 : 3.0);
  return S * (op == BNORM_OP_BACKWARD ? 3.0 : 2.0);
}

bool launch_bound(const Shape& s) {
  return s.group == "lenet" || s.group == "odd" || s.bytes() < (size_t{4} << 20);
}

std::string suite_json(const std::vector<Shape>& shapes) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    o << (i ? "," : "") << "\n  {\"n\": " << s.n << ", \"c\": " << s.c << ", \"h\": " << s.h
      << ", \"w\": " << s.w << ", \"group\": \"" << s.group << "\", \"dtype\": \"" << dtype_name(s.dtype)
      << "\", \"layout\": \"" << layout_name(s.layout) << "\", \"fused\": " << (s.fused ? "true" : "false")
      << ", \"name\": \"" << s.name() << "\"}";
  }
  o << "\n]\n";
  return o.str();
}

}  // namespace bnorm_bench
