"""Detection datasets for training: torchvision CocoDetection wrapped for the v2 transforms.

The only additions to torchvision's wrapper: the annotation file and its images are validated
first (fashionfail.data.coco_checks: one-line errors, tolerated problems dropped and counted in
`report`), category ids are mapped to model labels through a LabelSpace, crowd annotations are
left out of the targets, images without annotations get empty targets, and unreadable image files
fail with their path and image id.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL.Image import DecompressionBombError, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection, VisionDataset, wrap_dataset_for_transforms_v2
from torchvision.transforms.v2 import functional as F

from fashionfail.core.categories import LabelSpace
from fashionfail.core.jsonio import DataError, load_json
from fashionfail.data.coco_checks import check_annotations, check_image_files

_TARGET_KEYS = ("image_id", "boxes", "labels", "masks", "iscrowd")


class _QuietCoco(CocoDetection):
    """CocoDetection whose annotation file is parsed with our checked loader (clear errors)."""

    def __init__(self, root: str, ann_file: str, space: LabelSpace):
        from pycocotools.coco import COCO

        data = load_json(ann_file)
        # Structure, categories and geometry (coco_checks' rules): errors name the file and id;
        # tolerated problems are dropped here and counted in `self.report`.
        self.report = check_annotations(
            data, ann_file, category_ids=space.dataset_ids, category_label=f"a {space.name} class"
        )
        if not data["images"]:
            raise DataError(f"{ann_file}: no images")
        check_image_files(data["images"], root, ann_file)
        VisionDataset.__init__(self, root)  # CocoDetection's own __init__ would re-read the file
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            coco.createIndex()
        self.coco = coco
        self.ids = sorted(coco.imgs)


class DetectionDataset(Dataset):
    """(image, target) pairs with model labels 1..N; `transforms` is a v2 transform or None."""

    def __init__(
        self,
        img_dir: str | Path,
        ann_file: str | Path,
        space: LabelSpace,
        transforms: Callable | None = None,
    ):
        self.img_dir, self.ann_file = Path(img_dir), Path(ann_file)
        base = _QuietCoco(str(self.img_dir), str(self.ann_file), space)
        self.report = base.report  # annotations dropped / counted by the checks
        self.base = wrap_dataset_for_transforms_v2(base, target_keys=_TARGET_KEYS)
        self.ids = base.ids
        self.space = space
        self.transforms = transforms
        # Index once: model label per category id of this file.
        self._lut = {
            cid: space.to_label(cid) for cid in base.coco.getCatIds() if space.contains(cid)
        }

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        """Sample `index`; an (index, seed) pair (EpochSampler's) draws the augmentation from
        a generator seeded with `seed`, leaving the process's random state as it was."""
        if isinstance(index, tuple):
            index, seed = index
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._sample(index)
        return self._sample(index)

    def _sample(self, index: int) -> tuple[Any, dict[str, Any]]:
        try:
            image, target = self.base[index]
        except (OSError, UnidentifiedImageError, SyntaxError, DecompressionBombError) as e:
            info = self.base.coco.imgs[self.ids[index]]
            raise DataError(
                f"{self.img_dir / info['file_name']}: cannot decode image "
                f"(image id {info['id']}): {e}"
            ) from None
        target = self._to_model_target(image, target)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _to_model_target(self, image: Any, target: dict[str, Any]) -> dict[str, Any]:
        h, w = F.get_size(image)
        if "boxes" not in target:  # the wrapper returns only image_id for an image without objects
            return {
                "image_id": target["image_id"],
                "boxes": tv_tensors.BoundingBoxes(
                    torch.zeros((0, 4)), format="XYXY", canvas_size=(h, w)
                ),
                "labels": torch.zeros((0,), dtype=torch.int64),
                "masks": tv_tensors.Mask(torch.zeros((0, h, w), dtype=torch.uint8)),
            }
        keep = torch.tensor([not c for c in target.pop("iscrowd")], dtype=torch.bool)
        labels = torch.tensor([self._lut[int(c)] for c in target["labels"]], dtype=torch.int64)
        boxes, masks = target["boxes"], target["masks"]
        if not keep.all():  # crowd annotations never reach training (masks are big: index once)
            boxes, labels, masks = boxes[keep], labels[keep], masks[keep]
        return {
            "image_id": target["image_id"],
            # torchvision's RoI heads require float boxes; COCO integer boxes arrive as int64.
            "boxes": tv_tensors.wrap(boxes.float(), like=target["boxes"]),
            "labels": labels,
            "masks": tv_tensors.Mask(masks),
        }


def collate(batch: list[tuple[Any, dict]]) -> tuple[list, list]:
    """Detection batches are lists: images differ in size and targets in object count."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class EpochSampler(Sampler[tuple[int, int]]):
    """Training order and augmentation seeds as a function of (seed, epoch) alone.

    Yields (index, sample seed) pairs for DetectionDataset: the order of an epoch (shuffled or
    not) and each sample's augmentation are the same whatever came before, however many
    workers load them and whenever the loader's iterator is made. So a run resumed from a
    checkpoint trains its remaining epochs exactly as an uninterrupted run does. Lightning calls
    `set_epoch` before each epoch (and EpochSeed does too: under DDP Lightning wraps this
    sampler and keeps the epoch to itself).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int):
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_seed(self) -> int:
        return (self.seed * 1_000_003 + self.epoch) % 2**62

    def __iter__(self):
        epoch_seed = self._epoch_seed()
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(epoch_seed))
            order = order.tolist()
        else:
            order = range(self.size)
        for i in order:
            yield i, (epoch_seed * 1_000_003 + i) % 2**62

    def __len__(self) -> int:
        return self.size


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader with the detection collate function. With `seed` (training), an
    EpochSampler: order and augmentations depend only on (seed, epoch)."""
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=None if sampler is not None else shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        # The loader's own draws (its workers' base seed) come from this generator, not the
        # global one the model samples from: making an iterator changes no training result.
        generator=torch.Generator().manual_seed(seed or 0),
        persistent_workers=num_workers > 0,
    )
