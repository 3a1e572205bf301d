// Internal to membptt_cuda: the stream and handle of the selected device, and error checks.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace membptt::cuda::internal {

cudaStream_t stream();
cublasHandle_t blas();
// Throws std::runtime_error("CUDA error in <what>: <message>") unless e == cudaSuccess.
void check(cudaError_t e, const char* what);
void check_blas(cublasStatus_t s, const char* what);

}  // namespace membptt::cuda::internal
