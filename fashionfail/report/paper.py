"""The FashionFail paper's published numbers: the one place they live in the package.

Values in percent, as printed in the paper. Only mAP_w (box | mask) is known here (FACTS.md); the
paper's other columns (mAP_w@.50, @.75, mAR_w top-1, top-100) are left out, and the report shows
"n/a" for them rather than a number.
"""

from __future__ import annotations

# FashionFail-test, mAP_w: row name -> {iou type: {metric: value in percent}}.
FASHIONFAIL_TEST: dict[str, dict[str, dict[str, float]]] = {
    "amrcnn-spine": {"bbox": {"mAP_w": 21.0}, "segm": {"mAP_w": 21.2}},
    "fformer-swin": {"bbox": {"mAP_w": 22.2}, "segm": {"mAP_w": 20.9}},
    "amrcnn-r50-fpn": {"bbox": {"mAP_w": 18.3}, "segm": {"mAP_w": 18.6}},
    "fformer-r50-fpn": {"bbox": {"mAP_w": 14.4}, "segm": {"mAP_w": 14.5}},
    "Facere": {"bbox": {"mAP_w": 24.0}, "segm": {"mAP_w": 24.3}},
    "Facere+": {"bbox": {"mAP_w": 93.4}, "segm": {"mAP_w": 94.1}},
}

# Facere on Fashionpedia-val (the paper's test set for Facere).
FASHIONPEDIA_VAL: dict[str, dict[str, dict[str, float]]] = {
    "Facere": {"bbox": {"mAP_w": 63.9}, "segm": {"mAP_w": 58.0}},
}
