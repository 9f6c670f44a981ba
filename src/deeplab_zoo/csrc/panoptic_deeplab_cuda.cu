// Panoptic-DeepLab post-processing ops: CUDA kernels (launchers declared in
// panoptic_deeplab_cuda.h, called by the ATen wrappers in panoptic_deeplab_cuda.cpp).
//
// Float arithmetic uses the explicitly rounded intrinsics (__fadd_rn, __fmul_rn, ...),
// which are never contracted into FMAs, so every value equals the PyTorch reference's
// (and the CPU kernels') bit for bit.
#include <algorithm>
#include <cstdint>

#include "panoptic_deeplab_cuda.h"

namespace deeplab_zoo::panoptic::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;  // images per launch of the per-image kernels
// Shared memory for the per-block merge statistics (the default limit, no opt-in).
constexpr int64_t kMaxSharedBytes = 48 * 1024;

unsigned int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

__device__ __forceinline__ float positive_infinity() { return __int_as_float(0x7f800000); }

__device__ __forceinline__ float thresholded(float value, float threshold) {
  return value > threshold ? value : 0.0f;
}

// ---- semantic_argmax ----------------------------------------------------------------

__global__ void semantic_argmax_kernel(const float* __restrict__ logits, int64_t classes,
                                       int64_t plane, int64_t total, float tie_threshold,
                                       int32_t* __restrict__ out) {
  for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
    const int64_t n = idx / plane;
    const float* base = logits + n * classes * plane + (idx - n * plane);
    float maximum = base[0];  // amax over classes; NaN propagates as in torch.amax
    for (int64_t c = 1; c < classes; ++c) {
      const float v = base[c * plane];
      maximum = (v > maximum || v != v) ? v : maximum;
    }
    // First class whose softmax rounds to the maximum probability (last by default).
    int32_t pred = static_cast<int32_t>(classes - 1);
    for (int64_t c = classes - 2; c >= 0; --c) {
      if (__fsub_rn(base[c * plane], maximum) >= tie_threshold) pred = static_cast<int32_t>(c);
    }
    out[idx] = pred;
  }
}

// ---- center_heatmap_nms -------------------------------------------------------------
// Max over the k x k window of the zero-padded thresholded map = a 1 x k then a k x 1 max;
// a window reaching past the border includes a padded 0.

__global__ void nms_rows_kernel(const float* __restrict__ heat, int64_t total, int64_t width,
                                float threshold, int64_t pad_begin, int64_t pad_end,
                                float* __restrict__ row_max) {
  for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
    const int64_t row = idx / width, x = idx - row * width;
    const float* in = heat + row * width;
    const int64_t first = x - pad_begin < 0 ? 0 : x - pad_begin;
    const int64_t last = x + pad_end > width - 1 ? width - 1 : x + pad_end;
    float m = (x - pad_begin < 0 || x + pad_end > width - 1) ? 0.0f : -positive_infinity();
    for (int64_t c = first; c <= last; ++c) {
      const float v = thresholded(in[c], threshold);
      m = v > m ? v : m;
    }
    row_max[idx] = m;
  }
}

__global__ void nms_cols_kernel(const float* __restrict__ heat, const float* __restrict__ row_max,
                                int64_t total, int64_t height, int64_t width, float threshold,
                                int64_t pad_begin, int64_t pad_end, float* __restrict__ out) {
  const int64_t plane = height * width;
  for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
    const int64_t n = idx / plane, p = idx - n * plane;
    const int64_t y = p / width, x = p - y * width;
    const int64_t first = y - pad_begin < 0 ? 0 : y - pad_begin;
    const int64_t last = y + pad_end > height - 1 ? height - 1 : y + pad_end;
    float m = (y - pad_begin < 0 || y + pad_end > height - 1) ? 0.0f : -positive_infinity();
    const float* column = row_max + n * plane + x;
    for (int64_t r = first; r <= last; ++r) {
      const float v = column[r * width];
      m = v > m ? v : m;
    }
    const float v = thresholded(heat[idx], threshold);
    out[idx] = m == v ? v : 0.0f;
  }
}

// ---- center_group -------------------------------------------------------------------

__global__ void center_group_kernel(const float* __restrict__ centers,
                                    const float* __restrict__ scores,
                                    const int64_t* __restrict__ num_centers,
                                    const bool* __restrict__ need_all,
                                    const float* __restrict__ offsets,
                                    const bool* __restrict__ thing_mask, int64_t total,
                                    int64_t max_centers, int64_t height, int64_t width,
                                    int32_t* __restrict__ instance,
                                    float* __restrict__ instance_scores) {
  const int64_t plane = height * width;
  for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
    const int64_t n = idx / plane, p = idx - n * plane;
    const int64_t count = num_centers[n];
    const bool is_thing = thing_mask[idx];
    // Outputs are pre-zeroed: no centre, or a non-thing pixel whose score * 0 is +0.
    if (count == 0 || (!is_thing && !need_all[n])) continue;
    const int64_t y = p / width, x = p - y * width;
    const float target_y = __fadd_rn(static_cast<float>(y), offsets[2 * n * plane + p]);
    const float target_x = __fadd_rn(static_cast<float>(x), offsets[(2 * n + 1) * plane + p]);
    const float* image_centers = centers + n * max_centers * 2;
    float best = positive_infinity();
    int64_t nearest = 0;
    for (int64_t k = 0; k < count; ++k) {
      const float a = __fsub_rn(target_y, image_centers[2 * k]);
      const float b = __fsub_rn(target_x, image_centers[2 * k + 1]);
      const float distance = __fsqrt_rn(__fadd_rn(__fmul_rn(a, a), __fmul_rn(b, b)));
      if (distance < best) {  // strict: first centre on ties, 0 if all NaN (like argmin)
        best = distance;
        nearest = k;
      }
    }
    instance[idx] = is_thing ? static_cast<int32_t>(nearest + 1) : 0;
    instance_scores[idx] = __fmul_rn(scores[n * max_centers + nearest], is_thing ? 1.0f : 0.0f);
  }
}

// ---- merge_semantic_instance --------------------------------------------------------
// Per image (grid.y): votes [I, C] of thing pixels, first pixel [I] of each instance id,
// stuff area [C]; accumulated per block in shared memory when they fit, else in global.

__device__ __forceinline__ void accumulate_pixel(const MergeStats& s, int64_t offset, int64_t p,
                                                 int32_t* votes, int32_t* first, int32_t* area) {
  const int32_t cls = s.semantic[offset + p];
  const int32_t raw = s.instance[offset + p];
  const int64_t id = s.inverse ? s.inverse[offset + p] : raw;
  const int32_t pixel = static_cast<int32_t>(p);
  // Values only decrease, so a stale read merely costs a redundant atomicMin.
  if (first[id] > pixel) atomicMin(first + id, pixel);
  if (raw == 0) {
    atomicAdd(area + cls, 1);
  } else if (s.is_thing[cls]) {
    atomicAdd(votes + id * s.classes + cls, 1);
  }
}

__global__ void merge_stats_shared_kernel(MergeStats s, int64_t image_begin) {
  extern __shared__ int32_t shared[];
  const int64_t vote_size = s.num_ids * s.classes;
  int32_t* votes = shared;
  int32_t* first = shared + vote_size;
  int32_t* area = first + s.num_ids;
  const int64_t bins = vote_size + s.num_ids + s.classes;
  for (int64_t i = threadIdx.x; i < bins; i += blockDim.x) {
    shared[i] = (i >= vote_size && i < vote_size + s.num_ids) ? static_cast<int32_t>(s.plane)
                                                               : 0;
  }
  __syncthreads();
  const int64_t n = image_begin + blockIdx.y;
  for (int64_t p = first_index(); p < s.plane; p += grid_stride()) {
    accumulate_pixel(s, n * s.plane, p, votes, first, area);
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < vote_size; i += blockDim.x) {
    if (votes[i] != 0) atomicAdd(s.votes + n * vote_size + i, votes[i]);
  }
  for (int64_t i = threadIdx.x; i < s.num_ids; i += blockDim.x) {
    if (first[i] < s.plane) atomicMin(s.first_seen + n * s.num_ids + i, first[i]);
  }
  for (int64_t c = threadIdx.x; c < s.classes; c += blockDim.x) {
    if (area[c] != 0) atomicAdd(s.area + n * s.classes + c, area[c]);
  }
}

__global__ void merge_stats_global_kernel(MergeStats s, int64_t image_begin) {
  const int64_t n = image_begin + blockIdx.y;
  int32_t* votes = s.votes + n * s.num_ids * s.classes;
  int32_t* first = s.first_seen + n * s.num_ids;
  int32_t* area = s.area + n * s.classes;
  for (int64_t p = first_index(); p < s.plane; p += grid_stride()) {
    accumulate_pixel(s, n * s.plane, p, votes, first, area);
  }
}

__global__ void merge_write_kernel(MergeStats s, const int32_t* __restrict__ new_ids,
                                   const uint8_t* __restrict__ keep_class, int64_t label_divisor,
                                   int32_t void_id, int32_t* __restrict__ out) {
  const int64_t total = s.batch * s.plane;
  for (int64_t idx = first_index(); idx < total; idx += grid_stride()) {
    const int64_t n = idx / s.plane;
    const int32_t cls = s.semantic[idx];
    const int32_t raw = s.instance[idx];
    int32_t value = void_id;
    if (raw != 0) {
      if (s.is_thing[cls]) value = new_ids[n * s.num_ids + (s.inverse ? s.inverse[idx] : raw)];
    } else if (keep_class[n * s.classes + cls]) {
      value = static_cast<int32_t>(cls * label_divisor);
    }
    out[idx] = value;
  }
}

}  // namespace

cudaError_t launch_semantic_argmax(const float* logits, int64_t batch, int64_t classes,
                                   int64_t plane, float tie_threshold, int32_t* out,
                                   cudaStream_t stream) {
  const int64_t total = batch * plane;
  semantic_argmax_kernel<<<grid_for(total), kThreads, 0, stream>>>(logits, classes, plane,
                                                                    total, tie_threshold, out);
  return cudaGetLastError();
}

cudaError_t launch_center_heatmap_nms(const float* heat, int64_t batch, int64_t height,
                                      int64_t width, float threshold, int64_t pad_begin,
                                      int64_t pad_end, float* row_max, float* out,
                                      cudaStream_t stream) {
  const int64_t total = batch * height * width;
  nms_rows_kernel<<<grid_for(total), kThreads, 0, stream>>>(heat, total, width, threshold,
                                                             pad_begin, pad_end, row_max);
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  nms_cols_kernel<<<grid_for(total), kThreads, 0, stream>>>(
      heat, row_max, total, height, width, threshold, pad_begin, pad_end, out);
  return cudaGetLastError();
}

cudaError_t launch_center_group(const float* centers, const float* scores,
                                const int64_t* num_centers, const bool* need_all,
                                const float* offsets, const bool* thing_mask, int64_t batch,
                                int64_t max_centers, int64_t height, int64_t width,
                                int32_t* instance, float* instance_scores, cudaStream_t stream) {
  const int64_t total = batch * height * width;
  center_group_kernel<<<grid_for(total), kThreads, 0, stream>>>(
      centers, scores, num_centers, need_all, offsets, thing_mask, total, max_centers, height,
      width, instance, instance_scores);
  return cudaGetLastError();
}

cudaError_t launch_merge_stats(const MergeStats& stats, cudaStream_t stream) {
  const int64_t shared_bytes = (stats.num_ids * stats.classes + stats.num_ids + stats.classes) *
                               static_cast<int64_t>(sizeof(int32_t));
  const bool use_shared = shared_bytes <= kMaxSharedBytes;
  const int64_t per_block = kThreads * 32;  // pixels per block (grid-stride)
  const unsigned int blocks_x = static_cast<unsigned int>(
      std::max<int64_t>(1, std::min<int64_t>((stats.plane + per_block - 1) / per_block, 1024)));
  for (int64_t begin = 0; begin < stats.batch; begin += kMaxGridY) {
    const dim3 grid(blocks_x, static_cast<unsigned int>(std::min(kMaxGridY, stats.batch - begin)));
    if (use_shared) {
      merge_stats_shared_kernel<<<grid, kThreads, static_cast<size_t>(shared_bytes), stream>>>(
          stats, begin);
    } else {
      merge_stats_global_kernel<<<grid, kThreads, 0, stream>>>(stats, begin);
    }
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) return error;
  }
  return cudaSuccess;
}

cudaError_t launch_merge_write(const MergeStats& stats, const int32_t* new_ids,
                               const uint8_t* keep_class, int64_t label_divisor,
                               int32_t void_id, int32_t* out, cudaStream_t stream) {
  merge_write_kernel<<<grid_for(stats.batch * stats.plane), kThreads, 0, stream>>>(
      stats, new_ids, keep_class, label_divisor, void_id, out);
  return cudaGetLastError();
}

}  // namespace deeplab_zoo::panoptic::cuda
