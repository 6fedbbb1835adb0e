"""Category ids: Fashionpedia's 46 classes, the FashionFail subset and the model's label space.

This is the only module that knows which Fashionpedia classes FashionFail keeps and how ids are
shifted for the model (label 0 is background). Everything else asks it.
"""

from __future__ import annotations

from typing import Literal, get_args

FASHIONPEDIA_NAMES: tuple[str, ...] = (
    "shirt, blouse",
    "top, t-shirt, sweatshirt",
    "sweater",
    "cardigan",
    "jacket",
    "vest",
    "pants",
    "shorts",
    "skirt",
    "coat",
    "dress",
    "jumpsuit",
    "cape",
    "glasses",
    "hat",
    "headband, head covering, hair accessory",
    "tie",
    "glove",
    "watch",
    "belt",
    "leg warmer",
    "tights, stockings",
    "sock",
    "shoe",
    "bag, wallet",
    "scarf",
    "umbrella",
    "hood",
    "collar",
    "lapel",
    "epaulette",
    "sleeve",
    "pocket",
    "neckline",
    "buckle",
    "zipper",
    "applique",
    "bead",
    "bow",
    "flower",
    "fringe",
    "ribbon",
    "rivet",
    "ruffle",
    "sequin",
    "tassel",
)
NUM_FASHIONPEDIA = len(FASHIONPEDIA_NAMES)  # 46, ids 0..45

# FashionFail keeps Fashionpedia ids 0..26 except these (FACTS.md).
_FF_EXCLUDED = frozenset({2, 12, 16, 19, 20})
FASHIONFAIL_FP_IDS: tuple[int, ...] = tuple(i for i in range(27) if i not in _FF_EXCLUDED)
NUM_FASHIONFAIL = len(FASHIONFAIL_FP_IDS)  # 22

BACKGROUND = 0  # model label 0; dataset class k becomes model label k + 1

# The two label spaces (class sets) a model predicts or an evaluation scores; named only here.
LabelSpaceName = Literal["fashionpedia", "fashionfail"]
LABEL_SPACES: tuple[str, ...] = get_args(LabelSpaceName)
_DATASET_IDS: dict[str, tuple[int, ...]] = {
    "fashionpedia": tuple(range(NUM_FASHIONPEDIA)),
    "fashionfail": FASHIONFAIL_FP_IDS,
}

# Supercategory / level of the Fashionpedia taxonomy: ids 0-26 are whole garments and accessories,
# 27-45 garment parts and decorations.
_SUPERCATEGORIES = (
    ["upperbody"] * 6
    + ["lowerbody"] * 3
    + ["upperbody"]
    + ["wholebody"] * 3
    + ["head"] * 3
    + ["neck"]
    + ["arms and hands"] * 2
    + ["waist"]
    + ["legs and feet"] * 4
    + ["others"] * 3
    + ["garment parts"] * 7
    + ["closures"] * 2
    + ["decorations"] * 10
)


def fashionpedia_categories() -> list[dict]:
    """The `categories` list of a Fashionpedia annotation file (id, name, supercategory, ...)."""
    return [
        {
            "id": i,
            "name": name,
            "supercategory": _SUPERCATEGORIES[i],
            "level": 2,
            "taxonomy_id": f"{'cdpt'[i >= 27]}{i:04d}",
        }
        for i, name in enumerate(FASHIONPEDIA_NAMES)
    ]


class LabelSpace:
    """Maps dataset category ids to contiguous model labels 1..N (0 is background) and back.

    `name` is "fashionpedia" (46 classes, dataset ids 0..45) or "fashionfail" (22 classes; the
    dataset files use Fashionpedia ids, the model uses the remapped 1..22).
    """

    def __init__(self, name: str):
        if name not in _DATASET_IDS:
            raise ValueError(
                f"unknown label space {name!r}: use {' or '.join(map(repr, LABEL_SPACES))}"
            )
        dataset_ids = _DATASET_IDS[name]
        self.name = name
        self.dataset_ids = dataset_ids
        self._to_label = {cid: k + 1 for k, cid in enumerate(dataset_ids)}

    @property
    def num_classes(self) -> int:
        """Number of model outputs, background included."""
        return len(self.dataset_ids) + 1

    def to_label(self, category_id: int) -> int:
        """Dataset category id -> model label (1..N); KeyError names the id if unknown."""
        try:
            return self._to_label[category_id]
        except KeyError:
            raise KeyError(f"category_id {category_id} is not a {self.name} class") from None

    def to_category(self, label: int) -> int:
        """Model label (1..N) -> dataset category id."""
        if not 1 <= label <= len(self.dataset_ids):
            raise KeyError(f"label {label} is outside 1..{len(self.dataset_ids)} ({self.name})")
        return self.dataset_ids[label - 1]

    def names(self) -> dict[int, str]:
        """Dataset category id -> name."""
        return {cid: FASHIONPEDIA_NAMES[cid] for cid in self.dataset_ids}

    def contains(self, category_id: int) -> bool:
        return category_id in self._to_label
