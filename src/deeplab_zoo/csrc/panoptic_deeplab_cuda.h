// Panoptic-DeepLab post-processing ops: CUDA kernel launchers (plain pointers, no ATen, so
// that panoptic_deeplab_cuda.cu compiles quickly for every GPU architecture). The ATen
// wrappers registered for the CUDA dispatch key are in panoptic_deeplab_cuda.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace deeplab_zoo::panoptic::cuda {

// [N, C, H, W] logits -> [N, H, W] first class c with logit[c] - max >= tie_threshold.
cudaError_t launch_semantic_argmax(const float* logits, int64_t batch, int64_t classes,
                                   int64_t plane, float tie_threshold, int32_t* out,
                                   cudaStream_t stream);

// [N, H, W] heatmap -> thresholded heatmap where it equals its zero-padded window max.
// `row_max` is scratch of the heatmap's size.
cudaError_t launch_center_heatmap_nms(const float* heat, int64_t batch, int64_t height,
                                      int64_t width, float threshold, int64_t pad_begin,
                                      int64_t pad_end, float* row_max, float* out,
                                      cudaStream_t stream);

// Nearest centre (float32 centres [N, K, 2]) of every pixel that needs one; outputs
// (pre-zeroed) instance [N, H, W] int32 and instance scores [N, H, W] float32.
cudaError_t launch_center_group(const float* centers, const float* scores,
                                const int64_t* num_centers, const bool* need_all,
                                const float* offsets, const bool* thing_mask, int64_t batch,
                                int64_t max_centers, int64_t height, int64_t width,
                                int32_t* instance, float* instance_scores, cudaStream_t stream);

// Inputs of the per-image merge statistics (see resolve_merge in panoptic_deeplab.h).
struct MergeStats {
  const int32_t* semantic;   // [N, H*W]
  const int32_t* instance;   // [N, H*W]
  const int64_t* inverse;    // [N, H*W] compact ids, or nullptr: instance ids index directly
  const uint8_t* is_thing;   // [C]
  int64_t batch;
  int64_t plane;
  int64_t num_ids;
  int64_t classes;
  int32_t* votes;       // [N, I, C] zeroed
  int32_t* first_seen;  // [N, I] filled with `plane`
  int32_t* area;        // [N, C] zeroed
};

cudaError_t launch_merge_stats(const MergeStats& stats, cudaStream_t stream);

// Final panoptic ids from the resolved tables (new_ids [N, I], keep_class [N, C]).
cudaError_t launch_merge_write(const MergeStats& stats, const int32_t* new_ids,
                               const uint8_t* keep_class, int64_t label_divisor,
                               int32_t void_id, int32_t* out, cudaStream_t stream);

}  // namespace deeplab_zoo::panoptic::cuda
