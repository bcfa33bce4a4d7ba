"""Synthetic COCO scenes with exact boxes: black PNGs with one red and one blue filled
rectangle each (lossless PNG, so the pixels are exactly the boxes).

Category ids are deliberately not 1..K (``7`` red, ``3`` blue) so id mapping bugs show.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

RED, BLUE = 7, 3
CATEGORIES = [{"id": RED, "name": "red-box"}, {"id": BLUE, "name": "blue-box"}]
#: RGB colour of each category.
COLOURS = {RED: (255, 0, 0), BLUE: (0, 0, 255)}


def synthetic_scenes(
    count: int = 6, size: int = 160, seed: int = 0
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(coco, {file_name: png_bytes})``; boxes are ``[x, y, w, h]`` integer pixels,
    sides size/5..3size/8 px, the two rectangles of an image never overlap (left/right halves)."""
    rng = np.random.default_rng(seed)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    half = size // 2
    for i in range(count):
        rgb = np.zeros((size, size, 3), np.uint8)
        for slot, category in enumerate((RED, BLUE)):
            w, h = (int(v) for v in rng.integers(size // 5, size * 3 // 8 + 1, size=2))
            x = slot * half + int(rng.integers(0, half - w + 1))
            y = int(rng.integers(0, size - h + 1))
            rgb[y : y + h, x : x + w] = COLOURS[category]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        name = f"scene-{i:03d}.png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        files[name] = png.tobytes()
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
    coco = {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}
    return coco, files
