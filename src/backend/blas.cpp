#include "membptt/backend/blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <atomic>

#include "membptt/backend/tile_pool.hpp"

#ifdef MEMBPTT_HAVE_LIBXSMM
#include <libxsmm.h>
#endif

namespace membptt::backend {

namespace {
CBLAS_TRANSPOSE tr(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }

void cblas(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void cblas(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
           int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::atomic<int> g_threads{0};  // 0: not asked yet (then OpenBLAS's count)

// A product's time on one core, roughly (at 100 GFLOP/s), to decide whether to use threads.
double product_ns(int m, int n, int k) { return 2.0 * m * n * k / 100.0; }

// OpenBLAS runs single-threaded inside membptt's products (their tiles are spread over TilePool's
// threads instead); its own setting, which a host program (PyTorch) shares, is put back after.
class OpenBlasSerial {
 public:
  OpenBlasSerial() : before_(openblas_get_num_threads()) {
    if (before_ != 1) openblas_set_num_threads(1);
  }
  ~OpenBlasSerial() {
    if (before_ != 1) openblas_set_num_threads(before_);
  }
  OpenBlasSerial(const OpenBlasSerial&) = delete;
  OpenBlasSerial& operator=(const OpenBlasSerial&) = delete;

 private:
  int before_;
};

// The products libxsmm does not take, through OpenBLAS on tiles of kBlasTile x kBlasTile of C
// (fixed by the shape, as below), single-threaded each, on TilePool's threads.
constexpr int kBlasTile = 256;

template <class T>
struct BlasTiled {
  Trans ta, tb;
  int m, n, k;
  T alpha, beta;
  const T* a;
  const T* b;
  T* c;
  int lda, ldb, ldc;
  int col_tiles;

  static void run(const void* p, int first, int end) {
    const auto& t = *static_cast<const BlasTiled*>(p);
    for (int i = first; i < end; ++i) {
      const int r0 = i / t.col_tiles * kBlasTile, c0 = i % t.col_tiles * kBlasTile;
      const int rows = std::min(kBlasTile, t.m - r0), cols = std::min(kBlasTile, t.n - c0);
      const T* a = t.ta == Trans::Yes ? t.a + r0 : t.a + static_cast<std::size_t>(r0) * t.lda;
      const T* b = t.tb == Trans::Yes ? t.b + static_cast<std::size_t>(c0) * t.ldb : t.b + c0;
      cblas(t.ta, t.tb, rows, cols, t.k, t.alpha, a, t.lda, b, t.ldb, t.beta,
            t.c + static_cast<std::size_t>(r0) * t.ldc + c0, t.ldc);
    }
  }
};

template <class T>
void blas_tiled(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
                T beta, T* c, int ldc) {
  BlasTiled<T> t{ta, tb, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc, (n + kBlasTile - 1) / kBlasTile};
  const int tiles = (m + kBlasTile - 1) / kBlasTile * t.col_tiles;
  const int threads = threads_for(product_ns(m, n, k));  // (before OpenBLAS's count changes: it may be the default)
  OpenBlasSerial serial;
  TilePool::instance().run(tiles, threads, &BlasTiled<T>::run, &t);
}

#ifdef MEMBPTT_HAVE_LIBXSMM
// Forward products through transposes (weight_products) from this many multiply-adds a call on: from
// there libxsmm's kernels and the transposes beat OpenBLAS, whose packing dominates small products
// (a forward step's products, 2026-12-01: 2.0x faster at an LSTM (16, 32) with B = 32, 2.3-2.8x at
// (32, 64), 2.4-3.5x at an RNN (64, 128), 1.8x at B = 8). Below it (B = 4, LSTM (8, 16): 6144
// multiply-adds, the same time on both) a tiny network keeps OpenBLAS and its workspace.
constexpr long kTransposeMinMacs = 16384;

// Row-major C[m x n] (+)= op(A) B is column-major C^T[n x m] (+)= B^T op(A)^T: libxsmm's first
// operand is B as stored (no transpose), its second A as stored (transposed when op(A) = A^T,
// which its JIT supports; a transposed first operand it does not, so products with op(B) = B^T
// stay with OpenBLAS). Tiles of kTile x kTile of C^T, fixed by the shape alone: every thread
// count runs the same kernels on the same tiles, so the bits never depend on it.
constexpr int kTile = 64;
// Products with op(A) = A^T (the weight gradients: dW += dG^T X over a group's rows) run on tiles
// of 32 x 256 of C^T (32 of X's columns by 256 gate rows): 1.10-1.20x as fast as 64 x 64 at
// LSTM (64, 256), (256, 256) and (1024, 1024), 1 and 2 threads (bench/step_products, 2026-12-01).
// A tile's size changes no element's bits: each adds along k, in order, in every kernel.
constexpr int kTransTileRows = 32, kTransTileCols = 256;
// A tile's k runs in chunks of kChunkK, so the part of the first operand a tile reads for all of
// its columns stays in cache (64 x 256 floats: 64 KiB) instead of the whole panel (1 MiB at
// k = 4096, dL/dh of an LSTM with H = 1024) coming from L2 or beyond again for every block of
// columns. dL/dh at (1024, 1024), B = 32, one thread: 142 GFLOP/s unchunked, 194 in chunks of 256
// (64: 176, 128: 189, 512: 191; bench/step_products, 2026-12-01); the other products unchanged.
// The bits are those of one call (measured equal for chunks of 7 to 4096): each element's sum goes
// on, in order, from the value the chunk before stored.
constexpr int kChunkK = 256;

template <class T>
using Kernel = void (*)(const T*, const T*, T*, ...);

template <class T>
Kernel<T> dispatch(int m, int n, int k, int lda, int ldb, int ldc, T beta, bool trans_b) {
  const libxsmm_blasint M = m, N = n, K = k, LDA = lda, LDB = ldb, LDC = ldc;
  const int flags = trans_b ? LIBXSMM_GEMM_FLAGS('N', 'T') : LIBXSMM_GEMM_FLAGS('N', 'N');
  const T alpha = T(1);
  if constexpr (sizeof(T) == 4)
    return reinterpret_cast<Kernel<T>>(libxsmm_smmdispatch(M, N, K, &LDA, &LDB, &LDC, &alpha, &beta, &flags, nullptr));
  else
    return reinterpret_cast<Kernel<T>>(libxsmm_dmmdispatch(M, N, K, &LDA, &LDB, &LDC, &alpha, &beta, &flags, nullptr));
}

// Row-major C[m x n] (+)= sum of terms op(A_i) B_i, each term's kernels run on a tile before the
// next's (the second with beta 1), so a tile's elements add the terms in order; with `back`, each
// tile is then transposed into back[n x m] (row stride ld_back) by its own thread.
template <class T>
struct Tiled {
  // A term's k runs in chunks of kc (the last one shorter): chunk 0 with the term's beta, the
  // others with beta 1 (each element's sum continues from where the chunk before stored it).
  struct Term {
    Kernel<T> kernel[2][2][3];  // [full or tail rows of C^T][full or tail columns][first, middle, last chunk]
    const T* a;
    const T* b;
    int lda, ldb;
    int kc, chunks;
    bool trans_a;
  };
  Term term[2];
  int terms = 0;
  T* c;
  int ldc;
  int tile_r, tile_c;  // a full tile's rows and columns
  int rows, cols;      // C^T's: n, m
  int row_tiles, col_tiles;
  T* back = nullptr;
  int ld_back = 0;

  Tiled(int m, int n, T* c_, int ldc_, int tile_rows_ = kTile, int tile_cols_ = kTile)
      : c(c_), ldc(ldc_), tile_r(tile_rows_), tile_c(tile_cols_), rows(n), cols(m),
        row_tiles((n + tile_r - 1) / tile_r), col_tiles((m + tile_c - 1) / tile_c) {}

  int tile_rows(int r) const { return r ? rows - (row_tiles - 1) * tile_r : std::min(tile_r, rows); }
  int tile_cols(int c) const { return c ? cols - (col_tiles - 1) * tile_c : std::min(tile_c, cols); }

  // Adds the term op(A)[m x k] B[k x n]; false where libxsmm makes no kernel for it.
  bool add(Trans ta, int k, const T* a, int lda, const T* b, int ldb, T beta) {
    Term& t = term[terms];
    t.a = a, t.b = b, t.lda = lda, t.ldb = ldb, t.trans_a = ta == Trans::Yes;
    t.kc = std::min(k, kChunkK);
    t.chunks = (k + t.kc - 1) / t.kc;
    const int last_k = k - (t.chunks - 1) * t.kc;
    // Only the kernels some tile runs (each dispatch is a lookup in libxsmm's registry).
    const bool row_kind[2] = {rows >= tile_r, rows % tile_r != 0}, col_kind[2] = {cols >= tile_c, cols % tile_c != 0};
    const bool chunk_kind[3] = {true, t.chunks > 2, t.chunks > 1};
    for (int r = 0; r < 2; ++r)
      for (int cc = 0; cc < 2; ++cc)
        for (int j = 0; j < 3; ++j) {
          Kernel<T>& kernel = t.kernel[r][cc][j];
          kernel = nullptr;
          if (!row_kind[r] || !col_kind[cc] || !chunk_kind[j]) continue;
          // libxsmm's A is B as stored (ld ldb); its B is A as stored (ld lda), transposed with op(A).
          const bool first = j == 0, last = j == 2 || t.chunks == 1;
          kernel = dispatch<T>(tile_rows(r), tile_cols(cc), last ? last_k : t.kc, ldb, lda, ldc, first ? beta : T(1),
                               t.trans_a);
          if (!kernel) return false;
        }
    ++terms;
    return true;
  }

  static void run(const void* p, int first, int end) {
    const auto& t = *static_cast<const Tiled*>(p);
    for (int i = first; i < end; ++i) {
      const int ct = i / t.row_tiles, rt = i % t.row_tiles;
      const int r0 = rt * t.tile_r, c0 = ct * t.tile_c;
      const bool tail_r = r0 + t.tile_r > t.rows, tail_c = c0 + t.tile_c > t.cols;
      T* c = t.c + static_cast<std::size_t>(c0) * t.ldc + r0;
      for (int j = 0; j < t.terms; ++j) {
        const Term& u = t.term[j];
        // C^T(r0, c0) = B^T(r0, :) op(A)^T(:, c0): B's columns r0.., A's rows c0.. (or columns when
        // transposed), C's rows c0.. and columns r0..; chunk q covers k in [q kc, (q + 1) kc).
        const T* a = u.trans_a ? u.a + c0 : u.a + static_cast<std::size_t>(c0) * u.lda;
        const T* b = u.b + r0;
        const std::size_t a_step = u.trans_a ? static_cast<std::size_t>(u.kc) * u.lda : static_cast<std::size_t>(u.kc);
        const std::size_t b_step = static_cast<std::size_t>(u.kc) * u.ldb;
        for (int q = 0; q < u.chunks; ++q, a += a_step, b += b_step)
          u.kernel[tail_r][tail_c][q == 0 ? 0 : q == u.chunks - 1 ? 2 : 1](b, a, c);
      }
      if (t.back)
        libxsmm_otrans(t.back + static_cast<std::size_t>(r0) * t.ld_back + c0, c, sizeof(T), t.tile_rows(tail_r),
                       t.tile_cols(tail_c), t.ldc, t.ld_back);
    }
  }
};

// The product through libxsmm's kernels on TilePool's threads; false (nothing done) where it does
// not apply: op(B) = B^T, alpha != 1, beta not 0 or 1, or a kernel libxsmm cannot make.
template <class T>
bool tiled_gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
                T beta, T* c, int ldc) {
  if (tb == Trans::Yes || alpha != T(1) || (beta != T(0) && beta != T(1)) || m <= 0 || n <= 0 || k <= 0)
    return false;
  const bool trans = ta == Trans::Yes;
  Tiled<T> t(m, n, c, ldc, trans ? kTransTileRows : kTile, trans ? kTransTileCols : kTile);
  if (!t.add(ta, k, a, lda, b, ldb, beta)) return false;
  TilePool::instance().run(t.row_tiles * t.col_tiles, threads_for(product_ns(m, n, k)), &Tiled<T>::run, &t);
  return true;
}
#endif
}  // namespace

template <class T>
void gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta,
          T* c, int ldc) {
#ifdef MEMBPTT_HAVE_LIBXSMM
  if (tiled_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
  if (m > 0 && n > 0) blas_tiled<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::size_t weight_products_scratch(int m, int n, int k1, int k2) {
#ifdef MEMBPTT_HAVE_LIBXSMM
  // Tiny products gain nothing from the transposes (kTransposeMinMacs).
  if (static_cast<long>(m) * n * (k1 + k2) < kTransposeMinMacs) return 0;
  return static_cast<std::size_t>(m) * static_cast<std::size_t>(k1 + k2 + n);
#else
  (void)m, (void)n, (void)k1, (void)k2;
  return 0;
#endif
}

// weight_products on OpenBLAS, which takes W^T as it is stored.
template <class T>
void weight_products_blas(int m, int n, const T* a1, int k1, const T* w1, const T* a2, int k2, const T* w2, T* out) {
  gemm<T>(Trans::No, Trans::Yes, m, n, k1, T(1), a1, k1, w1, k1, T(0), out, n);
  if (a2) gemm<T>(Trans::No, Trans::Yes, m, n, k2, T(1), a2, k2, w2, k2, T(1), out, n);
}

template <class T>
void weight_products(int m, int n, const T* a1, int k1, const T* w1, const T* a2, int k2, const T* w2, T* out,
                     T* scratch) {
#ifdef MEMBPTT_HAVE_LIBXSMM
  if (weight_products_scratch(m, n, k1, a2 ? k2 : 0) == 0)
    return weight_products_blas(m, n, a1, k1, w1, a2, k2, w2, out);
  // libxsmm's JIT takes no transposed first operand, and out = a W^T needs one (W's rows run along
  // k, as a's do). Transposing the small operands (a: m = B rows) costs far less than packing W
  // each step, which OpenBLAS does (its packing took 12% of a plain BPTT pass).
  const auto um = static_cast<std::size_t>(m);
  T* a1t = scratch;                                    // [k1 x m]
  T* a2t = a1t + um * static_cast<std::size_t>(k1);    // [k2 x m]
  T* out_t = a2t + um * static_cast<std::size_t>(a2 ? k2 : 0);  // [n x m]
  libxsmm_otrans(a1t, a1, sizeof(T), k1, m, k1, m);
  if (a2) libxsmm_otrans(a2t, a2, sizeof(T), k2, m, k2, m);
  // out_t[n x m] = W1 a1^T (+ W2 a2^T), and each tile of it transposed into out by its thread: one
  // call to the threads for the step's products.
  Tiled<T> t(n, m, out_t, m);
  t.back = out, t.ld_back = n;
  if (t.add(Trans::No, k1, w1, k1, a1t, m, T(0)) && (!a2 || t.add(Trans::No, k2, w2, k2, a2t, m, T(1)))) {
    TilePool::instance().run(t.row_tiles * t.col_tiles, threads_for(product_ns(m, n, k1 + (a2 ? k2 : 0))),
                             &Tiled<T>::run, &t);
    return;
  }
  gemm<T>(Trans::No, Trans::No, n, m, k1, T(1), w1, k1, a1t, m, T(0), out_t, m);
  if (a2) gemm<T>(Trans::No, Trans::No, n, m, k2, T(1), w2, k2, a2t, m, T(1), out_t, m);
  libxsmm_otrans(out, out_t, sizeof(T), m, n, m, n);
#else
  (void)scratch;
  weight_products_blas(m, n, a1, k1, w1, a2, k2, w2, out);
#endif
}

template <class T>
void transpose(int rows, int cols, const T* src, T* dst) {
#ifdef MEMBPTT_HAVE_LIBXSMM
  libxsmm_otrans(dst, src, sizeof(T), cols, rows, cols, rows);
#else
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) dst[static_cast<std::size_t>(c) * rows + r] = src[static_cast<std::size_t>(r) * cols + c];
#endif
}

template void transpose<float>(int, int, const float*, float*);
template void transpose<double>(int, int, const double*, double*);
template void weight_products<float>(int, int, const float*, int, const float*, const float*, int, const float*,
                                     float*, float*);
template void weight_products<double>(int, int, const double*, int, const double*, const double*, int,
                                      const double*, double*, double*);
template void gemm<float>(Trans, Trans, int, int, int, float, const float*, int, const float*, int, float, float*, int);
template void gemm<double>(Trans, Trans, int, int, int, double, const double*, int, const double*, int, double,
                           double*, int);

int gemm_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    int expected = 0;
    g_threads.compare_exchange_strong(expected, std::max(1, openblas_get_num_threads()));
    n = g_threads.load(std::memory_order_relaxed);
  }
  return n;
}
void set_gemm_threads(int n) { g_threads.store(std::max(1, n), std::memory_order_relaxed); }

}  // namespace membptt::backend
