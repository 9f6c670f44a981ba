"""What MaX-DeepLab and kMaX-DeepLab share: mask-transformer post-processing."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..inference import PredictMixin
from ..postprocess.mask_transformer import mask_transformer_postprocess


class MaskTransformerMixin(PredictMixin):
    """``postprocess``/``predict`` for models whose outputs are mask logits at
    ``mask_output_stride`` plus per-mask class logits (``dataset``, ``postprocess_config``
    and ``mask_output_stride`` are set by the model)."""

    mask_output_stride: int

    def input_size_of(self, outputs: Mapping[str, torch.Tensor]) -> tuple[int, int]:
        """Input size implied by the mask logits: ``(h - 1) * stride + 1`` (exact for the
        ``k * output_stride + 1`` inputs that ``predict`` pads to)."""
        h, w = outputs["pixel_space_mask_logits"].shape[-2:]
        return ((h - 1) * self.mask_output_stride + 1, (w - 1) * self.mask_output_stride + 1)

    @torch.no_grad()
    def postprocess(self, outputs: Mapping[str, torch.Tensor],
                    output_size: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """DeepLab2's MaX-DeepLab post-processor (pixel-wise or mask-wise), batched.

        ``output_size`` defaults to :meth:`input_size_of` (DeepLab2 uses its eval crop,
        which equals the input size). Returns ``panoptic_pred``, ``semantic_pred``,
        ``instance_pred`` (int32) and ``instance_scores``, ``semantic_scores`` (float32),
        all ``[N, H, W]``.
        """
        size = tuple(output_size) if output_size is not None else self.input_size_of(outputs)
        return mask_transformer_postprocess(
            outputs["pixel_space_mask_logits"], outputs["transformer_class_logits"],
            thing_class_ids=self.dataset.thing_class_ids, void_label=self.dataset.ignore_label,
            label_divisor=self.dataset.label_divisor, output_size=size,
            config=self.postprocess_config)
