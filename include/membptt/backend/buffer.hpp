// A fixed-size, 64-byte aligned, zero-initialised array of T: the storage of parameter buffers and
// of the scratch that cells allocate once in their constructor. It never grows; copying copies.
#pragma once
#include <algorithm>
#include <cstddef>
#include <new>
#include <span>
#include <utility>

namespace membptt::backend {

template <class T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlign = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) : n_(n) {
    if (n_ > 0) {
      p_ = static_cast<T*>(::operator new[](n_ * sizeof(T), std::align_val_t{kAlign}));
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
    if (p_) ::operator delete[](p_, std::align_val_t{kAlign});
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
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace membptt::backend
