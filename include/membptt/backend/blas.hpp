// Thin, type-generic wrappers over CBLAS (OpenBLAS) for the products the cells need, so that
// templated code can call gemm<T> and no header outside src/backend includes <cblas.h>.
// All matrices are row-major. Products with op(B) = B (alpha 1, beta 0 or 1) run on libxsmm's
// JIT-compiled kernels where the build has it (about twice OpenBLAS's speed on a recurrent step's
// B = 32 rows), the others on OpenBLAS; both on tiles of C fixed by the shape and spread over
// gemm_threads() threads, so a product's bits never depend on the thread count.
#pragma once

#include <cstddef>

namespace membptt::backend {

enum class Trans : unsigned char { No, Yes };

// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) is k x n.
// lda/ldb/ldc are the row strides of A, B, C as stored.
template <class T>
void gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
          T beta, T* c, int ldc);

// out[m x n] = a1[m x k1] W1^T (+ a2[m x k2] W2^T when a2 is given): a layer's forward products
// (its input's and h_{t-1}'s pre-activations), W1 [n x k1] and W2 [n x k2] as PyTorch stores them;
// rows of a1, a2, W1, W2 and out are contiguous (strides k1, k2, k1, k2, n). With libxsmm it runs as
// out^T = W1 a1^T (+ W2 a2^T) on its kernels, the transposes in `scratch`, which must hold
// weight_products_scratch(m, n, k1, k2) elements (0 without libxsmm: OpenBLAS takes W^T as it is).
// Below 16384 multiply-adds (m n (k1 + k2): a tiny network's step) it runs on OpenBLAS, where the
// transposes gain nothing, and the scratch is 0.
template <class T>
void weight_products(int m, int n, const T* a1, int k1, const T* w1, const T* a2, int k2, const T* w2, T* out,
                     T* scratch);
std::size_t weight_products_scratch(int m, int n, int k1, int k2);

// dst[cols x rows] = src[rows x cols]^T, row-major, contiguous rows (libxsmm's transpose where the
// build has it).
template <class T>
void transpose(int rows, int cols, const T* src, T* dst);

// Threads membptt's products run on (TilePool: each product's tiles, single-threaded kernels;
// OpenBLAS's own threads stay idle during them). Default: OpenBLAS's count when first asked, so
// OPENBLAS_NUM_THREADS sets both. set_gemm_threads changes it process-wide (n >= 1).
int gemm_threads();
void set_gemm_threads(int n);

}  // namespace membptt::backend
