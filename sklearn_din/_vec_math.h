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

// sigmoid(x * scale + shift): Dice's gate on the normalised activation, as 1 / (1 + 2^t) with
// t = -(x * scale + shift) log2(e). On AVX512 and AVX2, 2^t is 2^n (n = t rounded) times a
// degree-5 polynomial in t - n (2.4e-7 relative, minimax on [-1/2, 1/2]); t is clamped to
// +-100, where 1 + 2^t and its reciprocal stay finite and the gate is 0 or 1 to float
// precision. 19 vector operations with Dice's own two (28 with ATen's 20-ulp exp_u20), and
// the gate is most of an MLP pass with Dice. Elsewhere: ATen's exp_u20.
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// 2^f on [-1/2, 1/2], lowest degree first (fitted to the relative error).
constexpr float kExp2Poly[6] = {1.0000001192092896f, 0.6931469440460205f, 0.24022120237350464f,
                                0.05550713464617729f, 0.009675540961325169f,
                                0.001327645150013268f};
#endif

inline Vec gate_of(const Vec& x, const Vec& scale, const Vec& shift) {
#if defined(CPU_CAPABILITY_AVX512)
  __m512 t = _mm512_mul_ps(_mm512_fmadd_ps(x, scale, shift), _mm512_set1_ps(-1.44269504f));
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-100.0f)), _mm512_set1_ps(100.0f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_fmadd_ps(f, _mm512_set1_ps(kExp2Poly[5]), _mm512_set1_ps(kExp2Poly[4]));
  for (int k = 3; k >= 0; --k) p = _mm512_fmadd_ps(f, p, _mm512_set1_ps(kExp2Poly[k]));
  return reciprocal(Vec(_mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.0f))));
#elif defined(CPU_CAPABILITY_AVX2)
  __m256 t = _mm256_mul_ps(_mm256_fmadd_ps(x, scale, shift), _mm256_set1_ps(-1.44269504f));
  t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-100.0f)), _mm256_set1_ps(100.0f));
  const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(t, n);
  __m256 p = _mm256_fmadd_ps(f, _mm256_set1_ps(kExp2Poly[5]), _mm256_set1_ps(kExp2Poly[4]));
  for (int k = 3; k >= 0; --k) p = _mm256_fmadd_ps(f, p, _mm256_set1_ps(kExp2Poly[k]));
  // 2^n from its exponent bits (n is in [-100, 100]: a normal float)
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  return reciprocal(Vec(_mm256_add_ps(e, _mm256_set1_ps(1.0f))));
#else
  Vec u = at::vec::fmadd(x, scale, shift);
  return reciprocal(Vec(1.0f) + u.neg().exp_u20());
#endif
}

// Dice's output from its gate: x (alpha + keep gate), keep = 1 - alpha.
inline Vec dice_of(const Vec& x, const Vec& gate, const Vec& alpha, const Vec& keep) {
  return x * at::vec::fmadd(gate, keep, alpha);
}

}  // namespace
