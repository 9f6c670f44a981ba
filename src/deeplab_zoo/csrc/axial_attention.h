// Position-sensitive axial attention (Axial-DeepLab / MaX-DeepLab): the fused attention
// core, shared declarations of the CPU and CUDA kernels.
//
// Per sequence b (of B * heads) and query l, with T similarity terms and R retrieved terms:
//   logit[m] = sum_t (S_t[l, m] * scale[t, h] + shift[t, h])        (in the order c, q, k)
//     S_c = q_l . k_m,  S_q = q_l . query_rpe[l, m],  S_k = k_m . key_rpe[l, m]
//   p = softmax_m(logit) (or sigmoid(logit))
//   retrieved_content[b, l, h] = sum_m p[m] v_m,
//   retrieved_rpe[b, l, h] = sum_m p[m] value_rpe[l, m]
// i.e. the reference `axial_attention_reference` with its similarity batch norm given as a
// per-term, per-head affine map (`scale`, `shift`); the retrieved terms are returned
// separately so that their batch norm stays outside. Nothing of size [B, H, L, M] is
// stored: the backward recomputes the similarities from the inputs and the per-row
// softmax statistics (max, sum of exponentials) saved by the forward (not even the outputs
// are needed).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace deeplab_zoo::axial {

enum class Activation : int32_t { kSoftmax = 0, kSigmoid = 1 };

// Sizes and flags of one call, checked.
struct Problem {
  int64_t batch = 0;  // sequences (B)
  int64_t heads = 0;  // H
  int64_t query_length = 0;  // L
  int64_t key_length = 0;    // M
  int64_t key_depth = 0;     // dk (per head)
  int64_t value_depth = 0;   // dv (per head)
  bool content = false;          // S_c used
  bool query_rpe = false;        // S_q used
  bool key_rpe = false;          // S_k used
  bool retrieve_content = false; // sum_m p v_m returned
  bool value_rpe = false;        // sum_m p value_rpe[l, m] returned
  Activation activation = Activation::kSoftmax;

  int64_t sequences() const { return batch * heads; }
  int64_t num_similarities() const {
    return int64_t{content} + int64_t{query_rpe} + int64_t{key_rpe};
  }
  int64_t num_retrieved() const { return int64_t{retrieve_content} + int64_t{value_rpe}; }
};

// Validates the forward arguments (ValueError with the offending shape / dtype).
Problem check_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                      const std::optional<at::Tensor>& query_rpe,
                      const std::optional<at::Tensor>& key_rpe,
                      const std::optional<at::Tensor>& value_rpe,
                      const at::Tensor& similarity_scale, const at::Tensor& similarity_shift,
                      bool use_content_similarity, bool retrieve_value_content,
                      c10::string_view activation);

// Validates the extra arguments of the backward (gradients, saved statistics).
void check_backward(const Problem& problem, const at::Tensor& query,
                    const at::Tensor& grad_content, const at::Tensor& grad_rpe,
                    const at::Tensor& softmax_stats);

// The tensor arguments made contiguous (the kernels index them densely).
struct Inputs {
  at::Tensor query, key, value;
  std::optional<at::Tensor> query_rpe, key_rpe, value_rpe;
  at::Tensor scale, shift;
};
Inputs contiguous_inputs(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                         const std::optional<at::Tensor>& query_rpe,
                         const std::optional<at::Tensor>& key_rpe,
                         const std::optional<at::Tensor>& value_rpe,
                         const at::Tensor& similarity_scale, const at::Tensor& similarity_shift);

// The forward's outputs, allocated. `finished` when there is nothing for a kernel to do
// (no sequences or queries; or no keys, where nothing is retrieved): the outputs are then
// already final.
struct ForwardOutputs {
  at::Tensor content, rpe, stats;
  bool finished = false;
};
ForwardOutputs forward_outputs(const Problem& problem, const at::TensorOptions& options);

// Shape of a retrieved term: [B, L, H, dv] (query-major: the batch norm of a retrieved term,
// per head and channel over batch and queries, is then a plain batch norm of
// [B * L, H * dv]); an absent term is an empty [0] tensor.
std::vector<int64_t> retrieved_shape(const Problem& problem, bool present);
// Shape of the `softmax_stats` output: [2, B, H, L] (row max, row sum of exp(logit - max)).
std::vector<int64_t> stats_shape(const Problem& problem);

}  // namespace deeplab_zoo::axial
