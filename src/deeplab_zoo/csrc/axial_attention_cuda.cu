// Position-sensitive axial attention: CUDA kernels (launchers declared in
// axial_attention_cuda.h, called by the ATen wrappers in axial_attention_cuda.cpp).
//
// One block of kThreads threads per query row (sequence i, query l). The forward makes two
// passes over the keys, threads over keys: the first finds the row max and the sum of
// exponentials (online, then a block reduction), the second recomputes each logit, turns
// it into a probability and, a chunk of kThreads keys at a time, accumulates the retrieved
// channels (threads over channels, in shared memory). Nothing of size [B, H, L, M] is
// stored. The backward recomputes the probabilities from the saved (max, sum) (a first
// pass over the keys for the softmax's row constant sum_m p dp, a second one for the
// gradients); the key,
// value and relative-position gradients, shared between rows, are accumulated with
// atomicAdd (so their float rounding depends on the order of the blocks); the query row
// gradient is accumulated in shared memory, the scale / shift gradients in double.
// Products are fused multiply-adds (explicit fma, whatever --fmad says), as in the CPU
// kernels; results agree with the PyTorch reference to float rounding.
#include <cmath>
#include <cstdint>

#include "axial_attention_cuda.h"

namespace deeplab_zoo::axial::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float mad(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double mad(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ T negative_infinity() {
  return -static_cast<T>(INFINITY);
}

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return static_cast<T>(NAN);
}

// The logit of key m for query row (i, l) (query row in shared memory) and its three
// similarity terms (content, query-rpe, key-rpe; 0 where unused).
template <typename T>
__device__ T row_logit(const Params& p, const Inputs<T>& x, int64_t i, int64_t h, int64_t l,
                       int64_t m, const T* q_row, T terms[3]) {
  const int64_t dk = p.key_depth;
  const bool use_key = p.term_content >= 0 || p.term_key_rpe >= 0;
  const T* key_row = x.key + (i * p.keys + m) * dk;
  const T* rq_row = p.term_query_rpe >= 0 ? x.query_rpe + (l * p.keys + m) * dk : nullptr;
  const T* rk_row = p.term_key_rpe >= 0 ? x.key_rpe + (l * p.keys + m) * dk : nullptr;
  T sc = 0, sq = 0, sk = 0;
  for (int64_t d = 0; d < dk; ++d) {
    const T qd = q_row[d];
    if (use_key) {
      const T kd = key_row[d];
      if (p.term_content >= 0) sc = mad(qd, kd, sc);
      if (rk_row != nullptr) sk = mad(kd, rk_row[d], sk);
    }
    if (rq_row != nullptr) sq = mad(qd, rq_row[d], sq);
  }
  terms[0] = sc;
  terms[1] = sq;
  terms[2] = sk;
  // sum over the used terms, in the order content, query-rpe, key-rpe, of term * scale + shift
  T logit = 0;
  bool first = true;
  const int index[3] = {p.term_content, p.term_query_rpe, p.term_key_rpe};
  for (int t = 0; t < 3; ++t) {
    if (index[t] < 0) continue;
    const int64_t at = index[t] * p.heads + h;
    const T value = mad(terms[t], x.scale[at], x.shift[at]);
    logit = first ? value : logit + value;
    first = false;
  }
  return logit;
}

// d loss / d p[m] = dO_content . v_m + dO_rpe . value_rpe[l, m] (output gradients in shared
// memory).
template <typename T>
__device__ T row_dprob(const Params& p, const Inputs<T>& x, int64_t i, int64_t l, int64_t m,
                       const T* go_c, const T* go_r) {
  const int64_t dv = p.value_depth;
  const T* v_row = x.value + (i * p.keys + m) * dv;
  const T* rv_row = p.value_rpe ? x.value_rpe + (l * p.keys + m) * dv : nullptr;
  T dp = 0;
  for (int64_t d = 0; d < dv; ++d) {
    if (p.retrieve_content) dp = mad(go_c[d], v_row[d], dp);
    if (rv_row != nullptr) dp = mad(go_r[d], rv_row[d], dp);
  }
  return dp;
}

// (m1, s1) <- the (max, sum of exp(x - max)) of the union of two sets of logits.
template <typename T>
__device__ __forceinline__ void softmax_combine(T& m1, T& s1, T m2, T s2) {
  const T m = m2 > m1 ? m2 : m1;
  T s = 0;
  if (s1 != T(0)) s += s1 * exp_of(m1 - m);  // an empty set has s == 0 (and max -inf)
  if (s2 != T(0)) s += s2 * exp_of(m2 - m);
  m1 = m;
  s1 = s;
}

// Adds logit x to a running (max, sum of exp(logit - max)); NaN poisons the sum.
template <typename T>
__device__ __forceinline__ void softmax_add(T& mx, T& sum, T x) {
  if (x > mx) {
    sum = sum * exp_of(mx - x) + T(1);
    mx = x;
  } else if (x == x) {
    if (x != negative_infinity<T>()) sum += exp_of(x - mx);
  } else {
    sum = quiet_nan<T>();
  }
}

// Block-wide sum (all threads get the result). `scratch` holds kWarps values.
template <typename T>
__device__ T block_sum(T value, T* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kWarps; ++w) total += scratch[w];
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Params p, Inputs<T> x, T* out_content, T* out_rpe, T* stats) {
  extern __shared__ unsigned char shared_raw[];
  T* shared = reinterpret_cast<T*>(shared_raw);
  const int64_t dk = p.key_depth, dv = p.value_depth, keys = p.keys;
  T* q_row = shared;           // [dk]
  T* prob = q_row + dk;        // [kThreads]
  T* acc_c = prob + kThreads;  // [dv]
  T* acc_r = acc_c + dv;       // [dv]
  __shared__ T red_max[kWarps];
  __shared__ T red_sum[kWarps];

  const int64_t row = blockIdx.x;  // i * L + l
  const int64_t i = row / p.length, l = row % p.length;
  const int64_t h = i % p.heads, b = i / p.heads;
  const int tid = threadIdx.x;
  for (int64_t d = tid; d < dk; d += kThreads) q_row[d] = x.query[row * dk + d];
  for (int64_t d = tid; d < dv; d += kThreads) {
    acc_c[d] = 0;
    acc_r[d] = 0;
  }
  __syncthreads();

  T terms[3];
  T mx = negative_infinity<T>(), sum = 0;
  if (p.softmax) {
    for (int64_t m = tid; m < keys; m += kThreads) {
      softmax_add(mx, sum, row_logit(p, x, i, h, l, m, q_row, terms));
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const T m2 = __shfl_down_sync(0xffffffffu, mx, offset);
      const T s2 = __shfl_down_sync(0xffffffffu, sum, offset);
      softmax_combine(mx, sum, m2, s2);
    }
    if (tid % 32 == 0) {
      red_max[tid / 32] = mx;
      red_sum[tid / 32] = sum;
    }
    __syncthreads();
    mx = red_max[0];
    sum = red_sum[0];
    for (int w = 1; w < kWarps; ++w) softmax_combine(mx, sum, red_max[w], red_sum[w]);
    if (tid == 0) {
      stats[row] = mx;
      stats[p.batch * p.heads * p.length + row] = sum;
    }
  } else if (tid == 0) {
    stats[row] = 0;
    stats[p.batch * p.heads * p.length + row] = 0;
  }
  const T inv = T(1) / sum;

  for (int64_t m0 = 0; m0 < keys; m0 += kThreads) {
    const int64_t m = m0 + tid;
    T pm = 0;
    if (m < keys) {
      const T logit = row_logit(p, x, i, h, l, m, q_row, terms);
      pm = p.softmax ? exp_of(logit - mx) * inv : T(1) / (T(1) + exp_of(-logit));
    }
    prob[tid] = pm;
    __syncthreads();
    const int64_t n = keys - m0 < kThreads ? keys - m0 : kThreads;
    for (int64_t d = tid; d < dv; d += kThreads) {
      T ac = acc_c[d], ar = acc_r[d];
      for (int64_t j = 0; j < n; ++j) {
        const T pj = prob[j];
        if (p.retrieve_content) ac = mad(pj, x.value[(i * keys + m0 + j) * dv + d], ac);
        if (p.value_rpe) ar = mad(pj, x.value_rpe[(l * keys + m0 + j) * dv + d], ar);
      }
      acc_c[d] = ac;
      acc_r[d] = ar;
    }
    __syncthreads();
  }
  const int64_t out_row = ((b * p.length + l) * p.heads + h) * dv;
  for (int64_t d = tid; d < dv; d += kThreads) {
    if (p.retrieve_content) out_content[out_row + d] = acc_c[d];
    if (p.value_rpe) out_rpe[out_row + d] = acc_r[d];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(Params p, Inputs<T> x, const T* grad_content, const T* grad_rpe,
                    const T* stats, Gradients<T> g) {
  extern __shared__ unsigned char shared_raw[];
  T* shared = reinterpret_cast<T*>(shared_raw);
  const int64_t dk = p.key_depth, dv = p.value_depth, keys = p.keys;
  T* q_row = shared;              // [dk]
  T* dq_row = q_row + dk;         // [dk]
  T* go_c = dq_row + dk;          // [dv]
  T* go_r = go_c + dv;            // [dv]
  T* e_content = go_r + dv;       // [kThreads]
  T* e_query = e_content + kThreads;  // [kThreads]
  __shared__ T red[kWarps];
  __shared__ double red_double[kWarps];

  const int64_t row = blockIdx.x;  // i * L + l
  const int64_t i = row / p.length, l = row % p.length;
  const int64_t h = i % p.heads, b = i / p.heads;
  const int tid = threadIdx.x;
  const int64_t out_row = ((b * p.length + l) * p.heads + h) * dv;
  for (int64_t d = tid; d < dk; d += kThreads) {
    q_row[d] = x.query[row * dk + d];
    dq_row[d] = 0;
  }
  for (int64_t d = tid; d < dv; d += kThreads) {
    go_c[d] = p.retrieve_content ? grad_content[out_row + d] : T(0);
    go_r[d] = p.value_rpe ? grad_rpe[out_row + d] : T(0);
  }
  __syncthreads();
  const T mx = stats[row];
  const T inv = T(1) / stats[p.batch * p.heads * p.length + row];
  T terms[3];
  // The softmax backward's row constant sum_m p[m] dp[m] (a first pass over the keys).
  T delta = 0;
  if (p.softmax) {
    T part = 0;
    for (int64_t m = tid; m < keys; m += kThreads) {
      const T pm = exp_of(row_logit(p, x, i, h, l, m, q_row, terms) - mx) * inv;
      part = mad(pm, row_dprob(p, x, i, l, m, go_c, go_r), part);
    }
    delta = block_sum(part, red);
  }
  const int index[3] = {p.term_content, p.term_query_rpe, p.term_key_rpe};
  T sc[3];
  for (int t = 0; t < 3; ++t) sc[t] = index[t] >= 0 ? x.scale[index[t] * p.heads + h] : T(0);
  double shift_sum = 0, scale_sum[3] = {0, 0, 0};

  for (int64_t m0 = 0; m0 < keys; m0 += kThreads) {
    const int64_t m = m0 + tid;
    T ec = 0, eq = 0;
    if (m < keys) {
      const T logit = row_logit(p, x, i, h, l, m, q_row, terms);
      const T pm = p.softmax ? exp_of(logit - mx) * inv : T(1) / (T(1) + exp_of(-logit));
      const T dp = row_dprob(p, x, i, l, m, go_c, go_r);
      const T dlogit = p.softmax ? pm * (dp - delta) : dp * (T(1) - pm) * pm;
      shift_sum += static_cast<double>(dlogit);
      for (int t = 0; t < 3; ++t) {
        if (index[t] >= 0) {
          scale_sum[t] += static_cast<double>(dlogit) * static_cast<double>(terms[t]);
        }
      }
      ec = dlogit * sc[0];
      eq = dlogit * sc[1];
      const T ek = dlogit * sc[2];
      const T* key_row = x.key + (i * keys + m) * dk;
      const T* rk_row = p.term_key_rpe >= 0 ? x.key_rpe + (l * keys + m) * dk : nullptr;
      T* grad_key_row = g.key + (i * keys + m) * dk;
      for (int64_t d = 0; d < dk; ++d) {
        if (p.term_content >= 0 || rk_row != nullptr) {
          T update = p.term_content >= 0 ? ec * q_row[d] : T(0);
          if (rk_row != nullptr) update = mad(ek, rk_row[d], update);
          atomicAdd(grad_key_row + d, update);
        }
        if (p.term_query_rpe >= 0) atomicAdd(g.query_rpe + (l * keys + m) * dk + d, eq * q_row[d]);
        if (rk_row != nullptr) atomicAdd(g.key_rpe + (l * keys + m) * dk + d, ek * key_row[d]);
      }
      for (int64_t d = 0; d < dv; ++d) {
        if (p.retrieve_content) atomicAdd(g.value + (i * keys + m) * dv + d, pm * go_c[d]);
        if (p.value_rpe) atomicAdd(g.value_rpe + (l * keys + m) * dv + d, pm * go_r[d]);
      }
    }
    e_content[tid] = ec;
    e_query[tid] = eq;
    __syncthreads();
    const int64_t n = keys - m0 < kThreads ? keys - m0 : kThreads;
    for (int64_t d = tid; d < dk; d += kThreads) {
      T acc = dq_row[d];
      for (int64_t j = 0; j < n; ++j) {
        if (p.term_content >= 0) acc = mad(e_content[j], x.key[(i * keys + m0 + j) * dk + d], acc);
        if (p.term_query_rpe >= 0) {
          acc = mad(e_query[j], x.query_rpe[(l * keys + m0 + j) * dk + d], acc);
        }
      }
      dq_row[d] = acc;
    }
    __syncthreads();
  }
  for (int64_t d = tid; d < dk; d += kThreads) g.query[row * dk + d] = dq_row[d];
  const double shift_total = block_sum(shift_sum, red_double);
  if (tid == 0) atomicAdd(g.shift + h, shift_total);
  for (int t = 0; t < 3; ++t) {
    if (index[t] < 0) continue;
    const double total = block_sum(scale_sum[t], red_double);
    if (tid == 0) atomicAdd(g.scale + index[t] * p.heads + h, total);
  }
}

}  // namespace

int64_t forward_shared_bytes(const Params& params, int64_t element_size) {
  return (params.key_depth + kThreads + 2 * params.value_depth) * element_size;
}

int64_t backward_shared_bytes(const Params& params, int64_t element_size) {
  return (2 * params.key_depth + 2 * params.value_depth + 2 * kThreads) * element_size;
}

template <typename T>
cudaError_t launch_forward(const Params& params, const Inputs<T>& inputs, T* retrieved_content,
                           T* retrieved_rpe, T* stats, cudaStream_t stream) {
  const int64_t rows = params.batch * params.heads * params.length;
  if (rows == 0) return cudaSuccess;
  const size_t shared = static_cast<size_t>(forward_shared_bytes(params, sizeof(T)));
  forward_kernel<T><<<static_cast<unsigned int>(rows), kThreads, shared, stream>>>(
      params, inputs, retrieved_content, retrieved_rpe, stats);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_backward(const Params& params, const Inputs<T>& inputs,
                            const T* grad_content, const T* grad_rpe, const T* stats,
                            const Gradients<T>& grads, cudaStream_t stream) {
  const int64_t rows = params.batch * params.heads * params.length;
  if (rows == 0) return cudaSuccess;
  const size_t shared = static_cast<size_t>(backward_shared_bytes(params, sizeof(T)));
  backward_kernel<T><<<static_cast<unsigned int>(rows), kThreads, shared, stream>>>(
      params, inputs, grad_content, grad_rpe, stats, grads);
  return cudaGetLastError();
}

template cudaError_t launch_forward<float>(const Params&, const Inputs<float>&, float*, float*,
                                           float*, cudaStream_t);
template cudaError_t launch_forward<double>(const Params&, const Inputs<double>&, double*,
                                            double*, double*, cudaStream_t);
template cudaError_t launch_backward<float>(const Params&, const Inputs<float>&, const float*,
                                            const float*, const float*, const Gradients<float>&,
                                            cudaStream_t);
template cudaError_t launch_backward<double>(const Params&, const Inputs<double>&,
                                             const double*, const double*, const double*,
                                             const Gradients<double>&, cudaStream_t);

}  // namespace deeplab_zoo::axial::cuda
