// Panoptic-DeepLab post-processing ops (namespace deeplab_zoo): shared declarations.
//
// The ops reproduce src/deeplab_zoo/postprocess/panoptic_deeplab.py (the pure-PyTorch
// reference, itself bit-exact with DeepLab2) exactly: same float32 operations in the same
// order, same tie rules, same errors. Host-side logic shared by the CPU and CUDA kernels
// (argument checks, the per-instance majority vote / counter resolution) lives in
// panoptic_deeplab.cpp; the kernels live in panoptic_deeplab_cpu.cpp / _cuda.cu.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace deeplab_zoo::panoptic {

// float32 exp(x) rounds to exactly 1.0 iff x >= -2**-25: the classes whose softmax
// probability equals the maximum one (DeepLab2 argmaxes the softmax).
constexpr float kExpRoundsToOne = -2.98023223876953125e-08f;  // -(2 ** -25)
constexpr int64_t kInt32Max = 2147483647;
// Spatial sizes must convert to float32 exactly (pixel coordinates) and index with int32.
constexpr int64_t kMaxSide = int64_t{1} << 24;

// [N, C, H, W] float32 -> sizes; raises ValueError on a bad input.
void check_semantic_logits(const at::Tensor& logits);
// [N, H, W] float32 centre heatmap, kernel >= 1.
void check_center_heatmap(const at::Tensor& heatmap, int64_t nms_kernel);
// centers [N, K, 2] int64, center_scores [N, K] float32, num_centers [N] int64,
// offsets [N, 2, H, W] float32, thing_mask [N, H, W] bool, all on one device.
void check_center_group(const at::Tensor& centers, const at::Tensor& center_scores,
                        const at::Tensor& num_centers, const at::Tensor& offsets,
                        const at::Tensor& thing_mask);
// semantic / instance [N, H, W] int32 on one device; label_divisor >= 1;
// void_label * label_divisor in [0, 2**31 - 1].
void check_merge(const at::Tensor& semantic, const at::Tensor& instance, int64_t label_divisor,
                 int64_t void_label);

// Per-image bool "some centre score is not a finite value >= +0": then non-thing pixels
// need their nearest centre too (their score is `score * 0`, which is NaN or -0 there).
at::Tensor needs_all_pixels(const at::Tensor& center_scores, const at::Tensor& num_centers);

// How instance ids are indexed: directly (0 <= id < num_ids) or through a compacted
// inverse map (`inverse`, int64, same numel as the instance map).
struct InstanceIndex {
  int64_t num_ids = 0;
  at::Tensor inverse;  // undefined for direct indexing
};

// Chooses direct indexing when all ids are small and non-negative, otherwise compacts the
// ids with a sorted unique over the whole batch (same device as `instance`).
InstanceIndex index_instances(const at::Tensor& instance, int64_t min_id, int64_t max_id,
                              int64_t num_classes, int64_t pixels_per_image);

// Table [num_classes] uint8: 1 for the listed thing classes (ids outside the range ignored).
std::vector<uint8_t> thing_class_table(at::IntArrayRef thing_class_ids, int64_t num_classes);

// Raises ValueError if a semantic class is negative (min over the batch).
void check_semantic_min(int64_t min_class);

// From per-image statistics (CPU int32 tensors):
//   votes [N, I, C]: thing pixels (instance != 0) per (instance index, class),
//   first_seen [N, I]: first row-major pixel of each instance index (H*W if absent),
//   area [N, C]: pixels with instance == 0 per class,
// computes the tables the final write pass needs:
//   new_ids [N, I] int32: class * label_divisor + per-class counter (0 if unused),
//   keep_class [N, C] uint8: stuff class kept (area >= stuff_area_limit, not a thing).
// Raises ValueError exactly where the reference does (counter overflow, int32 overflow).
void resolve_merge(const at::Tensor& votes, const at::Tensor& first_seen, const at::Tensor& area,
                   const std::vector<uint8_t>& is_thing_class, int64_t label_divisor,
                   int64_t stuff_area_limit, at::Tensor& new_ids, at::Tensor& keep_class);

}  // namespace deeplab_zoo::panoptic
