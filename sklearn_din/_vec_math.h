// Vector arithmetic shared by the compiled kernels (_dice_kernels.cpp, _mlp_kernels.cpp).
//
// Internal linkage (an anonymous namespace): the library is built once per CPU capability,
// and two builds loaded side by side must not resolve each other's inline functions.
#pragma once

#include <ATen/cpu/vec/vec.h>

namespace {

using Vec = at::vec::Vectorized<float>;

// 1 / d: the hardware's estimate refined by one Newton step (1e-7 relative; 1e-6 on AVX2).
inline Vec reciprocal(const Vec& d) {
#if defined(CPU_CAPABILITY_AVX512)
  __m512 r = _mm512_rcp14_ps(d);
  return Vec(r) * (Vec(2.0f) - d * Vec(r));
#elif defined(CPU_CAPABILITY_AVX2)
  __m256 r = _mm256_rcp_ps(d);
  return Vec(r) * (Vec(2.0f) - d * Vec(r));
#else
  return Vec(1.0f) / d;
#endif
}

// sigmoid(x * scale + shift): Dice's gate on the normalised activation. The exponential is
// exp_u20 (ATen's 20-ulp exponential, as inductor emits it).
inline Vec gate_of(const Vec& x, const Vec& scale, const Vec& shift) {
  Vec u = at::vec::fmadd(x, scale, shift);
  return reciprocal(Vec(1.0f) + u.neg().exp_u20());
}

// Dice's output from its gate: x (alpha + keep gate), keep = 1 - alpha.
inline Vec dice_of(const Vec& x, const Vec& gate, const Vec& alpha, const Vec& keep) {
  return x * at::vec::fmadd(gate, keep, alpha);
}

}  // namespace
