// Position-sensitive axial attention: CUDA kernel launchers (plain pointers, no ATen, so that
// axial_attention_cuda.cu compiles quickly for every GPU architecture). The ATen wrappers
// registered for the CUDA dispatch key are in axial_attention_cuda.cpp; the math is in
// axial_attention.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace deeplab_zoo::axial::cuda {

// Sizes and flags of one call (see deeplab_zoo::axial::Problem).
struct Params {
  int64_t batch = 0;  // B (sequences = B * heads, sequence i = b * heads + h)
  int64_t heads = 0;
  int64_t length = 0;  // L (queries)
  int64_t keys = 0;    // M
  int64_t key_depth = 0;
  int64_t value_depth = 0;
  bool retrieve_content = false;
  bool softmax = true;  // else sigmoid
  // Index of each similarity term in scale / shift [T, heads] (-1: term unused).
  int term_content = -1;
  int term_query_rpe = -1;
  int term_key_rpe = -1;
  bool value_rpe = false;
};

// Inputs, all contiguous: query [S, L, dk], key [S, M, dk], value [S, M, dv], encodings
// [L, M, dk] / [L, M, dk] / [L, M, dv] (nullptr when unused), scale / shift [T, heads].
template <typename T>
struct Inputs {
  const T* query;
  const T* key;
  const T* value;
  const T* query_rpe;
  const T* key_rpe;
  const T* value_rpe;
  const T* scale;
  const T* shift;
};

// Outputs [B, L, heads, dv] (nullptr when the term is unused) and softmax_stats [2, S, L].
template <typename T>
cudaError_t launch_forward(const Params& params, const Inputs<T>& inputs, T* retrieved_content,
                           T* retrieved_rpe, T* stats, cudaStream_t stream);

// Gradients: query (written), key / value / encodings (pre-zeroed, accumulated with
// atomics), scale [T, heads] and shift [heads] in double (pre-zeroed, accumulated).
template <typename T>
struct Gradients {
  T* query;
  T* key;
  T* value;
  T* query_rpe;
  T* key_rpe;
  T* value_rpe;
  double* scale;
  double* shift;
};

template <typename T>
cudaError_t launch_backward(const Params& params, const Inputs<T>& inputs,
                            const T* grad_content, const T* grad_rpe, const T* stats,
                            const Gradients<T>& grads, cudaStream_t stream);

// Dynamic shared memory (bytes) of the kernels; the wrappers check it against the limit.
int64_t forward_shared_bytes(const Params& params, int64_t element_size);
int64_t backward_shared_bytes(const Params& params, int64_t element_size);

}  // namespace deeplab_zoo::axial::cuda
