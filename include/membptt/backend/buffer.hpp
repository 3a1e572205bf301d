// A fixed-size, 64-byte aligned, zero-initialised array of T: the storage of parameter buffers and
// of the scratch that cells allocate once in their constructor. It never grows; copying copies.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace membptt::backend {

// An allocation that failed, with its size: "cannot allocate 412.00 GiB (442381631488 bytes)".
// Callers that know what the memory is for add that (the CLI prints it as one line).
struct AllocationError : std::runtime_error {
  explicit AllocationError(double bytes) : std::runtime_error(describe(bytes)), bytes(bytes) {}
  double bytes;
  static std::string describe(double bytes) {
    char text[96];
    std::snprintf(text, sizeof text, "cannot allocate %.2f GiB (%.0f bytes): not enough memory", bytes / (1024.0 * 1024 * 1024),
                  bytes);
    return text;
  }
};

template <class T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlign = 64;
  // From this size on (an executor's arena), 2 MiB-aligned and offered to the kernel as huge pages:
  // a module's forward allocates its arena every call, and 4 KiB pages cost one fault each
  // (64,000 for plain BPTT's 250 MiB at T = 1000, LSTM 256; measured about a tenth of the pass).
  static constexpr std::size_t kHugeBytes = std::size_t{8} << 20, kHugeAlign = std::size_t{2} << 20;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) : n_(n) {
    if (n_ > 0) {
      if (n_ > SIZE_MAX / sizeof(T)) throw AllocationError(static_cast<double>(n_) * sizeof(T));
      try {
        p_ = static_cast<T*>(::operator new[](n_ * sizeof(T), std::align_val_t{alignment(n_)}));
      } catch (const std::bad_alloc&) {
        const double bytes = static_cast<double>(n_) * sizeof(T);
        n_ = 0;
        throw AllocationError(bytes);
      }
#ifdef __linux__
      if (alignment(n_) == kHugeAlign) (void)madvise(p_, n_ * sizeof(T) / kHugeAlign * kHugeAlign, MADV_HUGEPAGE);
#endif
      std::fill_n(p_, n_, T{});
    }
  }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.n_) { std::copy_n(o.p_, n_, p_); }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  AlignedBuffer& operator=(const AlignedBuffer& o) {
    if (this != &o) {
      if (n_ == o.n_) {
        std::copy_n(o.p_, n_, p_);
      } else {
        AlignedBuffer tmp(o);
        swap(tmp);
      }
    }
    return *this;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    AlignedBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~AlignedBuffer() {
    if (p_) ::operator delete[](p_, std::align_val_t{alignment(n_)});
  }
  void swap(AlignedBuffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }
  std::span<T> span() { return {p_, n_}; }
  std::span<const T> span() const { return {p_, n_}; }
  void zero() { std::fill_n(p_, n_, T{}); }

 private:
  static std::size_t alignment(std::size_t n) { return n * sizeof(T) >= kHugeBytes ? kHugeAlign : kAlign; }

  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace membptt::backend
