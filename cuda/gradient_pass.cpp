// The trainer's CUDA device (include/membptt/cuda/gradient_pass.hpp): passes over CudaOps.
#include "membptt/cuda/gradient_pass.hpp"

namespace membptt::cuda {

std::shared_ptr<const train::GradientDevice> cuda_gradient_device(int index) {
  select_device(index);
  return std::make_shared<const BasicGradientDevice<CudaOps>>("cuda:" + std::to_string(index) + " (" +
                                                              device_description() + ")");
}

}  // namespace membptt::cuda
