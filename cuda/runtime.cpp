// The device, its stream and cuBLAS handle, raw memory, and CudaOps's cuBLAS products.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "internal.cuh"
#include "membptt/cuda/device.hpp"

namespace membptt::cuda {
namespace {

struct State {
  int device = -1;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
};

// Never destroyed: the CUDA runtime may already be gone when static destructors run.
State& state() {
  static State* s = new State;
  return *s;
}
Options& opts() {
  static Options o;
  return o;
}

std::string mib(std::size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return buf;
}

void ensure() {
  if (state().device < 0) select_device(0);
}

}  // namespace

namespace internal {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  }
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusName(s) + " (" +
                             cublasGetStatusString(s) + ")");
}

cudaStream_t stream() {
  ensure();
  return state().stream;
}

cublasHandle_t blas() {
  ensure();
  State& s = state();
  if (s.ws_bytes != opts().blas_workspace_bytes) {  // the option changed: a new workspace
    check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
    if (s.ws) check(cudaFree(s.ws), "cudaFree (cuBLAS workspace)");
    s.ws = nullptr;
    s.ws_bytes = 0;
    const std::size_t want = opts().blas_workspace_bytes;
    if (want > 0) s.ws = device_alloc(want);
    s.ws_bytes = want;
    check_blas(cublasSetWorkspace(s.blas, s.ws, s.ws_bytes), "cublasSetWorkspace");
  }
  return s.blas;
}

}  // namespace internal

using internal::check;
using internal::check_blas;

int device_count() noexcept {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "cudaGetDeviceCount: 0 devices";
  return "";
}

void select_device(int index) {
  State& s = state();
  if (s.device == index) return;
  const int n = device_count();
  if (index < 0 || index >= n)
    throw std::runtime_error("CUDA device " + std::to_string(index) + " does not exist: " +
                             (n == 0 ? "no CUDA device (" + no_device_reason() + ")"
                                     : std::to_string(n) + " device(s), numbered 0 to " + std::to_string(n - 1)));
  if (s.device >= 0) {  // leave the previous device's objects behind cleanly
    check(cudaSetDevice(s.device), "cudaSetDevice");
    check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
    cublasDestroy(s.blas);
    if (s.ws) cudaFree(s.ws);
    cudaStreamDestroy(s.stream);
    s = State{};
  }
  check(cudaSetDevice(index), "cudaSetDevice");
  check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check_blas(cublasCreate(&s.blas), "cublasCreate");
  check_blas(cublasSetStream(s.blas, s.stream), "cublasSetStream");
  check_blas(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  check_blas(cublasSetPointerMode(s.blas, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  check_blas(cublasSetAtomicsMode(s.blas, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
  s.device = index;
  s.ws_bytes = static_cast<std::size_t>(-1);  // allocated on first use (internal::blas)
  (void)internal::blas();
}

int current_device() {
  ensure();
  return state().device;
}

std::string device_description() {
  ensure();
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, state().device), "cudaGetDeviceProperties");
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs, " + mib(p.totalGlobalMem) + ")";
}

void set_options(const Options& o) {
  if (o.defer_steps < 1) throw std::invalid_argument("cuda::Options::defer_steps must be >= 1, got " + std::to_string(o.defer_steps));
  if (o.input_chunk_steps < 1)
    throw std::invalid_argument("cuda::Options::input_chunk_steps must be >= 1, got " + std::to_string(o.input_chunk_steps));
  opts() = o;
}
const Options& options() { return opts(); }

void synchronize() { check(cudaStreamSynchronize(internal::stream()), "cudaStreamSynchronize"); }

MemInfo mem_info() {
  ensure();
  MemInfo m;
  check(cudaMemGetInfo(&m.free_bytes, &m.total_bytes), "cudaMemGetInfo");
  return m;
}

void* device_alloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  ensure();
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw std::runtime_error("cudaMalloc of " + std::to_string(bytes) + " bytes (" + mib(bytes) + ") failed: " +
                             cudaGetErrorString(e) + " (" + mib(free_b) + " free of " + mib(total_b) + ")");
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) (void)cudaFree(p);
}

void copy_bytes(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0 || dst == src) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, internal::stream()), "cudaMemcpyAsync (device to device)");
}

void zero_bytes(void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemsetAsync(dst, 0, bytes, internal::stream()), "cudaMemsetAsync");
}

void upload_bytes(void* dst, const void* host, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, internal::stream()), "cudaMemcpyAsync (host to device)");
  check(cudaStreamSynchronize(internal::stream()), "cudaStreamSynchronize (upload)");
}

void download_bytes(void* host, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, internal::stream()), "cudaMemcpyAsync (device to host)");
  check(cudaStreamSynchronize(internal::stream()), "cudaStreamSynchronize (download)");
}

void copy_rows_bytes(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
                     std::size_t rows) {
  if (row_bytes == 0 || rows == 0) return;
  check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice, internal::stream()),
        "cudaMemcpy2DAsync (device to device)");
}

// --- Graphs --------------------------------------------------------------------------------------

Graph::Graph(Graph&& o) noexcept
    : graph_(std::exchange(o.graph_, nullptr)), exec_(std::exchange(o.exec_, nullptr)), nodes_(std::exchange(o.nodes_, 0)) {}

Graph& Graph::operator=(Graph&& o) noexcept {
  if (this != &o) {
    reset();
    graph_ = std::exchange(o.graph_, nullptr);
    exec_ = std::exchange(o.exec_, nullptr);
    nodes_ = std::exchange(o.nodes_, 0);
  }
  return *this;
}

Graph::~Graph() { reset(); }

void Graph::reset() noexcept {
  if (exec_) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) (void)cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
  nodes_ = 0;
}

void Graph::begin_capture() {
  // Global mode: a call that would synchronise or allocate in this process while capturing fails,
  // instead of silently leaving work out of the graph.
  check(cudaStreamBeginCapture(internal::stream(), cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
}

Graph Graph::end_capture() {
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(internal::stream(), &g), "cudaStreamEndCapture");
  Graph out;
  out.graph_ = g;
  std::size_t n = 0;
  check(cudaGraphGetNodes(g, nullptr, &n), "cudaGraphGetNodes");
  out.nodes_ = n;
  cudaGraphExec_t e = nullptr;
  check(cudaGraphInstantiate(&e, g, 0), "cudaGraphInstantiate");
  out.exec_ = e;
  check(cudaGraphUpload(e, internal::stream()), "cudaGraphUpload");
  return out;
}

void Graph::abort_capture() noexcept {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(state().stream, &st) != cudaSuccess || st == cudaStreamCaptureStatusNone) {
    (void)cudaGetLastError();
    return;
  }
  cudaGraph_t g = nullptr;
  if (cudaStreamEndCapture(state().stream, &g) == cudaSuccess && g) (void)cudaGraphDestroy(g);
  (void)cudaGetLastError();
}

void Graph::launch() const {
  if (!exec_) throw std::logic_error("cuda::Graph::launch: an empty graph");
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), internal::stream()), "cudaGraphLaunch");
}

// --- CudaOps: cuBLAS ---------------------------------------------------------------------------

std::size_t CudaOps::blas_workspace_bytes() { return opts().blas_workspace_bytes; }


namespace {
cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }
}  // namespace

void CudaOps::gemm_cm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                      int ldb, float beta, float* c, int ldc, GemmMath math) {
  const cublasComputeType_t compute = math == GemmMath::Bf16   ? CUBLAS_COMPUTE_32F_FAST_16BF
                                      : math == GemmMath::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                               : CUBLAS_COMPUTE_32F;
  check_blas(cublasGemmEx(internal::blas(), op(ta), op(tb), m, n, k, &alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb,
                          &beta, c, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx (float)");
}

void CudaOps::gemm_cm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                      int ldb, double beta, double* c, int ldc, GemmMath) {
  check_blas(cublasDgemm(internal::blas(), op(ta), op(tb), m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc),
             "cublasDgemm");
}

void CudaOps::gemv_cm(int m, int n, float alpha, const float* a, int lda, const float* x, float beta, float* y) {
  check_blas(cublasSgemv(internal::blas(), CUBLAS_OP_N, m, n, &alpha, a, lda, x, 1, &beta, y, 1), "cublasSgemv");
}

void CudaOps::gemv_cm(int m, int n, double alpha, const double* a, int lda, const double* x, double beta, double* y) {
  check_blas(cublasDgemv(internal::blas(), CUBLAS_OP_N, m, n, &alpha, a, lda, x, 1, &beta, y, 1), "cublasDgemv");
}

void CudaOps::add(float* dst, const float* src, std::size_t n) {
  const float one = 1;
  check_blas(cublasSaxpy_64(internal::blas(), static_cast<std::int64_t>(n), &one, src, 1, dst, 1), "cublasSaxpy");
}

void CudaOps::add(double* dst, const double* src, std::size_t n) {
  const double one = 1;
  check_blas(cublasDaxpy_64(internal::blas(), static_cast<std::int64_t>(n), &one, src, 1, dst, 1), "cublasDaxpy");
}

// dst = 1 * dst + 1 * src, column-major [cols x rows] (in place: C = A, ldc = lda, no transpose).
void CudaOps::add_rows(float* dst, std::size_t dst_stride, const float* src, std::size_t src_stride, std::size_t rows,
                       std::size_t cols) {
  if (rows == 0 || cols == 0) return;
  const float one = 1;
  check_blas(cublasSgeam(internal::blas(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(cols), static_cast<int>(rows), &one,
                         dst, static_cast<int>(dst_stride), &one, src, static_cast<int>(src_stride), dst,
                         static_cast<int>(dst_stride)),
             "cublasSgeam");
}

void CudaOps::add_rows(double* dst, std::size_t dst_stride, const double* src, std::size_t src_stride,
                       std::size_t rows, std::size_t cols) {
  if (rows == 0 || cols == 0) return;
  const double one = 1;
  check_blas(cublasDgeam(internal::blas(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(cols), static_cast<int>(rows), &one,
                         dst, static_cast<int>(dst_stride), &one, src, static_cast<int>(src_stride), dst,
                         static_cast<int>(dst_stride)),
             "cublasDgeam");
}

}  // namespace membptt::cuda
