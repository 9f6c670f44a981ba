// Panoptic-DeepLab post-processing ops: ATen wrappers of the CUDA kernels (checks,
// allocation, the host-side merge resolution) registered for the CUDA dispatch key.
// Built only with CUDA (*_cuda.cpp / *.cu files are skipped by CPU-only builds).
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "panoptic_deeplab.h"
#include "panoptic_deeplab_cuda.h"

namespace deeplab_zoo::panoptic {
namespace {

at::Tensor semantic_argmax_cuda(const at::Tensor& semantic_logits) {
  check_semantic_logits(semantic_logits);
  const c10::cuda::CUDAGuard guard(semantic_logits.device());
  const at::Tensor logits = semantic_logits.contiguous();
  const int64_t batch = logits.size(0), classes = logits.size(1);
  const int64_t height = logits.size(2), width = logits.size(3);
  at::Tensor out = at::empty({batch, height, width}, logits.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  C10_CUDA_CHECK(cuda::launch_semantic_argmax(logits.const_data_ptr<float>(), batch, classes,
                                              height * width, kExpRoundsToOne,
                                              out.data_ptr<int32_t>(),
                                              c10::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor center_heatmap_nms_cuda(const at::Tensor& center_heatmap, double center_threshold,
                                   int64_t nms_kernel) {
  check_center_heatmap(center_heatmap, nms_kernel);
  const c10::cuda::CUDAGuard guard(center_heatmap.device());
  const at::Tensor heat = center_heatmap.contiguous();
  at::Tensor out = at::empty_like(heat);
  if (out.numel() == 0) return out;
  at::Tensor row_max = at::empty_like(heat);
  const int64_t pad_begin = (nms_kernel - 1) / 2;
  C10_CUDA_CHECK(cuda::launch_center_heatmap_nms(
      heat.const_data_ptr<float>(), heat.size(0), heat.size(1), heat.size(2),
      static_cast<float>(center_threshold), pad_begin, nms_kernel - 1 - pad_begin,
      row_max.data_ptr<float>(), out.data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
  return out;
}

std::tuple<at::Tensor, at::Tensor> center_group_cuda(const at::Tensor& centers,
                                                     const at::Tensor& center_scores,
                                                     const at::Tensor& num_centers,
                                                     const at::Tensor& offsets_in,
                                                     const at::Tensor& thing_mask_in) {
  check_center_group(centers, center_scores, num_centers, offsets_in, thing_mask_in);
  const c10::cuda::CUDAGuard guard(offsets_in.device());
  const at::Tensor offsets = offsets_in.contiguous();
  const at::Tensor thing_mask = thing_mask_in.contiguous();
  const int64_t batch = offsets.size(0), height = offsets.size(2), width = offsets.size(3);
  const int64_t max_centers = centers.size(1);
  at::Tensor instance = at::zeros({batch, height, width}, offsets.options().dtype(at::kInt));
  at::Tensor instance_scores = at::zeros({batch, height, width}, offsets.options());
  if (instance.numel() == 0 || max_centers == 0) return {instance, instance_scores};
  // The same conversion as the reference's centers.to(torch.float32).
  const at::Tensor centers_f = centers.to(at::kFloat).contiguous();
  const at::Tensor scores = center_scores.contiguous();
  const at::Tensor counts = num_centers.contiguous();
  const at::Tensor need_all = needs_all_pixels(scores, counts).contiguous();
  C10_CUDA_CHECK(cuda::launch_center_group(
      centers_f.const_data_ptr<float>(), scores.const_data_ptr<float>(),
      counts.const_data_ptr<int64_t>(), need_all.const_data_ptr<bool>(),
      offsets.const_data_ptr<float>(), thing_mask.const_data_ptr<bool>(), batch, max_centers,
      height, width, instance.data_ptr<int32_t>(), instance_scores.data_ptr<float>(),
      c10::cuda::getCurrentCUDAStream()));
  return {instance, instance_scores};
}

at::Tensor merge_semantic_instance_cuda(const at::Tensor& semantic_in,
                                        const at::Tensor& instance_in,
                                        at::IntArrayRef thing_class_ids, int64_t label_divisor,
                                        int64_t stuff_area_limit, int64_t void_label) {
  check_merge(semantic_in, instance_in, label_divisor, void_label);
  const c10::cuda::CUDAGuard guard(semantic_in.device());
  const at::Tensor semantic = semantic_in.contiguous();
  const at::Tensor instance = instance_in.contiguous();
  const int64_t batch = semantic.size(0), plane = semantic.size(1) * semantic.size(2);
  at::Tensor out = at::empty(semantic.sizes(), semantic.options());
  if (out.numel() == 0) return out;
  const auto device = semantic.device();
  const auto stream = c10::cuda::getCurrentCUDAStream();

  // Value ranges, with one host sync.
  const auto semantic_range = at::aminmax(semantic);
  const auto instance_range = at::aminmax(instance);
  const at::Tensor ranges = at::stack({std::get<0>(semantic_range), std::get<1>(semantic_range),
                                       std::get<0>(instance_range), std::get<1>(instance_range)})
                                .to(at::kLong)
                                .cpu();
  const int64_t* range = ranges.const_data_ptr<int64_t>();
  check_semantic_min(range[0]);
  const int64_t classes = range[1] + 1;
  const std::vector<uint8_t> is_thing = thing_class_table(thing_class_ids, classes);
  at::Tensor is_thing_host = at::empty({classes}, at::kByte);
  std::copy(is_thing.begin(), is_thing.end(), is_thing_host.data_ptr<uint8_t>());
  const at::Tensor is_thing_device = is_thing_host.to(device);
  const InstanceIndex index = index_instances(instance, range[2], range[3], classes, plane);

  const auto int_options = semantic.options().dtype(at::kInt);
  at::Tensor votes = at::zeros({batch, index.num_ids, classes}, int_options);
  at::Tensor first_seen = at::full({batch, index.num_ids}, plane, int_options);
  at::Tensor area = at::zeros({batch, classes}, int_options);
  const cuda::MergeStats stats{
      semantic.const_data_ptr<int32_t>(),
      instance.const_data_ptr<int32_t>(),
      index.inverse.defined() ? index.inverse.const_data_ptr<int64_t>() : nullptr,
      is_thing_device.const_data_ptr<uint8_t>(),
      batch,
      plane,
      index.num_ids,
      classes,
      votes.data_ptr<int32_t>(),
      first_seen.data_ptr<int32_t>(),
      area.data_ptr<int32_t>()};
  C10_CUDA_CHECK(cuda::launch_merge_stats(stats, stream));

  at::Tensor new_ids, keep_class;
  resolve_merge(votes.cpu(), first_seen.cpu(), area.cpu(), is_thing, label_divisor,
                stuff_area_limit, new_ids, keep_class);
  const at::Tensor new_ids_device = new_ids.to(device);
  const at::Tensor keep_device = keep_class.to(device);
  C10_CUDA_CHECK(cuda::launch_merge_write(
      stats, new_ids_device.const_data_ptr<int32_t>(), keep_device.const_data_ptr<uint8_t>(),
      label_divisor, static_cast<int32_t>(void_label * label_divisor), out.data_ptr<int32_t>(),
      stream));
  return out;
}

}  // namespace
}  // namespace deeplab_zoo::panoptic

TORCH_LIBRARY_IMPL(deeplab_zoo, CUDA, m) {
  using namespace deeplab_zoo::panoptic;
  m.impl("semantic_argmax", &semantic_argmax_cuda);
  m.impl("center_heatmap_nms", &center_heatmap_nms_cuda);
  m.impl("center_group", &center_group_cuda);
  m.impl("merge_semantic_instance", &merge_semantic_instance_cuda);
}
