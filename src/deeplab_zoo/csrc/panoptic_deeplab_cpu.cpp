// Panoptic-DeepLab post-processing ops: multi-threaded CPU kernels (at::parallel_for).
//
// Every float operation matches the PyTorch reference one for one (no contraction, no
// reassociation: this file is compiled with -ffp-contract=off and without fast-math), so
// the results are bit-identical to src/deeplab_zoo/postprocess/panoptic_deeplab.py.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "panoptic_deeplab.h"

namespace deeplab_zoo::panoptic {
namespace {

// Rows per task so that one task touches roughly `target` values.
int64_t row_grain(int64_t width, int64_t values_per_pixel, int64_t target = 1 << 15) {
  return std::max<int64_t>(1, target / std::max<int64_t>(1, width * values_per_pixel));
}

inline float thresholded(float value, float threshold) {
  return value > threshold ? value : 0.0f;
}

// Hot loops are compiled for AVX2 as well as the baseline ISA and picked at load time.
// AVX2 brings no FMA here (and -ffp-contract=off forbids contraction anyway), so both
// versions compute the same IEEE float32 operations.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define DEEPLAB_ZOO_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DEEPLAB_ZOO_VECTOR_CLONES
#endif

// dst[x] = max(dst[x], src[x]) (no NaN can reach the NMS maxima: thresholding maps NaN to 0).
DEEPLAB_ZOO_VECTOR_CLONES
void max_into(float* __restrict dst, const float* __restrict src, int64_t size) {
  for (int64_t x = 0; x < size; ++x) dst[x] = src[x] > dst[x] ? src[x] : dst[x];
}

// Semantic argmax of `size` consecutive pixels (class planes `plane` apart).
DEEPLAB_ZOO_VECTOR_CLONES
void argmax_pixels(const float* __restrict base, int64_t plane, int64_t classes, int64_t size,
                   float* __restrict mx, int32_t* __restrict pred) {
  // amax over classes; NaN propagates, as in torch.amax.
  for (int64_t x = 0; x < size; ++x) mx[x] = base[x];
  for (int64_t c = 1; c < classes; ++c) {
    const float* __restrict logit = base + c * plane;
    for (int64_t x = 0; x < size; ++x) {
      const float v = logit[x];
      mx[x] = (v > mx[x] || v != v) ? v : mx[x];
    }
  }
  // First class whose softmax rounds to the maximum probability (last class by default):
  // walk the classes backwards, like the reference's masked_fill_ loop.
  const int32_t last = static_cast<int32_t>(classes - 1);
  for (int64_t x = 0; x < size; ++x) pred[x] = last;
  for (int64_t c = classes - 2; c >= 0; --c) {
    const float* __restrict logit = base + c * plane;
    const int32_t cls = static_cast<int32_t>(c);
    for (int64_t x = 0; x < size; ++x) {
      const int32_t mask = -static_cast<int32_t>((logit[x] - mx[x]) >= kExpRoundsToOne);
      pred[x] = (cls & mask) | (pred[x] & ~mask);
    }
  }
}

// For `size` targets (ty, tx), the first of `count` centres at the smallest float32
// distance sqrt((ty - cy)**2 + (tx - cx)**2), like the reference's argmin: strict < keeps
// the first of equal distances, and index 0 when every distance is NaN.
DEEPLAB_ZOO_VECTOR_CLONES
void nearest_centers(const float* __restrict ty, const float* __restrict tx, int64_t size,
                     const float* __restrict cy, const float* __restrict cx, int64_t count,
                     float* __restrict best, int32_t* __restrict nearest) {
  for (int64_t i = 0; i < size; ++i) {
    best[i] = std::numeric_limits<float>::infinity();
    nearest[i] = 0;
  }
  for (int64_t k = 0; k < count; ++k) {
    const float center_row = cy[k], center_col = cx[k];
    const int32_t index = static_cast<int32_t>(k);
    for (int64_t i = 0; i < size; ++i) {
      const float a = ty[i] - center_row;
      const float b = tx[i] - center_col;
      const float distance = std::sqrt(a * a + b * b);
      const int32_t mask = -static_cast<int32_t>(distance < best[i]);
      best[i] = distance < best[i] ? distance : best[i];
      nearest[i] = (index & mask) | (nearest[i] & ~mask);
    }
  }
}

at::Tensor semantic_argmax_cpu(const at::Tensor& semantic_logits) {
  check_semantic_logits(semantic_logits);
  const at::Tensor logits = semantic_logits.contiguous();
  const int64_t batch = logits.size(0), classes = logits.size(1);
  const int64_t height = logits.size(2), width = logits.size(3), plane = height * width;
  at::Tensor out = at::empty({batch, height, width}, logits.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  const float* src = logits.const_data_ptr<float>();
  int32_t* dst = out.data_ptr<int32_t>();
  at::parallel_for(0, batch * height, row_grain(width, classes), [&](int64_t begin, int64_t end) {
    constexpr int64_t kBlock = 512;  // pixels per block: C * 2 KiB of logits stay in cache
    float mx[kBlock];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / height, y = row % height;
      const float* base = src + n * classes * plane + y * width;
      int32_t* pred = dst + row * width;
      for (int64_t x = 0; x < width; x += kBlock) {
        argmax_pixels(base + x, plane, classes, std::min(kBlock, width - x), mx, pred + x);
      }
    }
  });
  return out;
}

at::Tensor center_heatmap_nms_cpu(const at::Tensor& center_heatmap, double center_threshold,
                                  int64_t nms_kernel) {
  check_center_heatmap(center_heatmap, nms_kernel);
  const at::Tensor heat = center_heatmap.contiguous();
  const int64_t batch = heat.size(0), height = heat.size(1), width = heat.size(2);
  at::Tensor out = at::empty_like(heat);
  if (out.numel() == 0) return out;
  const float threshold = static_cast<float>(center_threshold);
  // The max-pool window of output (y, x) covers rows y - pad_begin .. y + pad_end (same for
  // columns) of the zero-padded thresholded map; a k x k max is a 1 x k then a k x 1 max.
  const int64_t pad_begin = (nms_kernel - 1) / 2, pad_end = nms_kernel - 1 - pad_begin;
  at::Tensor row_max = at::empty_like(heat);
  const float* src = heat.const_data_ptr<float>();
  float* hmax = row_max.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t rows = batch * height;
  at::parallel_for(0, rows, row_grain(width, nms_kernel), [&](int64_t begin, int64_t end) {
    std::vector<float> padded(static_cast<size_t>(width + nms_kernel - 1), 0.0f);
    float* pad = padded.data() + pad_begin;
    for (int64_t row = begin; row < end; ++row) {
      const float* in = src + row * width;
      float* h = hmax + row * width;
      for (int64_t x = 0; x < width; ++x) pad[x] = thresholded(in[x], threshold);
      const float* window = padded.data();
      std::copy(window, window + width, h);
      for (int64_t j = 1; j < nms_kernel; ++j) max_into(h, window + j, width);
    }
  });
  at::parallel_for(0, rows, row_grain(width, nms_kernel), [&](int64_t begin, int64_t end) {
    std::vector<float> pooled(static_cast<size_t>(width));
    float* m = pooled.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / height, y = row % height;
      const int64_t first = std::max<int64_t>(0, y - pad_begin);
      const int64_t last = std::min<int64_t>(height - 1, y + pad_end);
      const bool touches_padding = y - pad_begin < 0 || y + pad_end > height - 1;
      const float* plane = hmax + n * height * width;
      std::fill(m, m + width, touches_padding ? 0.0f : -std::numeric_limits<float>::infinity());
      for (int64_t r = first; r <= last; ++r) max_into(m, plane + r * width, width);
      const float* in = src + row * width;
      float* o = dst + row * width;
      for (int64_t x = 0; x < width; ++x) {
        const float v = thresholded(in[x], threshold);
        o[x] = m[x] == v ? v : 0.0f;
      }
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> center_group_cpu(const at::Tensor& centers_in,
                                                    const at::Tensor& center_scores_in,
                                                    const at::Tensor& num_centers_in,
                                                    const at::Tensor& offsets_in,
                                                    const at::Tensor& thing_mask_in) {
  check_center_group(centers_in, center_scores_in, num_centers_in, offsets_in, thing_mask_in);
  const at::Tensor centers = centers_in.contiguous();
  const at::Tensor scores = center_scores_in.contiguous();
  const at::Tensor num_centers = num_centers_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const at::Tensor thing_mask = thing_mask_in.contiguous();
  const int64_t batch = offsets.size(0), height = offsets.size(2), width = offsets.size(3);
  const int64_t max_centers = centers.size(1), plane = height * width;
  at::Tensor instance = at::zeros({batch, height, width}, offsets.options().dtype(at::kInt));
  at::Tensor instance_scores = at::zeros({batch, height, width}, offsets.options());
  if (instance.numel() == 0 || max_centers == 0) return {instance, instance_scores};

  const at::Tensor need_all = needs_all_pixels(scores, num_centers).contiguous();
  const bool* need_all_ptr = need_all.const_data_ptr<bool>();
  const int64_t* count_ptr = num_centers.const_data_ptr<int64_t>();
  const int64_t* center_ptr = centers.const_data_ptr<int64_t>();
  // Centres as float32, exactly like the reference's centers.to(torch.float32).
  std::vector<float> center_y(static_cast<size_t>(batch * max_centers));
  std::vector<float> center_x(center_y.size());
  for (int64_t i = 0; i < batch * max_centers; ++i) {
    center_y[i] = static_cast<float>(center_ptr[2 * i]);
    center_x[i] = static_cast<float>(center_ptr[2 * i + 1]);
  }
  const float* score_ptr = scores.const_data_ptr<float>();
  const float* offset_ptr = offsets.const_data_ptr<float>();
  const bool* thing_ptr = thing_mask.const_data_ptr<bool>();
  int32_t* instance_ptr = instance.data_ptr<int32_t>();
  float* instance_score_ptr = instance_scores.data_ptr<float>();

  at::parallel_for(0, batch * height, row_grain(width, 8), [&](int64_t begin, int64_t end) {
    const size_t w = static_cast<size_t>(width);
    std::vector<int64_t> columns(w);
    std::vector<float> target_y(w), target_x(w), best(w);
    std::vector<int32_t> nearest(w);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / height, y = row % height;
      const int64_t count = count_ptr[n];
      if (count == 0) continue;  // no centres: instance 0, score 0 (already zero)
      const bool* thing = thing_ptr + row * width;
      const float* dy = offset_ptr + n * 2 * plane + y * width;
      const float* dx = dy + plane;
      // Pixels that need a nearest centre: thing pixels (others get 0 and score * 0 = +0
      // unless some score is non-finite or negative, see needs_all_pixels).
      int64_t size = 0;
      if (need_all_ptr[n]) {
        for (int64_t x = 0; x < width; ++x) columns[size++] = x;
      } else {
        for (int64_t x = 0; x < width; ++x) {
          if (thing[x]) columns[size++] = x;
        }
      }
      if (size == 0) continue;
      const float fy = static_cast<float>(y);
      for (int64_t i = 0; i < size; ++i) {
        const int64_t x = columns[i];
        target_y[i] = fy + dy[x];
        target_x[i] = static_cast<float>(x) + dx[x];
      }
      nearest_centers(target_y.data(), target_x.data(), size, center_y.data() + n * max_centers,
                      center_x.data() + n * max_centers, count, best.data(), nearest.data());
      const float* image_scores = score_ptr + n * max_centers;
      int32_t* inst_row = instance_ptr + row * width;
      float* score_row = instance_score_ptr + row * width;
      for (int64_t i = 0; i < size; ++i) {
        const int64_t x = columns[i];
        const bool is_thing = thing[x];
        inst_row[x] = is_thing ? nearest[i] + 1 : 0;
        score_row[x] = image_scores[nearest[i]] * (is_thing ? 1.0f : 0.0f);
      }
    }
  });
  return {instance, instance_scores};
}

at::Tensor merge_semantic_instance_cpu(const at::Tensor& semantic_in,
                                       const at::Tensor& instance_in,
                                       at::IntArrayRef thing_class_ids, int64_t label_divisor,
                                       int64_t stuff_area_limit, int64_t void_label) {
  check_merge(semantic_in, instance_in, label_divisor, void_label);
  const at::Tensor semantic = semantic_in.contiguous();
  const at::Tensor instance = instance_in.contiguous();
  const int64_t batch = semantic.size(0), plane = semantic.size(1) * semantic.size(2);
  at::Tensor out = at::empty(semantic.sizes(), semantic.options());
  if (out.numel() == 0) return out;

  const auto semantic_range = at::aminmax(semantic);
  const auto instance_range = at::aminmax(instance);
  check_semantic_min(std::get<0>(semantic_range).item<int64_t>());
  const int64_t num_classes = std::get<1>(semantic_range).item<int64_t>() + 1;
  const std::vector<uint8_t> is_thing = thing_class_table(thing_class_ids, num_classes);
  const InstanceIndex index =
      index_instances(instance, std::get<0>(instance_range).item<int64_t>(),
                      std::get<1>(instance_range).item<int64_t>(), num_classes, plane);
  const int64_t num_ids = index.num_ids;
  const int64_t* inverse = index.inverse.defined() ? index.inverse.const_data_ptr<int64_t>()
                                                   : nullptr;
  const int32_t* sem_ptr = semantic.const_data_ptr<int32_t>();
  const int32_t* inst_ptr = instance.const_data_ptr<int32_t>();
  const uint8_t* thing_table = is_thing.data();

  // Per image: votes [I, C], first pixel [I], stuff area [C], accumulated per pixel chunk
  // in private buffers and then reduced (integer sums / minima: order-independent).
  at::Tensor votes = at::zeros({batch, num_ids, num_classes}, at::kInt);
  at::Tensor first_seen = at::full({batch, num_ids}, plane, at::kInt);
  at::Tensor area = at::zeros({batch, num_classes}, at::kInt);
  const int64_t vote_size = num_ids * num_classes;
  const int64_t chunk_size = vote_size + num_ids + num_classes;
  const int64_t max_chunks = std::max<int64_t>(1, (int64_t{1} << 25) / chunk_size);
  const int64_t chunks = std::max<int64_t>(
      1, std::min({static_cast<int64_t>(at::get_num_threads()), (plane + 32767) / 32768,
                   max_chunks}));
  std::vector<int32_t> buffers(static_cast<size_t>(chunks * chunk_size));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t ch = 0; ch < chunks; ++ch) {
      int32_t* buf = buffers.data() + ch * chunk_size;
      std::fill(buf, buf + vote_size, 0);
      std::fill(buf + vote_size, buf + vote_size + num_ids, static_cast<int32_t>(plane));
      std::fill(buf + vote_size + num_ids, buf + chunk_size, 0);
    }
    const int64_t offset = n * plane;
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t ch = begin; ch < end; ++ch) {
        int32_t* chunk_votes = buffers.data() + ch * chunk_size;
        int32_t* chunk_first = chunk_votes + vote_size;
        int32_t* chunk_area = chunk_first + num_ids;
        const int64_t start = plane * ch / chunks, stop = plane * (ch + 1) / chunks;
        for (int64_t p = start; p < stop; ++p) {
          const int32_t cls = sem_ptr[offset + p];
          const int32_t raw = inst_ptr[offset + p];
          const int64_t id = inverse ? inverse[offset + p] : raw;
          if (chunk_first[id] == plane) chunk_first[id] = static_cast<int32_t>(p);
          if (raw == 0) {
            ++chunk_area[cls];
          } else if (thing_table[cls]) {
            ++chunk_votes[id * num_classes + cls];
          }
        }
      }
    });
    int32_t* image_votes = votes.data_ptr<int32_t>() + n * vote_size;
    int32_t* image_first = first_seen.data_ptr<int32_t>() + n * num_ids;
    int32_t* image_area = area.data_ptr<int32_t>() + n * num_classes;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int32_t* buf = buffers.data() + ch * chunk_size;
      for (int64_t i = 0; i < vote_size; ++i) image_votes[i] += buf[i];
      for (int64_t i = 0; i < num_ids; ++i) {
        image_first[i] = std::min(image_first[i], buf[vote_size + i]);
      }
      for (int64_t c = 0; c < num_classes; ++c) image_area[c] += buf[vote_size + num_ids + c];
    }
  }

  at::Tensor new_ids, keep_class;
  resolve_merge(votes, first_seen, area, is_thing, label_divisor, stuff_area_limit, new_ids,
                keep_class);
  const int32_t* new_id_ptr = new_ids.const_data_ptr<int32_t>();
  const uint8_t* keep_ptr = keep_class.const_data_ptr<uint8_t>();
  const int32_t void_id = static_cast<int32_t>(void_label * label_divisor);
  int32_t* out_ptr = out.data_ptr<int32_t>();
  at::parallel_for(0, batch * plane, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end;) {
      const int64_t n = idx / plane;
      const int64_t stop = std::min(end, (n + 1) * plane);
      const int32_t* image_new_ids = new_id_ptr + n * num_ids;
      const uint8_t* image_keep = keep_ptr + n * num_classes;
      for (; idx < stop; ++idx) {
        const int32_t cls = sem_ptr[idx];
        const int32_t raw = inst_ptr[idx];
        int32_t value = void_id;
        if (raw != 0) {
          if (thing_table[cls]) value = image_new_ids[inverse ? inverse[idx] : raw];
        } else if (image_keep[cls]) {
          value = static_cast<int32_t>(cls * label_divisor);
        }
        out_ptr[idx] = value;
      }
    }
  });
  return out;
}

}  // namespace
}  // namespace deeplab_zoo::panoptic

TORCH_LIBRARY_IMPL(deeplab_zoo, CPU, m) {
  using namespace deeplab_zoo::panoptic;
  m.impl("semantic_argmax", &semantic_argmax_cpu);
  m.impl("center_heatmap_nms", &center_heatmap_nms_cpu);
  m.impl("center_group", &center_group_cpu);
  m.impl("merge_semantic_instance", &merge_semantic_instance_cpu);
}
