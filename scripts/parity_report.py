"""Prints DeepLab2 parity errors for every covered case (the numbers in README / notes).

Usage: python scripts/parity_report.py [--parity-dir DIR] [--large]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deeplab_zoo import list_models
from deeplab_zoo.parity import build_seeded_model, compare_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("DEEPLAB_ZOO_PARITY_DIR",
                             str(Path(__file__).resolve().parents[2] / "shared" / "parity"))
    parser.add_argument("--parity-dir", default=default)
    parser.add_argument("--large", action="store_true", help="also the 513x513 / 64x96 cases")
    args = parser.parse_args()
    root = Path(args.parity_dir)
    cases = json.loads((root / "cases.json").read_text())
    print(f"machine: {platform.machine()} {platform.processor()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    folders = [root / "cases"] + ([root / "large" / "cases"] if args.large else [])
    for folder in folders:
        for case_file in sorted(folder.glob("*.npz")):
            case = case_file.stem
            entry = cases.get(case) or cases.get(case.removesuffix("_even"))
            if entry is None or entry["model"].split(".")[0] not in list_models():
                continue
            ref = np.load(case_file)
            meta = json.loads(case_file.with_suffix(".json").read_text())
            image = ref["input"] if "input" in ref.files else np.load(
                root / "large" / "inputs.npz")["image_513"]
            start = time.perf_counter()
            model = build_seeded_model(root, folder / f"{case}.keys.json.gz", entry["model"],
                                       crop_size=image.shape[:2])
            sample = ref["sample_yx"] if meta.get("storage") == "sampled" else None
            result = compare_case(model, ref, image, sample)
            cells = ", ".join(f"{k} {v:.2e}" if "pred" not in k else f"{k} {v:.2%}"
                              for k, v in result.items())
            size = "x".join(map(str, image.shape[:2]))
            print(f"{folder.parent.name}/{case} [{size}] ({time.perf_counter() - start:.1f}s): "
                  f"{cells}")


if __name__ == "__main__":
    main()
