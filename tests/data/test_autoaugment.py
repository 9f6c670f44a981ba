"""DeepLab2's AutoAugment colour ops and policies, checked on hand-computed pixels."""
from __future__ import annotations

import pytest
import torch

from deeplab_zoo.data import autoaugment as aa


def const(*rgb: int, h: int = 4, w: int = 4) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8)[:, None, None].expand(3, h, w).clone()


def test_policies_decode() -> None:
    policy = aa.get_policy("simple_classification_policy")
    assert len(policy) == 5 and all(len(sub) == 2 for sub in policy)
    assert policy[0] == [("Sharpness", 0.4, 7), ("Brightness", 0.2, 10)]
    assert policy[3] == [("Solarize", 0.2, 7), ("Equalize", 0.6, 9)]
    scaled = aa.get_policy("simple_classification_policy_magnitude_scale_0.2")
    assert scaled[0][0][0] == "Sharpness" and scaled[0][0][2] == pytest.approx(1.4)
    assert aa.get_policy("simple_classification_policy", 0.5)[1][1][2] == 5
    with pytest.raises(ValueError):
        aa.get_policy("rand_augment")


def test_pixel_ops() -> None:
    img = const(10, 200, 130)
    assert aa.invert(img)[:, 0, 0].tolist() == [245, 55, 125]
    # Solarize at level 7: threshold int(0.7 * 256) = 179.
    threshold = aa.OPS["Solarize"][1](7)[0]
    assert threshold == 179
    assert aa.solarize(img, threshold)[:, 0, 0].tolist() == [10, 55, 130]
    assert aa.posterize(img, 2)[:, 0, 0].tolist() == [0, 192, 128]
    assert aa.posterize(img, 0).sum() == 0
    # Brightness level 10: factor 1.9, extrapolated and clipped: 10*1.9=19, 380->255, 247.
    factor = aa.OPS["Brightness"][1](10)[0]
    assert factor == pytest.approx(1.9)
    assert aa.brightness(img, factor)[:, 0, 0].tolist() == [19, 255, 247]
    # Interpolation truncates: 0.5 * 10 = 5, 0.5 * 131 = 65.5 -> 65.
    assert aa.blend(torch.zeros_like(img), const(10, 131, 0), 0.5)[:, 0, 0].tolist() == [5, 65, 0]


def test_grayscale_color_contrast() -> None:
    img = const(100, 150, 200)
    # TF: (0.2989*100 + 0.587*150 + 0.114*200) / 255 * 255.5, truncated = 141.
    assert int(aa.grayscale(img)[0, 0, 0]) == 141
    assert aa.color(img, 0.0)[:, 0, 0].tolist() == [141, 141, 141]
    # Contrast blends towards num_pixels / 256 (TF's quirk): 16 / 256 -> 0 here.
    assert aa.contrast(img, 0.5)[:, 0, 0].tolist() == [50, 75, 100]
    big = const(100, 150, 200, h=32, w=48)  # 1536 pixels -> degenerate 6
    assert aa.contrast(big, 0.5)[:, 0, 0].tolist() == [53, 78, 103]


def test_autocontrast_equalize_sharpness() -> None:
    ch = torch.tensor([[50, 100], [150, 250]], dtype=torch.uint8)
    img = torch.stack([ch, ch, torch.full_like(ch, 7)])
    out = aa.autocontrast(img)
    # scale 255/200: 50 -> 0, 100 -> 63.75 -> 63, 150 -> 127.5 -> 127, 250 -> 255.
    assert out[0].tolist() == [[0, 63], [127, 255]]
    assert out[2].tolist() == [[7, 7], [7, 7]]  # flat channel unchanged
    # 256 zeros and 256 tens: step (512 - 256) // 255 = 1, lut[10] = cumsum[9] = 256 -> 255.
    half = torch.cat([torch.zeros(256), torch.full((256,), 10)]).to(torch.uint8).reshape(16, 32)
    eq = aa.equalize(torch.stack([half, half, half]))
    assert set(eq[0].unique().tolist()) == {0, 255} and torch.equal(eq[0] == 255, half == 10)
    flat = const(9, 9, 9)
    assert torch.equal(aa.equalize(flat), flat)  # step 0: unchanged
    spot = const(0, 0, 0, h=5, w=5)
    spot[:, 2, 2] = 130
    sharp = aa.sharpness(spot, 0.0)  # factor 0: the smoothed image (border kept)
    assert sharp[0, 2, 2] == 50 and sharp[0, 1, 1] == 10 and sharp[0, 0, 0] == 0
    assert torch.equal(aa.sharpness(spot, 1.0), spot)


def test_policy_is_deterministic_under_a_seed() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 48), generator=g, dtype=torch.uint8)
    policy = aa.get_policy("simple_classification_policy")
    runs = [aa.apply_policy(img, policy, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    changed = sum(not torch.equal(aa.apply_policy(img, policy, torch.Generator().manual_seed(s)),
                                  img) for s in range(30))
    assert 0 < changed < 30
    with pytest.raises(ValueError):
        aa.apply_policy(img.float(), policy)
