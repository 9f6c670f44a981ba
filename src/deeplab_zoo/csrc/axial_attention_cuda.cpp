// Position-sensitive axial attention: ATen wrappers of the CUDA kernels (checks, allocation)
// registered for the CUDA dispatch key. Built only with CUDA (*_cuda.cpp / *.cu files are
// skipped by CPU-only builds).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "axial_attention.h"
#include "axial_attention_cuda.h"

namespace deeplab_zoo::axial {
namespace {

// Default dynamic shared memory limit (no opt-in).
constexpr int64_t kMaxSharedBytes = 48 * 1024;

cuda::Params make_params(const Problem& p) {
  cuda::Params params;
  params.batch = p.batch;
  params.heads = p.heads;
  params.length = p.query_length;
  params.keys = p.key_length;
  params.key_depth = p.key_depth;
  params.value_depth = p.value_depth;
  params.retrieve_content = p.retrieve_content;
  params.value_rpe = p.value_rpe;
  params.softmax = p.activation == Activation::kSoftmax;
  int term = 0;
  if (p.content) params.term_content = term++;
  if (p.query_rpe) params.term_query_rpe = term++;
  if (p.key_rpe) params.term_key_rpe = term++;
  return params;
}

void check_launch(const cuda::Params& params, int64_t shared_bytes) {
  const int64_t rows = params.batch * params.heads * params.length;
  TORCH_CHECK_VALUE(rows <= std::numeric_limits<int32_t>::max(), "axial_attention (CUDA): ",
                    rows, " query rows are too many for one launch (at most 2**31 - 1)");
  TORCH_CHECK_VALUE(shared_bytes <= kMaxSharedBytes, "axial_attention (CUDA): key depth ",
                    params.key_depth, " / value depth ", params.value_depth,
                    " need more shared memory per block than the kernels use (48 KiB)");
}

template <typename T>
const T* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<T>() : nullptr;
}

template <typename T>
cuda::Inputs<T> make_inputs(const Inputs& in) {
  return {in.query.const_data_ptr<T>(),     in.key.const_data_ptr<T>(),
          in.value.const_data_ptr<T>(),     data_or_null<T>(in.query_rpe),
          data_or_null<T>(in.key_rpe),      data_or_null<T>(in.value_rpe),
          in.scale.const_data_ptr<T>(),     in.shift.const_data_ptr<T>()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> axial_attention_cuda(
    const at::Tensor& query_in, const at::Tensor& key_in, const at::Tensor& value_in,
    const std::optional<at::Tensor>& query_rpe_in, const std::optional<at::Tensor>& key_rpe_in,
    const std::optional<at::Tensor>& value_rpe_in, const at::Tensor& scale_in,
    const at::Tensor& shift_in, bool use_content_similarity, bool retrieve_value_content,
    c10::string_view activation) {
  const Problem p = check_forward(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                  value_rpe_in, scale_in, shift_in, use_content_similarity,
                                  retrieve_value_content, activation);
  const c10::cuda::CUDAGuard guard(query_in.device());
  const cuda::Params params = make_params(p);
  check_launch(params, cuda::forward_shared_bytes(params, query_in.element_size()));
  const Inputs in = contiguous_inputs(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                      value_rpe_in, scale_in, shift_in);
  ForwardOutputs out = forward_outputs(p, in.query.options());
  if (out.finished) return {out.content, out.rpe, out.stats};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(in.query.scalar_type(), "axial_attention_cuda", [&] {
    C10_CUDA_CHECK(cuda::launch_forward<scalar_t>(
        params, make_inputs<scalar_t>(in),
        p.retrieve_content ? out.content.data_ptr<scalar_t>() : nullptr,
        p.value_rpe ? out.rpe.data_ptr<scalar_t>() : nullptr, out.stats.data_ptr<scalar_t>(),
        stream));
  });
  return {out.content, out.rpe, out.stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
axial_attention_backward_cuda(
    const at::Tensor& grad_content_in, const at::Tensor& grad_rpe_in, const at::Tensor& query_in,
    const at::Tensor& key_in, const at::Tensor& value_in,
    const std::optional<at::Tensor>& query_rpe_in, const std::optional<at::Tensor>& key_rpe_in,
    const std::optional<at::Tensor>& value_rpe_in, const at::Tensor& scale_in,
    const at::Tensor& shift_in, const at::Tensor& stats_in, bool use_content_similarity,
    bool retrieve_value_content, c10::string_view activation) {
  const Problem p = check_forward(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                  value_rpe_in, scale_in, shift_in, use_content_similarity,
                                  retrieve_value_content, activation);
  check_backward(p, query_in, grad_content_in, grad_rpe_in, stats_in);
  const c10::cuda::CUDAGuard guard(query_in.device());
  const cuda::Params params = make_params(p);
  check_launch(params, cuda::backward_shared_bytes(params, query_in.element_size()));
  const Inputs in = contiguous_inputs(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                      value_rpe_in, scale_in, shift_in);
  const at::Tensor grad_content = grad_content_in.contiguous();
  const at::Tensor grad_rpe = grad_rpe_in.contiguous();
  const at::Tensor stats = stats_in.contiguous();
  const auto options = in.query.options();
  const int64_t num_terms = p.num_similarities();

  at::Tensor grad_q = at::zeros(in.query.sizes(), options);
  at::Tensor grad_k = at::zeros(in.key.sizes(), options);
  at::Tensor grad_v = at::zeros(in.value.sizes(), options);
  auto rpe_grad = [&](bool used, int64_t depth) {
    return used ? at::zeros({p.query_length, p.key_length, depth}, options)
                : at::empty({0}, options);
  };
  at::Tensor grad_rq = rpe_grad(p.query_rpe, p.key_depth);
  at::Tensor grad_rk = rpe_grad(p.key_rpe, p.key_depth);
  at::Tensor grad_rv = rpe_grad(p.value_rpe, p.value_depth);
  at::Tensor grad_scale = at::zeros({num_terms, p.heads}, options.dtype(at::kDouble));
  at::Tensor grad_shift = at::zeros({p.heads}, options.dtype(at::kDouble));
  if (p.sequences() > 0 && p.query_length > 0 && p.key_length > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(in.query.scalar_type(), "axial_attention_backward_cuda", [&] {
      const cuda::Gradients<scalar_t> grads{
          grad_q.data_ptr<scalar_t>(),
          grad_k.data_ptr<scalar_t>(),
          grad_v.data_ptr<scalar_t>(),
          p.query_rpe ? grad_rq.data_ptr<scalar_t>() : nullptr,
          p.key_rpe ? grad_rk.data_ptr<scalar_t>() : nullptr,
          p.value_rpe ? grad_rv.data_ptr<scalar_t>() : nullptr,
          grad_scale.data_ptr<double>(),
          grad_shift.data_ptr<double>()};
      C10_CUDA_CHECK(cuda::launch_backward<scalar_t>(
          params, make_inputs<scalar_t>(in),
          p.retrieve_content ? grad_content.const_data_ptr<scalar_t>() : nullptr,
          p.value_rpe ? grad_rpe.const_data_ptr<scalar_t>() : nullptr,
          stats.const_data_ptr<scalar_t>(), grads, stream));
    });
  }
  // Every shift gets the sum of the logit gradients.
  return {grad_q,
          grad_k,
          grad_v,
          grad_rq,
          grad_rk,
          grad_rv,
          grad_scale.to(in.query.scalar_type()),
          grad_shift.unsqueeze(0).expand({num_terms, p.heads}).contiguous().to(
              in.query.scalar_type())};
}

}  // namespace
}  // namespace deeplab_zoo::axial

TORCH_LIBRARY_IMPL(deeplab_zoo, CUDA, m) {
  m.impl("axial_attention", &deeplab_zoo::axial::axial_attention_cuda);
  m.impl("axial_attention_backward", &deeplab_zoo::axial::axial_attention_backward_cuda);
}
