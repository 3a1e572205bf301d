// Thin, type-generic wrappers over CBLAS (OpenBLAS) for the products the cells need, so that
// templated code can call gemm<T> and no header outside src/backend includes <cblas.h>.
// All matrices are row-major.
#pragma once

namespace membptt::backend {

enum class Trans : unsigned char { No, Yes };

// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) is k x n.
// lda/ldb/ldc are the row strides of A, B, C as stored.
template <class T>
void gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
          T beta, T* c, int ldc);

// Threads OpenBLAS uses (openblas_get_num_threads); set_blas_threads changes it process-wide.
int blas_threads();
void set_blas_threads(int n);

}  // namespace membptt::backend
