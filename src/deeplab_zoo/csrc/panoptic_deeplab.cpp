// Panoptic-DeepLab post-processing ops: schemas and the host logic shared by the CPU and
// CUDA kernels. See panoptic_deeplab.h.
#include "panoptic_deeplab.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_unique2.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/signbit.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <utility>

namespace deeplab_zoo::panoptic {
namespace {

std::string int128_to_string(__int128 value) {
  if (value == 0) return "0";
  const bool negative = value < 0;
  std::string digits;
  while (value != 0) {
    const int digit = static_cast<int>(value % 10);
    digits.push_back(static_cast<char>('0' + (negative ? -digit : digit)));
    value /= 10;
  }
  if (negative) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

void check_spatial(const char* name, const at::Tensor& t, int64_t height_dim) {
  const int64_t height = t.size(height_dim);
  const int64_t width = t.size(height_dim + 1);
  TORCH_CHECK_VALUE(height < kMaxSide && width < kMaxSide, name, ": spatial size ", height, "x",
                    width, " is too large (each side must be < 2**24)");
}

void check_same_device(const char* name, const at::Tensor& t, const char* reference_name,
                       const at::Tensor& reference) {
  TORCH_CHECK_VALUE(t.device() == reference.device(), name, " is on ", t.device(), " but ",
                    reference_name, " is on ", reference.device(),
                    "; all inputs must be on one device");
}

}  // namespace

void check_semantic_logits(const at::Tensor& logits) {
  TORCH_CHECK_VALUE(logits.dim() == 4, "semantic_logits must be [N, C, H, W], got shape ",
                    logits.sizes());
  TORCH_CHECK_VALUE(logits.scalar_type() == at::kFloat,
                    "semantic_logits must be float32, got ", logits.scalar_type());
  TORCH_CHECK_VALUE(logits.size(1) > 0, "semantic_logits has no classes: shape ", logits.sizes());
  check_spatial("semantic_logits", logits, 2);
}

void check_center_heatmap(const at::Tensor& heatmap, int64_t nms_kernel) {
  TORCH_CHECK_VALUE(heatmap.dim() == 3, "center_heatmap must be [N, H, W], got shape ",
                    heatmap.sizes());
  TORCH_CHECK_VALUE(heatmap.scalar_type() == at::kFloat, "center_heatmap must be float32, got ",
                    heatmap.scalar_type());
  TORCH_CHECK_VALUE(nms_kernel >= 1, "nms_kernel must be >= 1, got ", nms_kernel);
  check_spatial("center_heatmap", heatmap, 1);
}

void check_center_group(const at::Tensor& centers, const at::Tensor& center_scores,
                        const at::Tensor& num_centers, const at::Tensor& offsets,
                        const at::Tensor& thing_mask) {
  TORCH_CHECK_VALUE(offsets.dim() == 4 && offsets.size(1) == 2,
                    "offsets must be [N, 2, H, W] (dy, dx), got shape ", offsets.sizes());
  TORCH_CHECK_VALUE(offsets.scalar_type() == at::kFloat, "offsets must be float32, got ",
                    offsets.scalar_type());
  const int64_t batch = offsets.size(0);
  TORCH_CHECK_VALUE(centers.dim() == 3 && centers.size(0) == batch && centers.size(2) == 2,
                    "centers must be [N, K, 2] (y, x) with N = ", batch, ", got shape ",
                    centers.sizes());
  TORCH_CHECK_VALUE(centers.scalar_type() == at::kLong, "centers must be int64, got ",
                    centers.scalar_type());
  const int64_t max_centers = centers.size(1);
  TORCH_CHECK_VALUE(center_scores.dim() == 2 && center_scores.size(0) == batch &&
                        center_scores.size(1) == max_centers,
                    "center_scores must be [N, K] = [", batch, ", ", max_centers, "], got shape ",
                    center_scores.sizes());
  TORCH_CHECK_VALUE(center_scores.scalar_type() == at::kFloat,
                    "center_scores must be float32, got ", center_scores.scalar_type());
  TORCH_CHECK_VALUE(num_centers.dim() == 1 && num_centers.size(0) == batch,
                    "num_centers must be [N] = [", batch, "], got shape ", num_centers.sizes());
  TORCH_CHECK_VALUE(num_centers.scalar_type() == at::kLong, "num_centers must be int64, got ",
                    num_centers.scalar_type());
  TORCH_CHECK_VALUE(thing_mask.dim() == 3 && thing_mask.size(0) == batch &&
                        thing_mask.size(1) == offsets.size(2) &&
                        thing_mask.size(2) == offsets.size(3),
                    "thing_mask must be [N, H, W] = [", batch, ", ", offsets.size(2), ", ",
                    offsets.size(3), "], got shape ", thing_mask.sizes());
  TORCH_CHECK_VALUE(thing_mask.scalar_type() == at::kBool, "thing_mask must be bool, got ",
                    thing_mask.scalar_type());
  check_same_device("centers", centers, "offsets", offsets);
  check_same_device("center_scores", center_scores, "offsets", offsets);
  check_same_device("num_centers", num_centers, "offsets", offsets);
  check_same_device("thing_mask", thing_mask, "offsets", offsets);
  check_spatial("offsets", offsets, 2);
  if (batch > 0) {
    const bool in_range =
        at::logical_and(num_centers >= 0, num_centers <= max_centers).all().item<bool>();
    TORCH_CHECK_VALUE(in_range, "num_centers must be in [0, K = ", max_centers, "], got ",
                      num_centers.cpu());
  }
}

void check_merge(const at::Tensor& semantic, const at::Tensor& instance, int64_t label_divisor,
                 int64_t void_label) {
  TORCH_CHECK_VALUE(semantic.dim() == 3, "semantic must be [N, H, W], got shape ",
                    semantic.sizes());
  TORCH_CHECK_VALUE(instance.dim() == 3, "instance must be [N, H, W], got shape ",
                    instance.sizes());
  TORCH_CHECK_VALUE(semantic.sizes() == instance.sizes(), "semantic and instance shapes differ: ",
                    semantic.sizes(), " vs ", instance.sizes());
  TORCH_CHECK_VALUE(semantic.scalar_type() == at::kInt && instance.scalar_type() == at::kInt,
                    "semantic and instance must be int32 tensors, got ", semantic.scalar_type(),
                    " and ", instance.scalar_type());
  check_same_device("instance", instance, "semantic", semantic);
  check_spatial("semantic", semantic, 1);
  TORCH_CHECK_VALUE(semantic.size(1) * semantic.size(2) <= kInt32Max, "semantic: ",
                    semantic.size(1), "x", semantic.size(2),
                    " pixels per image is too many (at most 2**31 - 1)");
  TORCH_CHECK_VALUE(label_divisor >= 1, "label_divisor must be >= 1, got ", label_divisor);
  const __int128 void_id = static_cast<__int128>(void_label) * label_divisor;
  TORCH_CHECK_VALUE(void_id >= 0 && void_id <= kInt32Max, "void_label * label_divisor = ",
                    int128_to_string(void_id), " does not fit int32");
}

at::Tensor needs_all_pixels(const at::Tensor& center_scores, const at::Tensor& num_centers) {
  const int64_t max_centers = center_scores.size(1);
  const at::Tensor used =
      at::arange(max_centers, num_centers.options()).unsqueeze(0) < num_centers.unsqueeze(1);
  const at::Tensor plain = at::logical_and(at::isfinite(center_scores),
                                           at::logical_not(at::signbit(center_scores)));
  return at::logical_and(used, at::logical_not(plain)).any(1);
}

InstanceIndex index_instances(const at::Tensor& instance, int64_t min_id, int64_t max_id,
                              int64_t num_classes, int64_t pixels_per_image) {
  InstanceIndex index;
  const int64_t budget = std::max<int64_t>(4 * pixels_per_image, int64_t{1} << 20);
  if (min_id >= 0 && (max_id + 1) * num_classes <= budget) {
    index.num_ids = max_id + 1;
    return index;
  }
  auto unique = at::_unique2(instance.reshape({-1}), /*sorted=*/true, /*return_inverse=*/true,
                             /*return_counts=*/false);
  index.num_ids = std::get<0>(unique).numel();
  index.inverse = std::get<1>(unique).reshape({-1}).to(at::kLong).contiguous();
  return index;
}

std::vector<uint8_t> thing_class_table(at::IntArrayRef thing_class_ids, int64_t num_classes) {
  std::vector<uint8_t> table(static_cast<size_t>(num_classes), 0);
  for (const int64_t id : thing_class_ids) {
    if (id >= 0 && id < num_classes) table[static_cast<size_t>(id)] = 1;
  }
  return table;
}

void check_semantic_min(int64_t min_class) {
  TORCH_CHECK_VALUE(min_class >= 0, "semantic must be non-negative, got minimum ", min_class);
}

void resolve_merge(const at::Tensor& votes, const at::Tensor& first_seen, const at::Tensor& area,
                   const std::vector<uint8_t>& is_thing_class, int64_t label_divisor,
                   int64_t stuff_area_limit, at::Tensor& new_ids, at::Tensor& keep_class) {
  const int64_t batch = votes.size(0);
  const int64_t num_ids = votes.size(1);
  const int64_t num_classes = votes.size(2);
  const int32_t* votes_ptr = votes.const_data_ptr<int32_t>();
  const int32_t* first_ptr = first_seen.const_data_ptr<int32_t>();
  const int32_t* area_ptr = area.const_data_ptr<int32_t>();
  new_ids = at::zeros({batch, num_ids}, at::kInt);
  keep_class = at::zeros({batch, num_classes}, at::kByte);
  int32_t* new_ptr = new_ids.data_ptr<int32_t>();
  uint8_t* keep_ptr = keep_class.data_ptr<uint8_t>();

  std::vector<std::pair<int32_t, int64_t>> processed;  // (first pixel, instance index)
  std::vector<int64_t> classes;
  std::vector<int64_t> counters(static_cast<size_t>(num_classes));
  for (int64_t n = 0; n < batch; ++n) {
    // Things: majority class (smallest on ties), counters in order of first appearance.
    processed.clear();
    for (int64_t i = 0; i < num_ids; ++i) {
      const int32_t* row = votes_ptr + (n * num_ids + i) * num_classes;
      bool any = false;
      for (int64_t c = 0; c < num_classes && !any; ++c) any = row[c] > 0;
      if (any) processed.emplace_back(first_ptr[n * num_ids + i], i);
    }
    std::sort(processed.begin(), processed.end());
    std::fill(counters.begin(), counters.end(), 0);
    classes.assign(processed.size(), 0);
    int64_t max_counter = 0;
    int64_t max_class = 0;
    for (size_t j = 0; j < processed.size(); ++j) {
      const int32_t* row = votes_ptr + (n * num_ids + processed[j].second) * num_classes;
      int64_t best = 0;
      for (int64_t c = 1; c < num_classes; ++c) {
        if (row[c] > row[best]) best = c;
      }
      classes[j] = best;
      max_counter = std::max(max_counter, ++counters[static_cast<size_t>(best)]);
      max_class = std::max(max_class, best);
    }
    if (!processed.empty()) {
      TORCH_CHECK_VALUE(max_counter < label_divisor, "label_divisor=", label_divisor,
                        " is too small: a class has ", max_counter,
                        " instances, so panoptic ids would collide");
      const __int128 largest = static_cast<__int128>(max_class) * label_divisor + max_counter;
      TORCH_CHECK_VALUE(largest <= kInt32Max, "panoptic id ", int128_to_string(largest),
                        " overflows int32 (label_divisor=", label_divisor, ")");
      std::fill(counters.begin(), counters.end(), 0);
      for (size_t j = 0; j < processed.size(); ++j) {
        const int64_t cls = classes[j];
        const int64_t counter = ++counters[static_cast<size_t>(cls)];
        new_ptr[n * num_ids + processed[j].second] =
            static_cast<int32_t>(cls * label_divisor + counter);
      }
    }
    // Stuff: classes outside instances with at least `stuff_area_limit` pixels.
    int64_t largest_class = 0;
    for (int64_t c = 0; c < num_classes; ++c) {
      const int32_t count = area_ptr[n * num_classes + c];
      const bool keep = count >= stuff_area_limit && !is_thing_class[static_cast<size_t>(c)];
      keep_ptr[n * num_classes + c] = keep ? 1 : 0;
      if (keep && count > 0) largest_class = c;
    }
    const __int128 largest_stuff = static_cast<__int128>(largest_class) * label_divisor;
    TORCH_CHECK_VALUE(largest_stuff <= kInt32Max, "panoptic id ", int128_to_string(largest_stuff),
                      " overflows int32 (label_divisor=", label_divisor, ")");
  }
}

}  // namespace deeplab_zoo::panoptic

TORCH_LIBRARY_FRAGMENT(deeplab_zoo, m) {
  m.def("semantic_argmax(Tensor semantic_logits) -> Tensor");
  m.def("center_heatmap_nms(Tensor center_heatmap, float center_threshold, int nms_kernel) "
        "-> Tensor");
  m.def("center_group(Tensor centers, Tensor center_scores, Tensor num_centers, Tensor offsets, "
        "Tensor thing_mask) -> (Tensor, Tensor)");
  m.def("merge_semantic_instance(Tensor semantic, Tensor instance, int[] thing_class_ids, "
        "int label_divisor, int stuff_area_limit, int void_label) -> Tensor");
}
