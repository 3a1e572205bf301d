// --device for the commands that run a network: cpu, cuda or cuda:N; cuda only in a build with
// the CUDA backend (membptt-cuda). Compiled into each binary with its own MEMBPTT_HAVE_CUDA.
#pragma once
#include <stdexcept>
#include <string>

#include "cli_common.hpp"
#include "membptt/cuda/device_spec.hpp"

namespace membptt::cli {

inline cuda::DeviceSpec device_of(const std::string& text) {
  cuda::DeviceSpec d;
  try {
    d = cuda::parse_device_spec(text);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
#ifndef MEMBPTT_HAVE_CUDA
  if (d.cuda) throw UsageError("device '" + text + "' is not allowed: this membptt was built without CUDA (allowed: cpu)");
#endif
  return d;
}

}  // namespace membptt::cli
