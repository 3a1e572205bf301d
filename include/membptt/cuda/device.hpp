// The CUDA runtime as membptt uses it: one device, one stream, one cuBLAS handle, fixed device
// buffers, and CudaOps, the primitive operations the device cells are written over.
//
// No CUDA header is included here, so the command-line tool and the tests compile with the host
// compiler alone. Everything runs on one non-blocking stream of the selected device (stream());
// functions that return data to the host synchronise it, everything else is asynchronous.
// Errors (no device, out of memory, a failed launch) throw std::runtime_error naming the call.
// Nothing here is safe to call from two host threads at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace membptt::cuda {

// Where a recording step also writes its carries (BasicDeviceNet::advance_record): the carry it
// starts from into the record (h_save, c_save), the carry it produces into the cursor (h_out2,
// c_out2), so that no separate copies are needed. Null: not wanted (c_*: LSTM only).
template <class T>
struct CarryCopies {
  T* h_save = nullptr;
  T* c_save = nullptr;
  T* h_out2 = nullptr;
  T* c_out2 = nullptr;
};

// --- Device and options --------------------------------------------------------------------

// Devices visible; 0 when there is none or no usable driver (never throws).
int device_count() noexcept;
// Why device_count() is 0, e.g. "cudaGetDeviceCount: CUDA driver version is insufficient ...".
std::string no_device_reason();
// Makes device `index` current and creates its stream and cuBLAS handle. Call before allocating;
// buffers made on one device must not be used after selecting another. Throws when out of range.
void select_device(int index);
// The selected device (select_device(0) is implied by the first use).
int current_device();
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)".
std::string device_description();

// How float GEMMs multiply (double GEMMs always in double).
enum class GemmMath {
  Fp32,  // full float32 products
  Tf32,  // TF32 tensor cores: inputs rounded to a 10-bit mantissa, float32 accumulation
  Bf16,  // bf16 tensor cores: inputs rounded to an 8-bit mantissa, float32 accumulation
};

struct Options {
  // TF32 tensor-core GEMMs for float (10-bit mantissa inputs, float32 accumulation). Off by
  // default: the bitwise and accuracy tests need full float32 products. Ignored for double.
  bool tf32 = false;
  // bf16 tensor-core GEMMs for float (cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF: float32 storage and
  // accumulation, inputs rounded to bf16 inside the GEMM). Takes precedence over tf32. Off by
  // default; ignored for double.
  bool bf16 = false;
  // Backward steps whose weight gradients are summed by one GEMM (1 = one GEMM per step). The
  // grouping is by backward step count, which every policy shares, so gradients stay bitwise
  // equal across policies for any value; only speed and workspace change.
  int defer_steps = 16;
  // Workspace given to cuBLAS: one for the process, allocated with the device (like the CUDA
  // context, not counted in an executor's workspace; `membptt bench` reports it).
  std::size_t blas_workspace_bytes = std::size_t{32} << 20;
  // CudaExecutor captures a pass as one CUDA graph the first time it runs with given pointers and
  // replays it after (one launch instead of thousands; same kernels, same bits). Off: every pass
  // is issued kernel by kernel.
  bool graphs = true;
  // Plans with more cell steps (forward + backward) than this run without a graph: the driver
  // keeps a graph's kernel arguments in device memory, 14-15 KiB per cell step of a one-layer
  // LSTM on an H200 (measured: 30 MiB for 2,000 steps), so this caps it near 1 GiB.
  std::int64_t graph_max_steps = 65536;
  // Layer 0's input projection x W_ih^T is computed for this many consecutive steps by one GEMM
  // (steps [kC+1, kC+C], always the same block whichever step asks first, so the bits are the same
  // under every policy), kept while the pass advances through them. 1: one GEMM per step. The
  // block's buffer is part of the executor's workspace.
  int input_chunk_steps = 8;
};
inline GemmMath gemm_math(const Options& o) { return o.bf16 ? GemmMath::Bf16 : o.tf32 ? GemmMath::Tf32 : GemmMath::Fp32; }
inline const char* gemm_math_name(GemmMath m) {
  return m == GemmMath::Bf16 ? "bf16" : m == GemmMath::Tf32 ? "TF32" : "float32";
}
// Options read by networks and heads when they are constructed (change them before).
void set_options(const Options& o);
const Options& options();

// Waits for everything queued on the stream.
void synchronize();
struct MemInfo {
  std::size_t free_bytes = 0, total_bytes = 0;
};
// cudaMemGetInfo of the current device.
MemInfo mem_info();

// --- CUDA graphs ---------------------------------------------------------------------------------

// Work captured from the stream (cudaStreamBeginCapture ... EndCapture) and instantiated once:
//   Graph::begin_capture();  ...queue work on stream()...;  Graph g = Graph::end_capture();
//   g.launch();  // queues all of it again, with the same pointers
// While capturing nothing runs, and nothing may synchronise the stream (download_bytes, for one,
// fails). Move-only.
class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&& o) noexcept;
  Graph& operator=(Graph&& o) noexcept;
  ~Graph();

  static void begin_capture();
  // Ends the capture and instantiates the graph; throws (the capture ended) if it was invalidated.
  static Graph end_capture();
  // Ends a capture whose work is dropped (after an exception), never throws.
  static void abort_capture() noexcept;

  void launch() const;  // async, on stream()
  explicit operator bool() const { return exec_ != nullptr; }
  std::size_t nodes() const { return nodes_; }

 private:
  void reset() noexcept;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  std::size_t nodes_ = 0;
};

// --- Raw memory (bytes) ----------------------------------------------------------------------

void* device_alloc(std::size_t bytes);  // cudaMalloc; nullptr for 0 bytes
void device_free(void* p) noexcept;
void copy_bytes(void* dst, const void* src, std::size_t bytes);            // device -> device, async
void zero_bytes(void* dst, std::size_t bytes);                               // async
void upload_bytes(void* dst, const void* host, std::size_t bytes);          // blocking
void download_bytes(void* host, const void* src, std::size_t bytes);        // blocking
// `rows` rows of `row_bytes` each, device -> device, async (cudaMemcpy2DAsync; pitches in bytes).
void copy_rows_bytes(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
                     std::size_t rows);

template <class T>
void upload(T* dst, const T* host, std::size_t n) {
  upload_bytes(dst, host, n * sizeof(T));
}
template <class T>
void download(T* host, const T* src, std::size_t n) {
  download_bytes(host, src, n * sizeof(T));
}

// A fixed-size array in device memory: cudaMalloc once, zeroed (on the stream), never grows.
// Move-only.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) : n_(n) {
    if (n_ > 0) {
      p_ = static_cast<T*>(device_alloc(n_ * sizeof(T)));
      zero_bytes(p_, n_ * sizeof(T));
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { device_free(p_); }

  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// --- CudaOps: what the device cells (device_net.hpp) are written over ----------------------------
//
// Every pointer is a device pointer; every call is queued on the stream. gemm_cm and gemv_cm have
// BLAS's column-major semantics exactly (the cells map their row-major products onto them), and
// are cuBLAS calls: deterministic for a fixed configuration on one stream with a fixed workspace.
// The elementwise kernels evaluate elementwise.cuh's functors over every (b, j) of [B][H]; xent and
// mse are the heads' fused kernels (fixed-order reductions, no atomics).
struct CudaOps {
  template <class U>
  using Buffer = DeviceBuffer<U>;

  template <class U>
  static void copy(U* dst, const U* src, std::size_t n) {
    copy_bytes(dst, src, n * sizeof(U));
  }
  template <class U>
  static void zero(U* dst, std::size_t n) {
    zero_bytes(dst, n * sizeof(U));
  }
  template <class U>
  static void upload(U* dst, const U* host, std::size_t n) {
    upload_bytes(dst, host, n * sizeof(U));
  }
  template <class U>
  static void download(U* host, const U* src, std::size_t n) {
    download_bytes(host, src, n * sizeof(U));
  }
  // Bytes of the process's cuBLAS workspace (Options::blas_workspace_bytes).
  static std::size_t blas_workspace_bytes();

  // C = alpha op(A) op(B) + beta C, column-major (cublas<t>gemm). math: how float products are
  // taken (GemmMath); double ignores it.
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                      int ldb, float beta, float* c, int ldc, GemmMath math);
  static void gemm_cm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                      int ldb, double beta, double* c, int ldc, GemmMath math);
  // y = alpha A x + beta y, A [m x n] column-major, not transposed (cublas<t>gemv).
  static void gemv_cm(int m, int n, float alpha, const float* a, int lda, const float* x, float beta, float* y);
  static void gemv_cm(int m, int n, double alpha, const double* a, int lda, const double* x, double beta, double* y);
  // dst += src, n elements (cublas<t>axpy with alpha 1: the same bits as an addition).
  static void add(float* dst, const float* src, std::size_t n);
  static void add(double* dst, const double* src, std::size_t n);
  // The same on `rows` rows of `cols` elements, each at its stride (in elements): copy_rows by
  // cudaMemcpy2DAsync, add_rows by cublas<t>geam with both factors 1 (the bits of an addition).
  template <class U>
  static void copy_rows(U* dst, std::size_t dst_stride, const U* src, std::size_t src_stride, std::size_t rows,
                        std::size_t cols) {
    copy_rows_bytes(dst, dst_stride * sizeof(U), src, src_stride * sizeof(U), cols * sizeof(U), rows);
  }
  static void add_rows(float* dst, std::size_t dst_stride, const float* src, std::size_t src_stride, std::size_t rows,
                       std::size_t cols);
  static void add_rows(double* dst, std::size_t dst_stride, const double* src, std::size_t src_stride,
                       std::size_t rows, std::size_t cols);

#define MEMBPTT_CUDA_OPS_DECL(T)                                                                                   \
  static void lstm_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,       \
                       const T* c_in, T* act, T* h_out, T* c_out, CarryCopies<T> cc);                         \
  static void lstm_bwd(int B, int H, const T* act, const T* c_in, const T* c_out, const T* dh_a, const T* dh_b,   \
                       const T* dc_out, T* dg, T* dc_in, const T* h_prev, T* hp, const T* x_in, T* xin);          \
  /* out = in * mask * scale over [B][R], the dropout mask of (*seed, layer, step) (cells/dropout.hpp; */        \
  /* seed: device memory, read when the kernel runs)                                                    */        \
  static void dropout(int B, int R, const T* in, T* out, const std::uint64_t* seed, std::uint64_t layer,         \
                      std::uint64_t step, std::uint64_t threshold, T scale);                                      \
  /* m = o * tanh(c_out) [B][H] (LSTM projections)                                                  */         \
  static void lstm_m(int B, int H, const T* act, const T* c_out, T* m);                                          \
  static void gru_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in, T* act, \
                      T* h_out, CarryCopies<T> cc);                                                            \
  static void gru_bwd(int B, int H, const T* act, const T* h_in, const T* dh_a, const T* dh_b, T* dgx, T* dgh,     \
                      T* dh_in, T* hp, const T* x_in, T* xin);                                                     \
  /* rnn: relu = nonlinearity relu (else tanh)                                                        */         \
  static void rnn_fwd(int B, int H, const T* px, const T* ph, const T* b_ih, const T* b_hh, const T* h_in,        \
                      T* h_out, CarryCopies<T> cc, bool relu);                                                 \
  static void rnn_bwd(int B, int H, const T* h_out, const T* dh_a, const T* dh_b, T* dg, const T* h_prev, T* hp,   \
                      const T* x_in, T* xin, bool relu);                                                           \
  /* Cross-entropy of one step: z = logits + bias per row; row_loss[b] += CE_b (double);               */         \
  /* dl = scale * (softmax(z) - onehot(target)); ht = copy of h_top [B][H]; *bad = 1 on a target         */         \
  /* outside [0, O) (that row then uses class 0).                                                        */         \
  static void xent(int B, int O, int H, const T* logits, const T* bias, const std::int64_t* targets, T scale,     \
                   T* dl, const T* h_top, T* ht, double* row_loss, int* bad);                                      \
  /* Last-step MSE: y = pred + bias per row; d = y - target; dl = (2/(B*O)) d; loss[0] += sum d^2      */         \
  /* (double, fixed order); ht = copy of h_top.                                                        */         \
  static void mse(int B, int O, int H, const T* pred, const T* bias, const T* target, T* dl, const T* h_top,       \
                  T* ht, double* loss);
  MEMBPTT_CUDA_OPS_DECL(float)
  MEMBPTT_CUDA_OPS_DECL(double)
#undef MEMBPTT_CUDA_OPS_DECL
};

}  // namespace membptt::cuda
