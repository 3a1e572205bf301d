// Between files and networks: a model spec to a NetShape, named tensors to a Params buffer and back.
#pragma once
#include <string>

#include "membptt/cells/params.hpp"
#include "membptt/io/model_file.hpp"
#include "membptt/io/safetensors.hpp"

namespace membptt {

NetShape net_shape(const ModelSpec& spec, int batch);

// Fills every view of `p` from the tensor of the same name (prefix + name), converting F32/F64.
// Throws std::runtime_error naming a missing tensor or a wrong shape.
template <class T>
void load_params(const SafeTensors& file, Params<T>& p, const std::string& prefix = "");

// Adds every view of `p` as a tensor named prefix + name, in the dtype of T.
template <class T>
void add_params(SafeTensorsWriter& w, const Params<T>& p, const std::string& prefix = "");

// Adds every view of `p` under the name `model` has for it in its file (model.file_name), in the
// dtype of T: gradients of a PyTorch state dict keep its names ("lstm.weight_ih_l0", "fc.bias").
template <class T>
void add_params(SafeTensorsWriter& w, const Params<T>& p, const ModelFile& model);

}  // namespace membptt
