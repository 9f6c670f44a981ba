// Position-sensitive axial attention: op schemas and the argument checks shared by the CPU
// and CUDA kernels. See axial_attention.h for the math.
#include "axial_attention.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <string>

namespace deeplab_zoo::axial {
namespace {

void check_float(const char* name, const at::Tensor& t, const at::Tensor& query) {
  TORCH_CHECK_VALUE(t.scalar_type() == query.scalar_type(), name, " must have the dtype of query (",
                    query.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == query.device(), name, " is on ", t.device(),
                    " but query is on ", query.device(), "; all inputs must be on one device");
}

void check_rpe(const char* name, const std::optional<at::Tensor>& rpe, const at::Tensor& query,
               int64_t length, int64_t key_length, int64_t depth) {
  if (!rpe.has_value()) return;
  const at::Tensor& t = *rpe;
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == length && t.size(1) == key_length &&
                        t.size(2) == depth,
                    name, " must be [L, M, depth] = [", length, ", ", key_length, ", ", depth,
                    "], got shape ", t.sizes());
  check_float(name, t, query);
}

}  // namespace

Problem check_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                      const std::optional<at::Tensor>& query_rpe,
                      const std::optional<at::Tensor>& key_rpe,
                      const std::optional<at::Tensor>& value_rpe,
                      const at::Tensor& similarity_scale, const at::Tensor& similarity_shift,
                      bool use_content_similarity, bool retrieve_value_content,
                      c10::string_view activation) {
  TORCH_CHECK_VALUE(query.dim() == 4, "query must be [B, heads, L, key_depth], got shape ",
                    query.sizes());
  TORCH_CHECK_VALUE(query.scalar_type() == at::kFloat || query.scalar_type() == at::kDouble,
                    "axial_attention supports float32 and float64, got ", query.scalar_type());
  Problem p;
  p.batch = query.size(0);
  p.heads = query.size(1);
  p.query_length = query.size(2);
  p.key_depth = query.size(3);
  TORCH_CHECK_VALUE(key.dim() == 4 && key.size(0) == p.batch && key.size(1) == p.heads &&
                        key.size(3) == p.key_depth,
                    "key must be [B, heads, M, key_depth] with B, heads, key_depth = ", p.batch,
                    ", ", p.heads, ", ", p.key_depth, " (those of query), got shape ",
                    key.sizes());
  p.key_length = key.size(2);
  TORCH_CHECK_VALUE(value.dim() == 4 && value.size(0) == p.batch && value.size(1) == p.heads &&
                        value.size(2) == p.key_length,
                    "value must be [B, heads, M, value_depth] with B, heads, M = ", p.batch, ", ",
                    p.heads, ", ", p.key_length, ", got shape ", value.sizes());
  p.value_depth = value.size(3);
  check_float("key", key, query);
  check_float("value", value, query);
  check_rpe("query_rpe", query_rpe, query, p.query_length, p.key_length, p.key_depth);
  check_rpe("key_rpe", key_rpe, query, p.query_length, p.key_length, p.key_depth);
  check_rpe("value_rpe", value_rpe, query, p.query_length, p.key_length, p.value_depth);
  p.content = use_content_similarity;
  p.query_rpe = query_rpe.has_value();
  p.key_rpe = key_rpe.has_value();
  p.retrieve_content = retrieve_value_content;
  p.value_rpe = value_rpe.has_value();
  TORCH_CHECK_VALUE(p.num_similarities() > 0,
                    "axial attention needs at least one similarity term");
  TORCH_CHECK_VALUE(p.num_retrieved() > 0,
                    "axial attention must retrieve value content or value rpe");
  if (activation == "softmax") {
    p.activation = Activation::kSoftmax;
  } else if (activation == "sigmoid") {
    p.activation = Activation::kSigmoid;
  } else {
    TORCH_CHECK_VALUE(false, "activation must be 'softmax' or 'sigmoid', got '",
                      std::string(activation), "'");
  }
  const int64_t terms = p.num_similarities();
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"similarity_scale",
                                                                          similarity_scale},
                                {"similarity_shift", similarity_shift}}) {
    TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == terms && t.size(1) == p.heads, name,
                      " must be [num_similarities, heads] = [", terms, ", ", p.heads,
                      "], got shape ", t.sizes());
    check_float(name, t, query);
  }
  return p;
}

void check_backward(const Problem& p, const at::Tensor& query, const at::Tensor& grad_content,
                    const at::Tensor& grad_rpe, const at::Tensor& softmax_stats) {
  const auto check_shape = [&](const char* name, const at::Tensor& t, bool present) {
    const auto expected = retrieved_shape(p, present);
    TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(expected), name, " must have shape ",
                      at::IntArrayRef(expected), ", got ", t.sizes());
    check_float(name, t, query);
  };
  check_shape("grad_content", grad_content, p.retrieve_content);
  check_shape("grad_rpe", grad_rpe, p.value_rpe);
  const auto stats = stats_shape(p);
  TORCH_CHECK_VALUE(softmax_stats.sizes() == at::IntArrayRef(stats),
                    "softmax_stats must have shape ", at::IntArrayRef(stats), ", got ",
                    softmax_stats.sizes());
  check_float("softmax_stats", softmax_stats, query);
}

namespace {

std::optional<at::Tensor> contiguous(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return std::nullopt;
  return t->contiguous();
}

}  // namespace

Inputs contiguous_inputs(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                         const std::optional<at::Tensor>& query_rpe,
                         const std::optional<at::Tensor>& key_rpe,
                         const std::optional<at::Tensor>& value_rpe,
                         const at::Tensor& similarity_scale, const at::Tensor& similarity_shift) {
  return {query.contiguous(),           key.contiguous(),        value.contiguous(),
          contiguous(query_rpe),        contiguous(key_rpe),     contiguous(value_rpe),
          similarity_scale.contiguous(), similarity_shift.contiguous()};
}

ForwardOutputs forward_outputs(const Problem& p, const at::TensorOptions& options) {
  ForwardOutputs out{at::empty(retrieved_shape(p, p.retrieve_content), options),
                     at::empty(retrieved_shape(p, p.value_rpe), options),
                     at::empty(stats_shape(p), options)};
  if (p.sequences() == 0 || p.query_length == 0) {
    out.finished = true;
  } else if (p.key_length == 0) {  // softmax / sigmoid over no keys: nothing retrieved
    out.content.zero_();
    out.rpe.zero_();
    out.stats[0].fill_(-std::numeric_limits<double>::infinity());
    out.stats[1].zero_();
    out.finished = true;
  }
  return out;
}

std::vector<int64_t> retrieved_shape(const Problem& p, bool present) {
  if (!present) return {0};
  return {p.batch, p.query_length, p.heads, p.value_depth};
}

std::vector<int64_t> stats_shape(const Problem& p) {
  return {2, p.batch, p.heads, p.query_length};
}

}  // namespace deeplab_zoo::axial

TORCH_LIBRARY_FRAGMENT(deeplab_zoo, m) {
  m.def("axial_attention(Tensor query, Tensor key, Tensor value, Tensor? query_rpe, "
        "Tensor? key_rpe, Tensor? value_rpe, Tensor similarity_scale, Tensor similarity_shift, "
        "bool use_content_similarity, bool retrieve_value_content, str activation) "
        "-> (Tensor retrieved_content, Tensor retrieved_rpe, Tensor softmax_stats)");
  m.def("axial_attention_backward(Tensor grad_content, Tensor grad_rpe, Tensor query, "
        "Tensor key, Tensor value, Tensor? query_rpe, Tensor? key_rpe, Tensor? value_rpe, "
        "Tensor similarity_scale, Tensor similarity_shift, Tensor softmax_stats, "
        "bool use_content_similarity, "
        "bool retrieve_value_content, str activation) -> (Tensor grad_query, Tensor grad_key, "
        "Tensor grad_value, Tensor grad_query_rpe, Tensor grad_key_rpe, Tensor grad_value_rpe, "
        "Tensor grad_similarity_scale, Tensor grad_similarity_shift)");
}
