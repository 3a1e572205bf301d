// Scalar activation functions written so that GCC auto-vectorises the loops that call them
// (branch-free, no libm calls in the float versions), used by the fused cell kernels.
//   float : exp from a Cephes-style range reduction + degree-6 polynomial (about 1 ulp on
//           [-87, 88], input clamped to that range); sigmoid = 1 / (1 + exp(-x));
//           tanh = Cephes' odd polynomial for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1) with the
//           sign restored (a few ulp absolute). NaN propagates.
//           (exp_f also serves the softmax of the heads: act_exp.)
//   double: std::exp and std::tanh (exact to libm's accuracy; used for gradient checks).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace membptt::backend {

inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // n = round(x / ln 2) with the 1.5 * 2^23 trick (round to nearest even, no libm call).
  const float magic = 12582912.0f;
  const float t = x * 1.44269504088896341f + magic;
  const std::int32_t n = std::bit_cast<std::int32_t>(t) - std::bit_cast<std::int32_t>(magic);
  const float fx = t - magic;
  float r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const float r2 = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r2 + r + 1.0f;
  return y * std::bit_cast<float>((n + 127) << 23);
}

inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

inline float tanh_f(float x) {
  const float ax = x < 0.0f ? -x : x;
  // large |x|: 1 - 2 / (e^{2|x|} + 1)
  const float big = 1.0f - 2.0f / (exp_f(ax + ax) + 1.0f);
  const float big_signed = x < 0.0f ? -big : big;
  // small |x|: Cephes tanhf polynomial
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  return ax < 0.625f ? small : big_signed;
}

inline float act_sigmoid(float x) { return sigmoid_f(x); }
inline float act_tanh(float x) { return tanh_f(x); }
inline double act_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double act_tanh(double x) { return std::tanh(x); }
// exp for the heads' softmax: exp_f (vectorised with its callers) for float, std::exp for double.
inline float act_exp(float x) { return exp_f(x); }
inline double act_exp(double x) { return std::exp(x); }

}  // namespace membptt::backend
