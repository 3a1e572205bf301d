// The CUDA instantiations of the device cells, heads, parameters and executor; state sizes for
// the planner; step-cost calibration on the device.
#include <algorithm>
#include <chrono>
#include <vector>

#include "membptt/cuda/cuda_backend.hpp"
#include "membptt/exec/executor.hpp"

namespace membptt {
template class BasicExecutor<cuda::CudaBackend<float>>;
template class BasicExecutor<cuda::CudaBackend<double>>;
}  // namespace membptt

namespace membptt::cuda {

template class BasicDeviceNet<float, CudaOps>;
template class BasicDeviceNet<double, CudaOps>;
template class BasicDeviceHead<float, CudaOps>;
template class BasicDeviceHead<double, CudaOps>;
template class BasicDeviceParams<float, CudaOps>;
template class BasicDeviceParams<double, CudaOps>;

StateSizes cuda_state_sizes(const NetShape& shape, std::size_t scalar_bytes) {
  return cuda_state_sizes(shape, scalar_bytes, options());
}

StateSizes cuda_state_sizes(const NetShape& shape, std::size_t scalar_bytes, const Options& o) {
  return scalar_bytes == sizeof(float) ? device_state_sizes<float, CudaOps>(shape, o)
                                       : device_state_sizes<double, CudaOps>(shape, o);
}

namespace {

// Median seconds per step of `f` run over `steps` steps, the stream synchronised around each; as
// the executor runs it: replayed from a graph when Options::graphs is on.
template <class F>
double median_per_step(int reps, int steps, F&& f) {
  const auto sync = [] { synchronize(); };
  if (!options().graphs) return median_seconds(reps, std::forward<F>(f), sync) / steps;
  synchronize();
  Graph::begin_capture();
  try {
    f();
  } catch (...) {
    Graph::abort_capture();
    throw;
  }
  const Graph g = Graph::end_capture();
  return median_seconds(reps, [&] { g.launch(); }, sync) / steps;
}

}  // namespace

template <class T>
StepTimes time_steps_cuda(const NetShape& shape, LossKind loss, int reps) {
  CudaRecurrentNet<T> net(shape);
  CudaHead<T> head(shape);
  CudaParams<T> p(shape), g(shape);
  {
    Params<T> hp(shape);
    init_pytorch_default(hp, 1);
    p.upload(hp);
  }
  const int K = net.defer_steps();
  const std::size_t xstep = static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.input_size);
  std::vector<T> hx(xstep * static_cast<std::size_t>(K));
  fill_uniform(std::span<T>(hx), T(1), 2);
  DeviceBuffer<T> x(hx.size()), carry(net.carry_elems()), dcarry(net.carry_elems()), record(net.record_elems());
  upload(x.data(), hx.data(), hx.size());
  DeviceBuffer<std::int64_t> targets(static_cast<std::size_t>(shape.batch));  // zeros: class 0
  DeviceBuffer<T> y(static_cast<std::size_t>(shape.batch) * static_cast<std::size_t>(shape.output_size));
  auto x_at = [&](int k) { return x.data() + static_cast<std::size_t>(k) * xstep; };

  StepTimes t;
  // As in a pass: the input projection by blocks (begin_pass), the recording step writing the cursor.
  t.advance = median_per_step(reps, K, [&] {
    net.begin_pass(x.data(), K);
    for (int k = 0; k < K; ++k) net.advance(p, x_at(k), carry.data(), carry.data());
  });
  t.record = median_per_step(reps, K, [&] {
    net.begin_pass(x.data(), K);
    for (int k = 0; k < K; ++k) net.advance_record(p, x_at(k), carry.data(), record.data(), carry.data());
  });
  net.begin_pass(nullptr, 0);
  t.backward = median_per_step(reps, K, [&] {
    zero_bytes(dcarry.data(), dcarry.bytes());
    for (int k = K - 1; k >= 0; --k) {  // a whole group: its weight-gradient GEMMs are timed too
      T* dh_top = net.top_hidden(dcarry.data());
      if (loss == LossKind::Xent)
        head.step_xent(p, net.top_hidden(net.record_carry_out(record.data())), targets.data(), T(1e-3), dh_top, g);
      net.backward(p, x_at(k), record.data(), dcarry.data(), dcarry.data(), g);
    }
    g.complete();
  });
  (void)head.finish();
  return t;
}

template StepTimes time_steps_cuda<float>(const NetShape&, LossKind, int);
template StepTimes time_steps_cuda<double>(const NetShape&, LossKind, int);

}  // namespace membptt::cuda
