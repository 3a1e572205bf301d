#include "membptt/io/params_io.hpp"

#include <algorithm>

namespace membptt {

NetShape net_shape(const ModelSpec& spec, int batch) {
  NetShape s;
  s.cell = parse_cell(spec.cell);
  s.input_size = spec.input_size;
  s.hidden_size = spec.hidden_size;
  s.num_layers = spec.num_layers;
  s.output_size = spec.output_size;
  s.batch = batch;
  s.bias = spec.bias;
  s.proj_size = spec.proj_size;
  s.bidirectional = spec.bidirectional;
  s.nonlinearity = parse_nonlinearity(spec.nonlinearity);
  return s;
}

template <class T>
void load_params(const SafeTensors& file, Params<T>& p, const std::string& prefix) {
  for (const ParamView& v : p.views()) {
    const std::string name = prefix + v.name;
    std::span<T> dst = p.view(v.name);
    if constexpr (sizeof(T) == sizeof(float)) {
      const auto src = file.read_f32(name, v.shape);
      std::copy(src.begin(), src.end(), dst.begin());
    } else {
      const auto src = file.read_f64(name, v.shape);
      std::copy(src.begin(), src.end(), dst.begin());
    }
  }
}

template <class T>
void add_params(SafeTensorsWriter& w, const Params<T>& p, const std::string& prefix) {
  for (const ParamView& v : p.views()) {
    const std::span<const T> src = p.view(v.name);
    if constexpr (sizeof(T) == sizeof(float))
      w.add_f32(prefix + v.name, v.shape, src);
    else
      w.add_f64(prefix + v.name, v.shape, src);
  }
}

template <class T>
void add_params(SafeTensorsWriter& w, const Params<T>& p, const ModelFile& model) {
  for (const ParamView& v : p.views()) {
    const std::span<const T> src = p.view(v.name);
    if constexpr (sizeof(T) == sizeof(float))
      w.add_f32(model.file_name(v.name), v.shape, src);
    else
      w.add_f64(model.file_name(v.name), v.shape, src);
  }
}

template void load_params<float>(const SafeTensors&, Params<float>&, const std::string&);
template void load_params<double>(const SafeTensors&, Params<double>&, const std::string&);
template void add_params<float>(SafeTensorsWriter&, const Params<float>&, const std::string&);
template void add_params<double>(SafeTensorsWriter&, const Params<double>&, const std::string&);
template void add_params<float>(SafeTensorsWriter&, const Params<float>&, const ModelFile&);
template void add_params<double>(SafeTensorsWriter&, const Params<double>&, const ModelFile&);

}  // namespace membptt
