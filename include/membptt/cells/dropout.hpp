// Dropout between recurrent layers (PyTorch's `dropout` of nn.LSTM / GRU / RNN in training): the
// input of layer l > 0 at step t is  x_l = h_{l-1} * mask / (1 - p),  mask in {0, 1}, kept with
// probability 1 - p; h_{l-1} itself (carried, h_n, the top layer's output) is not dropped.
//
// The masks come from a counter-based generator: element k (= b * R + j, row-major [B x R]) of
// the mask of layer l at step t (0-based) under seed s is kept iff
//     dropout_bits(s, l, t, k) >= dropout_threshold(p),
// a pure function of (s, l, t, k) (splitmix64's finaliser over the four, chained). Nothing is
// stored between steps: a step recomputed by any schedule draws exactly the mask it drew the first
// time, so every policy keeps plain BPTT's bits; CPU and GPU draw the same masks. The kept fraction
// is 1 - threshold / 2^64 = 1 - p to within 2^-53. They are not PyTorch's own draws (a different
// generator): membptt.torch takes the seed from PyTorch's default generator, so torch.manual_seed
// makes runs repeatable.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MEMBPTT_DROPOUT_HD __host__ __device__ __forceinline__
#else
#define MEMBPTT_DROPOUT_HD inline
#endif

namespace membptt {

// splitmix64's output function (Steele, Lea, Flood 2014): a bijection of 64-bit words that mixes
// every input bit into every output bit.
MEMBPTT_DROPOUT_HD std::uint64_t splitmix64_mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 64 random bits for element `index` of the mask of `layer` at `step` under `seed`.
MEMBPTT_DROPOUT_HD std::uint64_t dropout_bits(std::uint64_t seed, std::uint64_t layer, std::uint64_t step,
                                              std::uint64_t index) {
  return splitmix64_mix(splitmix64_mix(splitmix64_mix(splitmix64_mix(seed) ^ layer) ^ step) ^ index);
}

// An element is kept iff its bits are >= this: floor(p * 2^64), all ones for p >= 1 (nothing kept
// but an all-ones word, 2^-64 of the time: p = 1 is handled by a scale of 0 besides), 0 for p <= 0.
inline std::uint64_t dropout_threshold(double p) {
  if (!(p > 0)) return 0;
  if (p >= 1) return ~std::uint64_t{0};
  const double t = p * 18446744073709551616.0;  // p * 2^64, exact (a power of two)
  return t >= 18446744073709551615.0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(t);
}

// What a kept element is multiplied by: 1 / (1 - p) (PyTorch's), 0 when p = 1 (all dropped).
template <class T>
T dropout_scale(double p) {
  return p >= 1 ? T(0) : T(1) / static_cast<T>(1 - p);
}

}  // namespace membptt
