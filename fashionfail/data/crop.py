"""CropToObjects, the paper's object crop, and the fill its Facere recipe pads with: shared by
the torchvision-v2 recipes (fashionfail.data.presets) and their fast equivalent
(fashionfail.data.fast_recipes)."""

from __future__ import annotations

import math
from typing import Any

from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_size


class CropToObjects(v2.Transform):
    """Crop to the box enclosing all object boxes, grown by `margin` pixels (clipped to the image).

    The paper's Facere recipe applies this with p=0.5 so that objects fill more of the frame.
    Images without boxes pass unchanged.
    """

    def __init__(self, margin: int = 50):
        super().__init__()
        self.margin = margin

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = next((x for x in flat_inputs if isinstance(x, tv_tensors.BoundingBoxes)), None)
        if boxes is None or boxes.numel() == 0:
            return {}
        height, width = query_size(flat_inputs)
        xyxy = F.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        left = max(0, math.floor(xyxy[:, 0].min().item()) - self.margin)
        top = max(0, math.floor(xyxy[:, 1].min().item()) - self.margin)
        right = min(width, math.ceil(xyxy[:, 2].max().item()) + self.margin)
        bottom = min(height, math.ceil(xyxy[:, 3].max().item()) + self.margin)
        return {"top": top, "left": left, "height": bottom - top, "width": right - left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params:
            return inpt
        return self._call_kernel(F.crop, inpt, **params)


WHITE_FILL = {tv_tensors.Image: 255, tv_tensors.Mask: 0, "others": 0}
