// Position-sensitive axial attention: multi-threaded CPU kernels (at::parallel_for).
//
// Work is split over groups of 4 to 32 sequences (of B * heads). Within a group the
// loop runs over query rows l outside and the group's sequences inside: the relative
// position rows of query l (shared by all sequences) are loaded once per register block
// of 4 (AVX-512) or 2 sequences and the partial results stay in registers:
// - similarities: for a block of sequences and one vector of keys, the three terms are
//   accumulated over the depth (keys padded to a multiple of 16 in transposed [depth,
//   keys] copies of the keys / encodings);
// - retrieval: for a block of sequences and one vector of channels, sum_m p[m] row[m] is
//   accumulated over the keys.
// Nothing of size [B, H, L, M] is stored. The backward recomputes the probabilities of a
// row the same way (bit-identical, from the saved row max and sum), then scatters the
// gradients: query rows and the key / value rows of the group are private to the task;
// the relative-position gradients, shared by all sequences, are accumulated over the
// group's sequences in registers and added to one buffer per chunk of groups (at most one
// chunk per thread), reduced at the end.
//
// Unlike the post-processing kernels this file lets the compiler contract a * b + c into
// FMAs (see the pragma below): results are not bit-identical to the PyTorch reference but
// within float rounding of it (the reference itself sums in BLAS's order).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>

#include "axial_attention.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

// Hot loops are compiled for AVX-512 and AVX2 + FMA as well as the baseline ISA; the best
// version is picked at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__) && \
    __GNUC__ >= 11
#define AXIAL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AXIAL_CLONES
#endif

#if defined(__GNUC__)
#define AXIAL_INLINE inline __attribute__((always_inline))
#else
#define AXIAL_INLINE inline
#endif


namespace deeplab_zoo::axial {
namespace {

// ---- vectors ----------------------------------------------------------------------------------
// Register blocks are written with fixed-size vectors of 64 bytes (16 floats / 8 doubles):
// GCC / Clang vector extensions, lowered to one AVX-512, two AVX2 or four SSE registers
// (the blocks keep their accumulators in registers, which plain arrays do not reliably).

constexpr int64_t kVecBytes = 64;
template <typename T>
constexpr int64_t kLanes = kVecBytes / static_cast<int64_t>(sizeof(T));

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
#else
template <typename T>
struct Vec {
  T v[kLanes<T>] = {};
  Vec& operator+=(const Vec& o) {
    for (int64_t j = 0; j < kLanes<T>; ++j) v[j] += o.v[j];
    return *this;
  }
  friend Vec operator+(Vec a, const Vec& b) { return a += b; }
  friend Vec operator*(T s, Vec a) {
    for (int64_t j = 0; j < kLanes<T>; ++j) a.v[j] *= s;
    return a;
  }
  friend Vec operator*(Vec a, const Vec& b) {
    for (int64_t j = 0; j < kLanes<T>; ++j) a.v[j] *= b.v[j];
    return a;
  }
};
#endif

template <typename T>
AXIAL_INLINE Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
AXIAL_INLINE void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

constexpr int64_t kKeyPad = 16;  // key rows are padded to a multiple of this (>= kLanes)
constexpr int64_t kGroup = 32;   // most sequences per task

int64_t padded_keys(int64_t keys) { return (keys + kKeyPad - 1) / kKeyPad * kKeyPad; }

// Multiply-adds below which a task is not worth handing to another thread.
constexpr int64_t kMinTaskWork = int64_t{1} << 18;

// Rough multiply-adds of one sequence (forward).
int64_t sequence_work(const Problem& p) {
  return std::max<int64_t>(1, p.query_length * p.key_length * (p.key_depth + p.value_depth));
}

// Sequences per task: large groups amortise streaming the relative encodings of each query
// (read once per group), small ones balance the threads: 4 to kGroup, aiming at >= 4 groups
// per thread.
int64_t group_size(const Problem& p) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return std::clamp<int64_t>(p.sequences() / (4 * threads), 4, kGroup);
}

// Sequences per register block: 4 with 32 vector registers (AVX-512), else 2.
int seq_block_size() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512f") ? 4 : 2;
#else
  return 2;
#endif
}

template <int N>
using Seqs = std::integral_constant<int, N>;

// Calls fn(s0, Seqs<NS>{}) over `count` sequences in register blocks of `block` (4 or 2),
// then of 2 and 1.
template <typename Fn>
void for_seq_blocks(int64_t count, int block, Fn&& fn) {
  int64_t s = 0;
  if (block >= 4) {
    for (; s + 4 <= count; s += 4) fn(s, Seqs<4>{});
  }
  for (; s + 2 <= count; s += 2) fn(s, Seqs<2>{});
  for (; s < count; ++s) fn(s, Seqs<1>{});
}

constexpr int seq_index(int ns) { return ns == 1 ? 0 : (ns == 2 ? 1 : 2); }

// Raw pointers of one call; all tensors contiguous. S = B * heads sequences, sequence
// i = b * heads + h. Retrieved terms (and their gradients) are [B, L, heads, dv].
template <typename T>
struct Args {
  const T* query = nullptr;        // [S, L, dk]
  const T* key = nullptr;          // [S, M, dk]
  const T* value = nullptr;        // [S, M, dv]
  const T* query_rpe = nullptr;    // [L, M, dk]
  const T* key_rpe = nullptr;      // [L, M, dk]
  const T* value_rpe = nullptr;    // [L, M, dv]
  const T* scale = nullptr;        // [T, heads]
  const T* shift = nullptr;        // [T, heads]
};

// src [rows, cols] -> dst [cols, rows_padded] (rows beyond `rows` zero).
template <typename T>
void transpose_padded(const T* __restrict src, int64_t rows, int64_t cols, int64_t rows_padded,
                      T* __restrict dst) {
  for (int64_t c = 0; c < cols; ++c) {
    T* __restrict out = dst + c * rows_padded;
    for (int64_t r = 0; r < rows; ++r) out[r] = src[r * cols + c];
    for (int64_t r = rows; r < rows_padded; ++r) out[r] = T(0);
  }
}

// ---- key-vectorised kernels (register blocks: sequences x one vector of keys) ----------------

// For NS sequences s and the keys of one vector at m0, accumulated over d < depth:
//   c_s[m] = q_s[d] kT_s[d, m],  q_s[m] = q_s[d] rqT[d, m],  k_s[m] = kT_s[d, m] rkT[d, m].
template <typename T, int NS, bool C, bool Q, bool K>
AXIAL_CLONES void similarity_rows(const T* const* q, const T* const* kt, const T* rqt,
                                  const T* rkt, int64_t depth, int64_t mp, T* const* out_c,
                                  T* const* out_q, T* const* out_k) {
  for (int64_t m0 = 0; m0 < mp; m0 += kLanes<T>) {
    Vec<T> ac[NS] = {}, aq[NS] = {}, ak[NS] = {};
    for (int64_t d = 0; d < depth; ++d) {
      const int64_t off = d * mp + m0;
      const Vec<T> rq = Q ? vload(rqt + off) : Vec<T>{};
      const Vec<T> rk = K ? vload(rkt + off) : Vec<T>{};
      for (int s = 0; s < NS; ++s) {
        const T qd = q[s][d];
        if constexpr (C || K) {
          const Vec<T> kr = vload(kt[s] + off);
          if constexpr (C) ac[s] += qd * kr;
          if constexpr (K) ak[s] += kr * rk;
        }
        if constexpr (Q) aq[s] += qd * rq;
      }
    }
    for (int s = 0; s < NS; ++s) {
      if constexpr (C) vstore(out_c[s] + m0, ac[s]);
      if constexpr (Q) vstore(out_q[s] + m0, aq[s]);
      if constexpr (K) vstore(out_k[s] + m0, ak[s]);
    }
  }
}

template <typename T>
using SimilarityRows = void (*)(const T* const*, const T* const*, const T*, const T*, int64_t,
                                int64_t, T* const*, T* const*, T* const*);

template <typename T, int NS>
SimilarityRows<T> pick_similarity_rows(const Problem& p) {
  const int code = (p.content ? 4 : 0) | (p.query_rpe ? 2 : 0) | (p.key_rpe ? 1 : 0);
  switch (code) {
    case 1: return &similarity_rows<T, NS, false, false, true>;
    case 2: return &similarity_rows<T, NS, false, true, false>;
    case 3: return &similarity_rows<T, NS, false, true, true>;
    case 4: return &similarity_rows<T, NS, true, false, false>;
    case 5: return &similarity_rows<T, NS, true, false, true>;
    case 6: return &similarity_rows<T, NS, true, true, false>;
    default: return &similarity_rows<T, NS, true, true, true>;
  }
}

// dp_s[m] = sum_d a_s[d] vT_s[d, m] + b_s[d] rvT[d, m] (d < depth) for NS sequences.
template <typename T, int NS, bool A, bool B>
AXIAL_CLONES void dprob_rows(const T* const* a, const T* const* vt, const T* const* b,
                             const T* rvt, int64_t depth, int64_t mp, T* const* out) {
  for (int64_t m0 = 0; m0 < mp; m0 += kLanes<T>) {
    Vec<T> acc_a[NS] = {}, acc_b[NS] = {};
    for (int64_t d = 0; d < depth; ++d) {
      const int64_t off = d * mp + m0;
      const Vec<T> rv = B ? vload(rvt + off) : Vec<T>{};
      for (int s = 0; s < NS; ++s) {
        if constexpr (A) acc_a[s] += a[s][d] * vload(vt[s] + off);
        if constexpr (B) acc_b[s] += b[s][d] * rv;
      }
    }
    for (int s = 0; s < NS; ++s) vstore(out[s] + m0, acc_a[s] + acc_b[s]);
  }
}

template <typename T>
using DprobRows = void (*)(const T* const*, const T* const*, const T* const*, const T*, int64_t,
                           int64_t, T* const*);

template <typename T, int NS>
DprobRows<T> pick_dprob_rows(const Problem& p) {
  if (p.retrieve_content && p.value_rpe) return &dprob_rows<T, NS, true, true>;
  if (p.retrieve_content) return &dprob_rows<T, NS, true, false>;
  return &dprob_rows<T, NS, false, true>;
}

// ---- channel-vectorised kernels ---------------------------------------------------------------

// For NS sequences, over keys m < count:
//   SUM:  out_a[s] = sum_m wa_s[m] ra_s[m, :] + wb_s[m] rb[m, :]
//   else: out_a[s] = sum_m wa_s[m] ra_s[m, :],  out_b[s] = sum_m wb_s[m] rb[m, :]
// (ra_s per-sequence [count, depth] rows, rb shared rows), accumulated in registers one
// vector of channels at a time (the last depth % lanes channels one by one).
template <typename T, int NS, bool A, bool B, bool SUM>
AXIAL_CLONES void weighted_sum_rows(const T* const* wa, const T* const* ra, const T* const* wb,
                                    const T* rb, int64_t count, int64_t depth,
                                    T* const* out_a, T* const* out_b) {
  int64_t c0 = 0;
  for (; c0 + kLanes<T> <= depth; c0 += kLanes<T>) {
    Vec<T> acc_a[NS] = {}, acc_b[NS] = {};
    for (int64_t m = 0; m < count; ++m) {
      const Vec<T> rbm = B ? vload(rb + m * depth + c0) : Vec<T>{};
      for (int s = 0; s < NS; ++s) {
        if constexpr (A) acc_a[s] += wa[s][m] * vload(ra[s] + m * depth + c0);
        if constexpr (B) (SUM ? acc_a : acc_b)[s] += wb[s][m] * rbm;
      }
    }
    for (int s = 0; s < NS; ++s) {
      if constexpr (A || SUM) vstore(out_a[s] + c0, acc_a[s]);
      if constexpr (B && !SUM) vstore(out_b[s] + c0, acc_b[s]);
    }
  }
  for (; c0 < depth; ++c0) {
    for (int s = 0; s < NS; ++s) {
      T acc_a = 0, acc_b = 0;
      for (int64_t m = 0; m < count; ++m) {
        if constexpr (A) acc_a += wa[s][m] * ra[s][m * depth + c0];
        if constexpr (B) (SUM ? acc_a : acc_b) += wb[s][m] * rb[m * depth + c0];
      }
      if constexpr (A || SUM) out_a[s][c0] = acc_a;
      if constexpr (B && !SUM) out_b[s][c0] = acc_b;
    }
  }
}

template <typename T>
using WeightedSumRows = void (*)(const T* const*, const T* const*, const T* const*, const T*,
                                 int64_t, int64_t, T* const*, T* const*);

// The retrieval of the forward: out_c[s] = sum_m p_s[m] v_s[m], out_r[s] = sum_m p_s[m] rv[m].
template <typename T, int NS>
WeightedSumRows<T> pick_retrieval_rows(const Problem& p) {
  if (p.retrieve_content && p.value_rpe) return &weighted_sum_rows<T, NS, true, true, false>;
  if (p.retrieve_content) return &weighted_sum_rows<T, NS, true, false, false>;
  return &weighted_sum_rows<T, NS, false, true, false>;
}

// The query gradient: dq[s] = sum_m ec_s[m] k_s[m] + eq_s[m] rq[m] (nullptr: neither term).
template <typename T, int NS>
WeightedSumRows<T> pick_query_grad_rows(const Problem& p) {
  if (p.content && p.query_rpe) return &weighted_sum_rows<T, NS, true, true, true>;
  if (p.content) return &weighted_sum_rows<T, NS, true, false, true>;
  if (p.query_rpe) return &weighted_sum_rows<T, NS, false, true, true>;
  return nullptr;
}

// Gradient rows shared by the sequences of a group (relative positions of one query):
//   Y:  rows[m, :] += sum_{s < NS} w_s[m] y_s[m, :]
//   !Y: rows[m, :] += sum_{s < NS} w_s[m] x_s[:]
// accumulated over s in registers, four rows and one vector of channels at a time.
template <typename T, int NS, bool Y>
AXIAL_CLONES void scatter_shared(const T* const* w, const T* const* x, int64_t count,
                                 int64_t depth, T* rows) {
  constexpr int64_t kRows = 4;
  int64_t c0 = 0;
  for (; c0 + kLanes<T> <= depth; c0 += kLanes<T>) {
    Vec<T> xv[NS];
    if constexpr (!Y) {
      for (int s = 0; s < NS; ++s) xv[s] = vload(x[s] + c0);
    }
    int64_t m = 0;
    for (; m + kRows <= count; m += kRows) {
      Vec<T> acc[kRows];
      for (int64_t r = 0; r < kRows; ++r) acc[r] = vload(rows + (m + r) * depth + c0);
      for (int s = 0; s < NS; ++s) {
        for (int64_t r = 0; r < kRows; ++r) {
          acc[r] += w[s][m + r] * (Y ? vload(x[s] + (m + r) * depth + c0) : xv[s]);
        }
      }
      for (int64_t r = 0; r < kRows; ++r) vstore(rows + (m + r) * depth + c0, acc[r]);
    }
    for (; m < count; ++m) {
      Vec<T> acc = vload(rows + m * depth + c0);
      for (int s = 0; s < NS; ++s) {
        acc += w[s][m] * (Y ? vload(x[s] + m * depth + c0) : xv[s]);
      }
      vstore(rows + m * depth + c0, acc);
    }
  }
  for (; c0 < depth; ++c0) {
    for (int64_t m = 0; m < count; ++m) {
      T acc = rows[m * depth + c0];
      for (int s = 0; s < NS; ++s) acc += w[s][m] * (Y ? x[s][m * depth + c0] : x[s][c0]);
      rows[m * depth + c0] = acc;
    }
  }
}

// Key gradients of ns sequences: out_s[m, :] += wa_s[m] x_s[:] + wb_s[m] rb[m, :]
// (x_s the sequence's query row, rb the shared key-encoding rows of the query).
template <typename T, bool A, bool B>
AXIAL_CLONES void scatter_keys(int ns, const T* const* wa, const T* const* x, const T* const* wb,
                               const T* rb, int64_t count, int64_t depth, T* const* out) {
  for (int64_t m = 0; m < count; ++m) {
    const T* __restrict rbm = B ? rb + m * depth : nullptr;
    for (int s = 0; s < ns; ++s) {
      T* __restrict o = out[s] + m * depth;
      const T* __restrict xs = A ? x[s] : nullptr;
      const T a = A ? wa[s][m] : T(0);
      const T b = B ? wb[s][m] : T(0);
      for (int64_t d = 0; d < depth; ++d) {
        if constexpr (A && B) {
          o[d] += a * xs[d] + b * rbm[d];
        } else if constexpr (A) {
          o[d] += a * xs[d];
        } else {
          o[d] += b * rbm[d];
        }
      }
    }
  }
}

// rows[m, :] += w[m] x[:]  (rank-1 update of [count, depth]).
template <typename T>
AXIAL_CLONES void add_outer(const T* __restrict w, const T* __restrict x, int64_t count,
                            int64_t depth, T* __restrict rows) {
  for (int64_t m = 0; m < count; ++m) {
    const T wm = w[m];
    T* __restrict r = rows + m * depth;
    for (int64_t d = 0; d < depth; ++d) r[d] += wm * x[d];
  }
}

// ---- row-wise helpers -------------------------------------------------------------------------

// out[m] = exp(x[m] - offset). float: a vectorisable Cephes-style expf (range reduction by
// ln 2 in two parts, degree-5 polynomial, 2**n through the exponent bits; ~1 ulp, like the
// vectorised exp of PyTorch's softmax) for arguments in [-87, 88] (clamped: exp(-87) ~
// 1.6e-38 stands in for smaller values, which only ever meet sums >= 1 or 1 + exp(.) here);
// double: std::exp.
AXIAL_CLONES void exp_row(const float* x, float offset, int64_t n, float* out) {
  for (int64_t m = 0; m < n; ++m) {
    float v = x[m] - offset;
    v = v < -87.0f ? -87.0f : v;  // NaN stays NaN
    v = v > 88.0f ? 88.0f : v;
    // n = round(v / ln 2) by the 1.5 * 2**23 trick (std::floor does not vectorise).
    const float fx = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = v - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    const float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(fx) + 127) * (int32_t{1} << 23);
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    out[m] = y * scale;
  }
}

void exp_row(const double* x, double offset, int64_t n, double* out) {
  for (int64_t m = 0; m < n; ++m) out[m] = std::exp(x[m] - offset);
}

constexpr int64_t kBlock = 16;  // partial sums of the row reductions

// sum_m x[m] (in kBlock partial sums, so that it vectorises).
template <typename T, typename Acc = T>
AXIAL_CLONES Acc sum_row(const T* __restrict x, int64_t n) {
  Acc part[kBlock] = {};
  int64_t m = 0;
  for (; m + kBlock <= n; m += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) part[j] += Acc(x[m + j]);
  }
  Acc total = 0;
  for (; m < n; ++m) total += Acc(x[m]);
  for (int64_t j = 0; j < kBlock; ++j) total += part[j];
  return total;
}

// sum_m x[m] y[m] in double.
template <typename T>
AXIAL_CLONES double dot_row(const T* __restrict x, const T* __restrict y, int64_t n) {
  double part[kBlock] = {};
  int64_t m = 0;
  for (; m + kBlock <= n; m += kBlock) {
    for (int64_t j = 0; j < kBlock; ++j) part[j] += double(x[m + j]) * double(y[m + j]);
  }
  double total = 0;
  for (; m < n; ++m) total += double(x[m]) * double(y[m]);
  for (int64_t j = 0; j < kBlock; ++j) total += part[j];
  return total;
}

// Term indices into scale / shift [T, heads].
struct Terms {
  int64_t content = -1, query_rpe = -1, key_rpe = -1;
  explicit Terms(const Problem& p) {
    int64_t t = 0;
    if (p.content) content = t++;
    if (p.query_rpe) query_rpe = t++;
    if (p.key_rpe) key_rpe = t++;
  }
};

// logits = sum over the used terms, in the order content, query-rpe, key-rpe, of
// term * scale + shift (the reference's normalise-then-sum order).
template <typename T>
void combine_terms(const Problem& p, const Terms& terms, const T* scale, const T* shift, int64_t h,
                   int64_t keys, const T* ac, const T* aq, const T* ak, T* logits) {
  bool first = true;
  auto add = [&](int64_t t, const T* term) {
    if (t < 0) return;
    const T s = scale[t * p.heads + h], b = shift[t * p.heads + h];
    if (first) {
      for (int64_t m = 0; m < keys; ++m) logits[m] = term[m] * s + b;
    } else {
      for (int64_t m = 0; m < keys; ++m) logits[m] = logits[m] + (term[m] * s + b);
    }
    first = false;
  };
  add(terms.content, ac);
  add(terms.query_rpe, aq);
  add(terms.key_rpe, ak);
}

// In place: logits -> softmax probabilities; returns (max, sum of exp(logit - max)).
template <typename T>
std::pair<T, T> softmax_row(T* x, int64_t keys) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t m = 0; m < keys; ++m) mx = (x[m] > mx || std::isnan(x[m])) ? x[m] : mx;
  exp_row(x, mx, keys, x);
  const T sum = sum_row<T>(x, keys);
  const T inv = T(1) / sum;
  for (int64_t m = 0; m < keys; ++m) x[m] *= inv;
  return {mx, sum};
}

// In place: probabilities from logits with a saved (max, sum), as softmax_row computed them.
template <typename T>
void softmax_row_saved(T* x, int64_t keys, T mx, T sum) {
  exp_row(x, mx, keys, x);
  const T inv = T(1) / sum;
  for (int64_t m = 0; m < keys; ++m) x[m] *= inv;
}

template <typename T>
void sigmoid_row(T* x, int64_t keys) {
  for (int64_t m = 0; m < keys; ++m) x[m] = -x[m];
  exp_row(x, T(0), keys, x);
  for (int64_t m = 0; m < keys; ++m) x[m] = T(1) / (T(1) + x[m]);
}

// ---- per-group state --------------------------------------------------------------------------

// Per-task scratch: transposed keys / values of a group, the transposed relative encodings
// of the current query and five rows per sequence.
template <typename T>
struct Scratch {
  at::Tensor storage;
  T* key_t = nullptr;    // [kGroup, dk, Mp]
  T* value_t = nullptr;  // [kGroup, dv, Mp] (backward)
  T* rq_t = nullptr;     // [dk, Mp]: query_rpe[l] transposed
  T* rk_t = nullptr;     // [dk, Mp]: key_rpe[l] transposed
  T* rv_t = nullptr;     // [dv, Mp]: value_rpe[l] transposed (backward)
  T* rows = nullptr;     // [kGroup, 5, Mp]: content, query-rpe, key-rpe terms, prob, dprob
  int64_t dk = 0, dv = 0, mp = 0;

  Scratch(const Problem& p, int64_t mp_, bool backward, const at::TensorOptions& options)
      : dk(p.key_depth), dv(p.value_depth), mp(mp_) {
    const int64_t key_t_size = (p.content || p.key_rpe) ? kGroup * dk * mp : 0;
    const int64_t value_t_size = (backward && p.retrieve_content) ? kGroup * dv * mp : 0;
    const int64_t rq_size = p.query_rpe ? dk * mp : 0, rk_size = p.key_rpe ? dk * mp : 0;
    const int64_t rv_size = (backward && p.value_rpe) ? dv * mp : 0;
    storage = at::empty(
        {key_t_size + value_t_size + rq_size + rk_size + rv_size + kGroup * 5 * mp}, options);
    key_t = storage.data_ptr<T>();
    value_t = key_t + key_t_size;
    rq_t = value_t + value_t_size;
    rk_t = rq_t + rq_size;
    rv_t = rk_t + rk_size;
    rows = rv_t + rv_size;
  }
  T* kt(int64_t s) const { return key_t + s * dk * mp; }
  T* vt(int64_t s) const { return value_t + s * dv * mp; }
  T* ac(int64_t s) const { return rows + (s * 5 + 0) * mp; }
  T* aq(int64_t s) const { return rows + (s * 5 + 1) * mp; }
  T* ak(int64_t s) const { return rows + (s * 5 + 2) * mp; }
  T* prob(int64_t s) const { return rows + (s * 5 + 3) * mp; }
  T* dprob(int64_t s) const { return rows + (s * 5 + 4) * mp; }
};

template <typename T>
void load_group(const Problem& p, const Args<T>& a, bool backward, int64_t first, int64_t last,
                Scratch<T>& s) {
  const int64_t keys = p.key_length, dk = p.key_depth, dv = p.value_depth;
  for (int64_t i = first; i < last; ++i) {
    if (p.content || p.key_rpe) {
      transpose_padded(a.key + i * keys * dk, keys, dk, s.mp, s.kt(i - first));
    }
    if (backward && p.retrieve_content) {
      transpose_padded(a.value + i * keys * dv, keys, dv, s.mp, s.vt(i - first));
    }
  }
}

// Transposes the relative encodings of query l into the scratch (once per group and query:
// M x depth copies against the group's sequences x M x depth multiply-adds).
template <typename T>
void load_query_rpe(const Problem& p, const Args<T>& a, bool backward, int64_t l,
                    Scratch<T>& s) {
  const int64_t keys = p.key_length, dk = p.key_depth, dv = p.value_depth;
  if (p.query_rpe) transpose_padded(a.query_rpe + l * keys * dk, keys, dk, s.mp, s.rq_t);
  if (p.key_rpe) transpose_padded(a.key_rpe + l * keys * dk, keys, dk, s.mp, s.rk_t);
  if (backward && p.value_rpe) {
    transpose_padded(a.value_rpe + l * keys * dv, keys, dv, s.mp, s.rv_t);
  }
}

// Kernels picked once per call, for register blocks of 1, 2 and 4 sequences.
template <typename T>
struct Kernels {
  SimilarityRows<T> similarity[3];
  DprobRows<T> dprob[3];
  WeightedSumRows<T> retrieval[3];
  WeightedSumRows<T> query_grad[3];
  int block = seq_block_size();
  explicit Kernels(const Problem& p)
      : similarity{pick_similarity_rows<T, 1>(p), pick_similarity_rows<T, 2>(p),
                   pick_similarity_rows<T, 4>(p)},
        dprob{pick_dprob_rows<T, 1>(p), pick_dprob_rows<T, 2>(p), pick_dprob_rows<T, 4>(p)},
        retrieval{pick_retrieval_rows<T, 1>(p), pick_retrieval_rows<T, 2>(p),
                  pick_retrieval_rows<T, 4>(p)},
        query_grad{pick_query_grad_rows<T, 1>(p), pick_query_grad_rows<T, 2>(p),
                   pick_query_grad_rows<T, 4>(p)} {}
};

// Similarity terms of query l for sequences [first + s0, first + s0 + NS).
template <typename T, int NS>
void similarity_block_rows(const Problem& p, const Args<T>& a, const Kernels<T>& kernels,
                           const Scratch<T>& s, int64_t first, int64_t s0, int64_t l) {
  const int64_t dk = p.key_depth, mp = s.mp, length = p.query_length;
  const T* q[NS];
  const T* kt[NS];
  T* oc[NS];
  T* oq[NS];
  T* ok[NS];
  for (int j = 0; j < NS; ++j) {
    q[j] = a.query + ((first + s0 + j) * length + l) * dk;
    kt[j] = s.kt(s0 + j);
    oc[j] = s.ac(s0 + j);
    oq[j] = s.aq(s0 + j);
    ok[j] = s.ak(s0 + j);
  }
  kernels.similarity[seq_index(NS)](q, kt, s.rq_t, s.rk_t, dk, mp, oc, oq, ok);
}

// ---- forward ----------------------------------------------------------------------------------

template <typename T>
void forward_kernel(const Problem& p, const Args<T>& a, const at::TensorOptions& options,
                    T* out_content, T* out_rpe, T* stats) {
  const int64_t seqs = p.sequences(), length = p.query_length, keys = p.key_length;
  const int64_t dv = p.value_depth, mp = padded_keys(keys), heads = p.heads;
  const int64_t group_seqs = group_size(p);
  const int64_t groups = (seqs + group_seqs - 1) / group_seqs;
  const Terms terms(p);
  const Kernels<T> kernels(p);
  T* stat_max = stats;
  T* stat_sum = stats + seqs * length;

  const int64_t grain =
      std::max<int64_t>(1, kMinTaskWork / (group_seqs * sequence_work(p)));
  at::parallel_for(0, groups, grain, [&](int64_t group_begin, int64_t group_end) {
    Scratch<T> s(p, mp, /*backward=*/false, options);
    for (int64_t group = group_begin; group < group_end; ++group) {
      const int64_t first = group * group_seqs;
      const int64_t count = std::min(seqs, first + group_seqs) - first;
      load_group(p, a, false, first, first + count, s);
      for (int64_t l = 0; l < length; ++l) {
        load_query_rpe(p, a, false, l, s);
        for_seq_blocks(count, kernels.block, [&](int64_t s0, auto ns) {
          similarity_block_rows<T, decltype(ns)::value>(p, a, kernels, s, first, s0, l);
        });
        for (int64_t j = 0; j < count; ++j) {
          const int64_t i = first + j, row = i * length + l;
          T* prob = s.prob(j);
          combine_terms(p, terms, a.scale, a.shift, i % heads, keys, s.ac(j), s.aq(j), s.ak(j),
                        prob);
          if (p.activation == Activation::kSoftmax) {
            const auto [mx, sum] = softmax_row(prob, keys);
            stat_max[row] = mx;
            stat_sum[row] = sum;
          } else {
            sigmoid_row(prob, keys);
            stat_max[row] = T(0);
            stat_sum[row] = T(0);
          }
        }
        for_seq_blocks(count, kernels.block, [&](int64_t s0, auto ns) {
          constexpr int NS = decltype(ns)::value;
          const T* w[NS];
          const T* v[NS];
          T* oc[NS];
          T* orp[NS];
          for (int j = 0; j < NS; ++j) {
            const int64_t i = first + s0 + j;
            const int64_t out_row = ((i / heads * length + l) * heads + i % heads) * dv;
            w[j] = s.prob(s0 + j);
            v[j] = a.value + i * keys * dv;
            oc[j] = p.retrieve_content ? out_content + out_row : nullptr;
            orp[j] = p.value_rpe ? out_rpe + out_row : nullptr;
          }
          const T* rv = p.value_rpe ? a.value_rpe + l * keys * dv : nullptr;
          kernels.retrieval[seq_index(NS)](w, v, w, rv, keys, dv, p.retrieve_content ? oc : orp,
                                             orp);
        });
      }
    }
  });
}

// ---- backward ---------------------------------------------------------------------------------

template <typename T>
struct Grads {
  T* query = nullptr;       // [S, L, dk]
  T* key = nullptr;         // [S, M, dk] (zeroed)
  T* value = nullptr;       // [S, M, dv] (zeroed)
  T* query_rpe = nullptr;   // [chunks, L, M, dk] (zeroed)
  T* key_rpe = nullptr;     // [chunks, L, M, dk] (zeroed)
  T* value_rpe = nullptr;   // [chunks, L, M, dv] (zeroed)
  double* scale = nullptr;  // [S, T] (zeroed)
  double* shift = nullptr;  // [S] (zeroed)
};

template <typename T>
void backward_kernel(const Problem& p, const Args<T>& a, const at::TensorOptions& options,
                     const T* grad_content, const T* grad_rpe, const T* stats, int64_t chunks,
                     const Grads<T>& g) {
  const int64_t seqs = p.sequences(), length = p.query_length, keys = p.key_length;
  const int64_t dk = p.key_depth, dv = p.value_depth, mp = padded_keys(keys), heads = p.heads;
  const int64_t group_seqs = group_size(p);
  const int64_t groups = (seqs + group_seqs - 1) / group_seqs;
  const int64_t num_terms = p.num_similarities();
  const Terms terms(p);
  const Kernels<T> kernels(p);
  const T* stat_max = stats;
  const T* stat_sum = stats + seqs * length;

  at::parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    Scratch<T> s(p, mp, /*backward=*/true, options);
    const T* go_c[kGroup] = {};
    const T* go_r[kGroup] = {};
    const T* q_rows[kGroup] = {};
    const T* key_rows[kGroup] = {};
    const T* w_c[kGroup] = {};
    const T* w_q[kGroup] = {};
    const T* w_k[kGroup] = {};
    const T* w_p[kGroup] = {};
    T* grad_keys[kGroup] = {};
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      T* grad_rq = p.query_rpe ? g.query_rpe + chunk * length * keys * dk : nullptr;
      T* grad_rk = p.key_rpe ? g.key_rpe + chunk * length * keys * dk : nullptr;
      T* grad_rv = p.value_rpe ? g.value_rpe + chunk * length * keys * dv : nullptr;
      const int64_t group_begin = chunk * groups / chunks;
      const int64_t group_end = (chunk + 1) * groups / chunks;
      for (int64_t group = group_begin; group < group_end; ++group) {
        const int64_t first = group * group_seqs;
        const int64_t count = std::min(seqs, first + group_seqs) - first;
        load_group(p, a, true, first, first + count, s);
        for (int64_t j = 0; j < count; ++j) {
          const int64_t i = first + j;
          key_rows[j] = a.key + i * keys * dk;
          grad_keys[j] = g.key + i * keys * dk;
          w_c[j] = s.ac(j);
          w_q[j] = s.aq(j);
          w_k[j] = s.ak(j);
          w_p[j] = s.prob(j);
        }
        for (int64_t l = 0; l < length; ++l) {
          load_query_rpe(p, a, true, l, s);
          // 1. Probabilities (recomputed) and d loss / d probability of every sequence.
          for_seq_blocks(count, kernels.block, [&](int64_t s0, auto ns) {
            similarity_block_rows<T, decltype(ns)::value>(p, a, kernels, s, first, s0, l);
          });
          for (int64_t j = 0; j < count; ++j) {
            const int64_t i = first + j, row = i * length + l;
            const int64_t out_row = ((i / heads * length + l) * heads + i % heads) * dv;
            q_rows[j] = a.query + row * dk;
            go_c[j] = p.retrieve_content ? grad_content + out_row : nullptr;
            go_r[j] = p.value_rpe ? grad_rpe + out_row : nullptr;
            T* prob = s.prob(j);
            combine_terms(p, terms, a.scale, a.shift, i % heads, keys, s.ac(j), s.aq(j),
                          s.ak(j), prob);
            if (p.activation == Activation::kSoftmax) {
              softmax_row_saved(prob, keys, stat_max[row], stat_sum[row]);
            } else {
              sigmoid_row(prob, keys);
            }
          }
          for_seq_blocks(count, kernels.block, [&](int64_t s0, auto ns) {
            constexpr int NS = decltype(ns)::value;
            const T* vt[NS];
            T* out[NS];
            for (int j = 0; j < NS; ++j) {
              vt[j] = s.vt(s0 + j);
              out[j] = s.dprob(s0 + j);
            }
            kernels.dprob[seq_index(NS)](go_c + s0, vt, go_r + s0, s.rv_t, dv, mp, out);
          });
          // 2. d loss / d logit, the scale / shift gradients, and per term
          //    d loss / d term = dlogit * scale (in place of the term).
          for (int64_t j = 0; j < count; ++j) {
            const int64_t i = first + j;
            const int64_t h = i % heads;
            const T* prob = s.prob(j);
            T* dlogit = s.dprob(j);
            if (p.activation == Activation::kSoftmax) {
              // softmax backward: p (dp - sum_m p dp)
              const T delta = static_cast<T>(dot_row(prob, dlogit, keys));
              for (int64_t m = 0; m < keys; ++m) dlogit[m] = prob[m] * (dlogit[m] - delta);
            } else {
              for (int64_t m = 0; m < keys; ++m) {
                dlogit[m] = dlogit[m] * (T(1) - prob[m]) * prob[m];
              }
            }
            g.shift[i] += sum_row<T, double>(dlogit, keys);
            auto term_grad = [&](int64_t t, T* term) {
              if (t < 0) return;
              g.scale[i * num_terms + t] += dot_row(dlogit, term, keys);
              const T sc = a.scale[t * heads + h];
              for (int64_t m = 0; m < keys; ++m) term[m] = dlogit[m] * sc;
            };
            term_grad(terms.content, s.ac(j));
            term_grad(terms.query_rpe, s.aq(j));
            term_grad(terms.key_rpe, s.ak(j));
          }
          // 3. Query rows, key and value rows of the group's sequences.
          const T* rq_l = p.query_rpe ? a.query_rpe + l * keys * dk : nullptr;
          const T* rk_l = p.key_rpe ? a.key_rpe + l * keys * dk : nullptr;
          for_seq_blocks(count, kernels.block, [&](int64_t s0, auto ns) {
            constexpr int NS = decltype(ns)::value;
            const auto fn = kernels.query_grad[seq_index(NS)];
            T* out[NS];
            for (int j = 0; j < NS; ++j) out[j] = g.query + ((first + s0 + j) * length + l) * dk;
            if (fn != nullptr) {
              fn(w_c + s0, key_rows + s0, w_q + s0, rq_l, keys, dk, out, out);
            } else {
              for (int j = 0; j < NS; ++j) std::fill(out[j], out[j] + dk, T(0));
            }
          });
          const int ns = static_cast<int>(count);
          if (p.content && p.key_rpe) {
            scatter_keys<T, true, true>(ns, w_c, q_rows, w_k, rk_l, keys, dk, grad_keys);
          } else if (p.content) {
            scatter_keys<T, true, false>(ns, w_c, q_rows, w_k, rk_l, keys, dk, grad_keys);
          } else if (p.key_rpe) {
            scatter_keys<T, false, true>(ns, w_c, q_rows, w_k, rk_l, keys, dk, grad_keys);
          }
          if (p.retrieve_content) {
            for (int64_t j = 0; j < count; ++j) {
              add_outer(s.prob(j), go_c[j], keys, dv, g.value + (first + j) * keys * dv);
            }
          }
          // 4. Relative-position rows of query l (this chunk's partial sums).
          for_seq_blocks(count, kernels.block, [&](int64_t s0, auto block) {
            constexpr int NS = decltype(block)::value;
            if (p.value_rpe) {
              scatter_shared<T, NS, false>(w_p + s0, go_r + s0, keys, dv, grad_rv + l * keys * dv);
            }
            if (p.query_rpe) {
              scatter_shared<T, NS, false>(w_q + s0, q_rows + s0, keys, dk,
                                           grad_rq + l * keys * dk);
            }
            if (p.key_rpe) {
              scatter_shared<T, NS, true>(w_k + s0, key_rows + s0, keys, dk,
                                          grad_rk + l * keys * dk);
            }
          });
        }
      }
    }
  });
}

// ---- ATen wrappers ----------------------------------------------------------------------------

template <typename T>
Args<T> make_args(const Problem& p, const Inputs& in) {
  Args<T> a;
  a.query = in.query.const_data_ptr<T>();
  a.key = in.key.const_data_ptr<T>();
  a.value = in.value.const_data_ptr<T>();
  if (p.query_rpe) a.query_rpe = in.query_rpe->const_data_ptr<T>();
  if (p.key_rpe) a.key_rpe = in.key_rpe->const_data_ptr<T>();
  if (p.value_rpe) a.value_rpe = in.value_rpe->const_data_ptr<T>();
  a.scale = in.scale.const_data_ptr<T>();
  a.shift = in.shift.const_data_ptr<T>();
  return a;
}

template <typename T>
T* data_or_null(at::Tensor& t, bool present) {
  return present ? t.data_ptr<T>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> axial_attention_cpu(
    const at::Tensor& query_in, const at::Tensor& key_in, const at::Tensor& value_in,
    const std::optional<at::Tensor>& query_rpe_in, const std::optional<at::Tensor>& key_rpe_in,
    const std::optional<at::Tensor>& value_rpe_in, const at::Tensor& scale_in,
    const at::Tensor& shift_in, bool use_content_similarity, bool retrieve_value_content,
    c10::string_view activation) {
  const Problem p = check_forward(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                  value_rpe_in, scale_in, shift_in, use_content_similarity,
                                  retrieve_value_content, activation);
  const Inputs in = contiguous_inputs(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                      value_rpe_in, scale_in, shift_in);
  ForwardOutputs out = forward_outputs(p, in.query.options());
  if (out.finished) return {out.content, out.rpe, out.stats};
  AT_DISPATCH_FLOATING_TYPES(in.query.scalar_type(), "axial_attention_cpu", [&] {
    forward_kernel<scalar_t>(p, make_args<scalar_t>(p, in), in.query.options(),
                             data_or_null<scalar_t>(out.content, p.retrieve_content),
                             data_or_null<scalar_t>(out.rpe, p.value_rpe),
                             out.stats.data_ptr<scalar_t>());
  });
  return {out.content, out.rpe, out.stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
axial_attention_backward_cpu(
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
  const Inputs in = contiguous_inputs(query_in, key_in, value_in, query_rpe_in, key_rpe_in,
                                      value_rpe_in, scale_in, shift_in);
  at::Tensor grad_content = grad_content_in.contiguous(), grad_rpe = grad_rpe_in.contiguous();
  const at::Tensor stats = stats_in.contiguous();
  const auto options = in.query.options();
  const int64_t seqs = p.sequences(), length = p.query_length, keys = p.key_length;
  const int64_t num_terms = p.num_similarities();

  at::Tensor grad_q = at::empty(in.query.sizes(), options);
  at::Tensor grad_k = at::zeros(in.key.sizes(), options);
  at::Tensor grad_v = at::zeros(in.value.sizes(), options);
  at::Tensor grad_scale_seq = at::zeros({seqs, num_terms}, options.dtype(at::kDouble));
  at::Tensor grad_shift_seq = at::zeros({seqs}, options.dtype(at::kDouble));
  const int64_t group_seqs = group_size(p);
  const int64_t groups = (seqs + group_seqs - 1) / group_seqs;
  const int64_t chunks = std::max<int64_t>(
      1, std::min({int64_t{at::get_num_threads()}, groups,
                   seqs * sequence_work(p) / kMinTaskWork}));
  auto rpe_grad = [&](bool used, int64_t depth) {
    if (!used) return at::empty({0}, options);
    return at::zeros(chunks > 1 ? std::vector<int64_t>{chunks, length, keys, depth}
                                : std::vector<int64_t>{length, keys, depth},
                     options);
  };
  at::Tensor grad_rq = rpe_grad(p.query_rpe, p.key_depth);
  at::Tensor grad_rk = rpe_grad(p.key_rpe, p.key_depth);
  at::Tensor grad_rv = rpe_grad(p.value_rpe, p.value_depth);

  if (seqs > 0 && length > 0 && keys > 0) {
    AT_DISPATCH_FLOATING_TYPES(in.query.scalar_type(), "axial_attention_backward_cpu", [&] {
      const Args<scalar_t> a = make_args<scalar_t>(p, in);
      Grads<scalar_t> g;
      g.query = grad_q.data_ptr<scalar_t>();
      g.key = grad_k.data_ptr<scalar_t>();
      g.value = grad_v.data_ptr<scalar_t>();
      g.query_rpe = data_or_null<scalar_t>(grad_rq, p.query_rpe);
      g.key_rpe = data_or_null<scalar_t>(grad_rk, p.key_rpe);
      g.value_rpe = data_or_null<scalar_t>(grad_rv, p.value_rpe);
      g.scale = grad_scale_seq.data_ptr<double>();
      g.shift = grad_shift_seq.data_ptr<double>();
      backward_kernel<scalar_t>(p, a, options,
                                data_or_null<scalar_t>(grad_content, p.retrieve_content),
                                data_or_null<scalar_t>(grad_rpe, p.value_rpe),
                                stats.const_data_ptr<scalar_t>(), chunks, g);
    });
  } else {
    grad_q.zero_();
  }
  if (chunks > 1) {
    if (p.query_rpe) grad_rq = grad_rq.sum(0);
    if (p.key_rpe) grad_rk = grad_rk.sum(0);
    if (p.value_rpe) grad_rv = grad_rv.sum(0);
  }
  // [B * heads, T] -> [T, heads]; every shift gets the sum of the logit gradients.
  const at::Tensor grad_scale = grad_scale_seq.view({p.batch, p.heads, num_terms})
                                    .sum(0)
                                    .t()
                                    .contiguous()
                                    .to(in.query.scalar_type());
  const at::Tensor grad_shift = grad_shift_seq.view({p.batch, p.heads})
                                    .sum(0)
                                    .unsqueeze(0)
                                    .expand({num_terms, p.heads})
                                    .contiguous()
                                    .to(in.query.scalar_type());
  return {grad_q, grad_k, grad_v, grad_rq, grad_rk, grad_rv, grad_scale, grad_shift};
}

}  // namespace
}  // namespace deeplab_zoo::axial

TORCH_LIBRARY_IMPL(deeplab_zoo, CPU, m) {
  m.impl("axial_attention", &deeplab_zoo::axial::axial_attention_cpu);
  m.impl("axial_attention_backward", &deeplab_zoo::axial::axial_attention_backward_cpu);
}
