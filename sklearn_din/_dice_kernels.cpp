// Dice's forward and backward as single passes over the activation (see _kernels.py).
//
// torch's own ops take four to six passes over memory for what is one chain of
// elementwise steps per value, and torch's sigmoid runs at about a third of the rate of
// a copy: on the attention's (positions x units) activations these passes are a third
// of a training step and of a serving request. Here each row is read once and written
// once, and the sigmoid is _vec_math.h's (a polynomial exponential and a refined
// hardware reciprocal).
//
// Built by _kernels.py for the CPU capability torch itself dispatches to; the same
// source compiles for AVX512, AVX2 and the scalar fallback of ATen's Vectorized. The
// column sums of the backward are taken per fixed chunk of rows and added in chunk
// order, so a model does not depend on the number of threads.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "_vec_math.h"

#include <tuple>
#include <vector>

namespace {

constexpr int64_t kChunkRows = 64;

void check_inputs(const at::Tensor& x, std::initializer_list<const at::Tensor*> channels) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "Dice kernels take contiguous float32 CPU tensors");
  const int64_t width = x.dim() == 0 ? 1 : x.size(-1);
  for (const at::Tensor* c : channels) {
    TORCH_CHECK(c->is_contiguous() && c->scalar_type() == at::kFloat && c->numel() == width,
                "Dice kernels take one float32 value per channel");
  }
}

// out = x (alpha + keep gate), gate = sigmoid(x scale + shift); gate returned if asked
// (the backward recomputes it when given none).
std::tuple<at::Tensor, at::Tensor> dice_forward(const at::Tensor& x, const at::Tensor& shift,
                                                const at::Tensor& scale,
                                                const at::Tensor& alpha,
                                                const at::Tensor& keep, bool save_gate) {
  check_inputs(x, {&shift, &scale, &alpha, &keep});
  at::Tensor out = at::empty_like(x);
  at::Tensor gate = save_gate ? at::empty_like(x) : at::empty({0}, x.options());
  const int64_t width = x.size(-1), rows = width == 0 ? 0 : x.numel() / width;
  const float *xp = x.data_ptr<float>(), *sh = shift.data_ptr<float>(),
              *sc = scale.data_ptr<float>(), *al = alpha.data_ptr<float>(),
              *kp = keep.data_ptr<float>();
  float *op = out.data_ptr<float>(), *gp = save_gate ? gate.data_ptr<float>() : nullptr;
  at::parallel_for(0, rows, kChunkRows, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = i * width;
      for (int64_t j = 0; j < width; j += Vec::size()) {
        const int count = static_cast<int>(std::min<int64_t>(Vec::size(), width - j));
        Vec xv = Vec::loadu(xp + row + j, count);
        Vec g = gate_of(xv, Vec::loadu(sc + j, count), Vec::loadu(sh + j, count));
        Vec y = dice_of(xv, g, Vec::loadu(al + j, count), Vec::loadu(kp + j, count));
        y.store(op + row + j, count);
        if (gp) g.store(gp + row + j, count);
      }
    }
  });
  return {out, gate};
}

// The gradients of x and alpha; the formulas are _DiceFunction's (see its docstring).
std::tuple<at::Tensor, at::Tensor> dice_backward(const at::Tensor& dout, const at::Tensor& x,
                                                 const at::Tensor& gate,
                                                 const at::Tensor& alpha,
                                                 const at::Tensor& keep,
                                                 const at::Tensor& scale,
                                                 const at::Tensor& shift, bool batch_stats) {
  check_inputs(x, {&alpha, &keep, &scale, &shift});
  // No gate (numel 0): recomputed from x, instead of read back from a saved tensor.
  const bool recompute = gate.numel() == 0;
  TORCH_CHECK(dout.sizes() == x.sizes() && (recompute || gate.sizes() == x.sizes()) &&
                  dout.is_contiguous() && gate.is_contiguous() &&
                  dout.scalar_type() == at::kFloat && gate.scalar_type() == at::kFloat,
              "Dice backward takes contiguous float32 dout and gate of the input's shape");
  const int64_t width = x.size(-1), rows = width == 0 ? 0 : x.numel() / width;
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  at::Tensor grad_x = at::empty_like(x);
  // Per chunk: sum dout x (1 - gate), and with batch statistics sum w and sum w x, where
  // w = dout x gate (1 - gate) = d xhat / keep.
  std::vector<float> partial(static_cast<size_t>(chunks * 3 * width), 0.0f);
  const float *dp = dout.data_ptr<float>(), *xp = x.data_ptr<float>(),
              *gp = gate.data_ptr<float>(), *al = alpha.data_ptr<float>(),
              *kp = keep.data_ptr<float>(), *sc = scale.data_ptr<float>(),
              *sh = shift.data_ptr<float>();
  float* gx = grad_x.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t chunk = first; chunk < last; ++chunk) {
      // Row after row (the hardware prefetcher follows rows, not strided columns); the
      // chunk's sums stay in L1 meanwhile.
      float* sums = partial.data() + chunk * 3 * width;
      const int64_t end = std::min(rows, (chunk + 1) * kChunkRows);
      for (int64_t i = chunk * kChunkRows; i < end; ++i) {
        for (int64_t j = 0; j < width; j += Vec::size()) {
          const int count = static_cast<int>(std::min<int64_t>(Vec::size(), width - j));
          const int64_t at_ = i * width + j;
          const Vec a = Vec::loadu(al + j, count), k = Vec::loadu(kp + j, count);
          const Vec d = Vec::loadu(dp + at_, count), xv = Vec::loadu(xp + at_, count);
          const Vec g = recompute
              ? gate_of(xv, Vec::loadu(sc + j, count), Vec::loadu(sh + j, count))
              : Vec::loadu(gp + at_, count);
          const Vec dx = d * xv, one_minus_g = Vec(1.0f) - g;
          at::vec::fmadd(dx, one_minus_g, Vec::loadu(sums + j, count)).store(sums + j, count);
          const Vec w = dx * g * one_minus_g;
          const Vec rk = Vec::loadu(sc + j, count) * k;
          at::vec::fmadd(rk, w, d * at::vec::fmadd(k, g, a)).store(gx + at_, count);
          if (batch_stats) {
            float* s_w = sums + width + j;
            float* s_wx = sums + 2 * width + j;
            (Vec::loadu(s_w, count) + w).store(s_w, count);
            at::vec::fmadd(w, xv, Vec::loadu(s_wx, count)).store(s_wx, count);
          }
        }
      }
    }
  });
  std::vector<double> total(static_cast<size_t>(3 * width), 0.0);
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const float* sums = partial.data() + chunk * 3 * width;
    for (int64_t j = 0; j < 3 * width; ++j) total[j] += sums[j];
  }
  at::Tensor grad_alpha = at::empty({width}, x.options());
  float* ga = grad_alpha.data_ptr<float>();
  for (int64_t j = 0; j < width; ++j) ga[j] = static_cast<float>(total[j]);
  if (batch_stats && rows > 0) {
    // mean_n(d xhat) and mean_n(d xhat xhat) enter every row as x c1 + c0.
    std::vector<float> c1(width), c0(width);
    for (int64_t j = 0; j < width; ++j) {
      const double rstd = sc[j], k = kp[j], s_w = total[width + j], s_wx = total[2 * width + j];
      const double mean_d = k * s_w / rows;
      const double mean_dx = k * (rstd * s_wx + sh[j] * s_w) / rows;
      c1[j] = static_cast<float>(-rstd * rstd * mean_dx);
      c0[j] = static_cast<float>(-rstd * (mean_d + sh[j] * mean_dx));
    }
    at::parallel_for(0, rows, kChunkRows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < width; j += Vec::size()) {
          const int count = static_cast<int>(std::min<int64_t>(Vec::size(), width - j));
          const int64_t at_ = i * width + j;
          Vec grad = Vec::loadu(gx + at_, count);
          grad = grad + at::vec::fmadd(Vec::loadu(xp + at_, count),
                                       Vec::loadu(c1.data() + j, count),
                                       Vec::loadu(c0.data() + j, count));
          grad.store(gx + at_, count);
        }
      }
    });
  }
  return {grad_x, grad_alpha};
}

}  // namespace

// The namespace names the capability, so that builds for several can load side by side.
#define SKLEARN_DIN_REGISTER(ns, m) TORCH_LIBRARY(ns, m)
SKLEARN_DIN_REGISTER(SKLEARN_DIN_NAMESPACE, m) {
  m.def("dice_forward(Tensor x, Tensor shift, Tensor scale, Tensor alpha, Tensor keep, "
        "bool save_gate) -> (Tensor, Tensor)", &dice_forward);
  m.def("dice_backward(Tensor dout, Tensor x, Tensor gate, Tensor alpha, Tensor keep, "
        "Tensor scale, Tensor shift, bool batch_stats) -> (Tensor, Tensor)", &dice_backward);
}
