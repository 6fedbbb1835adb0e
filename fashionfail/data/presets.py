"""Augmentation recipes, picked by name (params `augment`), built from torchvision v2 transforms.

`facere` and `facere_plus` are the paper's recipes (FACTS.md); `cpu` is a light recipe for the
small synthetic images of the embedded default. Every training recipe ends with a guard that
drops degenerate boxes, since torchvision's detection models reject boxes of zero width or height.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from fashionfail.data.crop import WHITE_FILL, CropToObjects


def _train(name: str) -> list[v2.Transform]:
    if name == "facere":
        return [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomHorizontalFlip(0.5),
            v2.SanitizeBoundingBoxes(min_size=10),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([CropToObjects(margin=50)], p=0.5),
            v2.ScaleJitter(target_size=(2400, 2400), scale_range=(0.1, 2.0)),
        ]
    if name == "facere_plus":
        return [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomZoomOut(fill=WHITE_FILL, side_range=(1.0, 8.0), p=0.5),
            v2.ScaleJitter(target_size=(2400, 2400), scale_range=(0.2, 2.0)),
            v2.SanitizeBoundingBoxes(min_size=10),
            v2.ToDtype(torch.float32, scale=True),
        ]
    if name == "cpu":
        return [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomZoomOut(fill=WHITE_FILL, side_range=(1.0, 1.6), p=0.3),
            v2.SanitizeBoundingBoxes(min_size=2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    if name == "none":
        return [v2.ToDtype(torch.float32, scale=True)]
    raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}")


PRESETS = ("facere", "facere_plus", "cpu", "none")


IMPLS = ("fast", "literal")


def train_transforms(
    name: str, impl: str = "literal", min_size: int = 800, max_size: int = 1333
) -> v2.Compose:
    """The training recipe `name`; ValueError for an unknown name.

    impl="fast" computes `facere` / `facere_plus` directly at the model's size (min_size /
    max_size), giving what the literal recipe followed by the model's resize gives without its
    huge intermediate images (fashionfail.data.fast_recipes); other recipes have one implementation.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown augmentation implementation {impl!r}; choose fast or literal")
    if impl == "fast" and name in ("facere", "facere_plus"):
        from fashionfail.data.fast_recipes import FastPaperRecipe

        # FastPaperRecipe closes with SanitizeBoundingBoxes(min_size=1) itself (masks indexed once).
        return v2.Compose([FastPaperRecipe(name, min_size, max_size)])
    steps = _train(name)
    return v2.Compose([v2.ToImage(), *steps, v2.SanitizeBoundingBoxes(min_size=1)])


def val_transforms(name: str) -> v2.Compose:
    """The validation recipe matching training recipe `name` (no randomness)."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}"
        )
    # The paper sanitises Facere's val boxes (min 10 px) but not Facere+'s.
    sanitize = [v2.SanitizeBoundingBoxes(min_size=10)] if name == "facere" else []
    return v2.Compose(
        [
            v2.ToImage(),
            *sanitize,
            v2.ToDtype(torch.float32, scale=True),
            v2.SanitizeBoundingBoxes(min_size=1),
        ]
    )
