"""Typed configuration: one model per params.yaml section.

Unknown keys, missing keys and wrong types fail at start-up with the key's name, so a typo in
params.yaml or a `dvc exp run -S` override never trains for an hour on a default by mistake.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fashionfail.core.categories import LabelSpaceName


class ConfigError(Exception):
    """A params file or section is wrong; the message names the file and key."""


# YAML 1.1 (PyYAML) reads `1e-3` and `5e2` as strings: a float needs a dot (`1.0e-3`).
_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _takes_float(annotation: object) -> bool:
    """Whether a field's type accepts a float (float, float | int, tuple[float, float], ...)."""
    if annotation is float:
        return True
    return any(_takes_float(a) for a in get_args(annotation))


def _yaml11_number(value: object) -> object:
    if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_yaml11_number(v) for v in value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers_written_as_strings(cls, values: Any) -> Any:
        """Accept `lr: 1e-3` (a string in YAML 1.1, so in params.yaml) for float fields."""
        if not isinstance(values, dict):
            return values
        fields = cls.model_fields
        return {
            k: _yaml11_number(v) if k in fields and _takes_float(fields[k].annotation) else v
            for k, v in values.items()
        }


class OfficialSource(_Section):
    """Where and how to fetch the real data."""

    fashionpedia_url: str
    fashionfail_url: str
    retries: int
    backoff_s: float
    timeout_s: float
    image_workers: int
    fail_on_missing_images: bool


class SyntheticSource(_Section):
    """Sizes of the embedded synthetic data set."""

    seed: int
    image_size: int
    fp_train_images: int
    fp_val_images: int
    ff_train_images: int
    ff_val_images: int
    ff_test_images: int
    max_objects: int
    # small: `image_size` squares (the embedded default); real: the real data's sizes
    # (Fashionpedia-like up to 1024 px with varied aspect ratios, FashionFail 2400 x 2400).
    profile: Literal["small", "real"] = "small"


SourceName = Literal["synthetic", "official"]
SOURCES: tuple[str, ...] = get_args(SourceName)  # the download sources, defined here only


class DownloadConfig(_Section):
    source: SourceName
    official: OfficialSource
    synthetic: SyntheticSource


class SplitConfig(_Section):
    val_fraction: float
    seed: int

    @field_validator("val_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be strictly between 0 and 1")
        return v


InvalidPolicy = Literal["drop", "error"]  # rle-encode: drop and count, or fail
RLE_POLICIES: tuple[str, ...] = get_args(InvalidPolicy)


class RleEncodeConfig(_Section):
    invalid: InvalidPolicy


# Every metric MaskRCNNModule logs (fashionfail/models/module.py), i.e. what `monitor` can name.
_LOSSES = (
    "loss",
    "loss_classifier",
    "loss_box_reg",
    "loss_mask",
    "loss_objectness",
    "loss_rpn_box_reg",
)
MAP_METRICS = ("mAP", "AP50", "AP75", "AR1", "AR100")
LOGGED_METRICS = (
    *(f"val/{k}" for k in _LOSSES),
    *(f"val/{iou}_{k}" for iou in ("bbox", "segm") for k in MAP_METRICS),
    *(f"train/{k}" for k in _LOSSES),
)

WEIGHT_KEYWORDS = ("none", "coco")  # TrainConfig.weights values that name no file
Optimizer = Literal["sgd", "adam", "adamw"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


class TrainConfig(_Section):
    """One training run: Facere and Facere+ differ only in these values."""

    classes: LabelSpaceName
    arch: str
    weights: str  # WEIGHT_KEYWORDS or a path to a weights file (state dict or Lightning checkpoint)
    head_init: Literal["random", "remap"]
    # From a checkpoint: "transfer" (copy matching tensors into a fresh, fully trainable model)
    # or "original" (the checkpoint's own structure, all of it but the two predictors).
    # Defaults of the fields added with issue #8 (absent in older checkpoints) are params.yaml's.
    finetune_init: Literal["transfer", "original"] = "transfer"
    min_size: int
    max_size: int
    augment: str
    batch_size: int
    # facere / facere_plus computed at the model's size (fast) or step by step (literal)
    augment_impl: Literal["fast", "literal"] = "fast"
    num_workers: int
    shuffle: bool
    max_epochs: int
    optimizer: Optimizer
    lr: float
    momentum: float
    betas: tuple[float, float]
    weight_decay: float
    accelerator: str
    devices: int | str
    strategy: str
    num_nodes: int
    precision: str
    seed: int
    deterministic: bool
    monitor: str
    monitor_mode: Literal["min", "max"]
    eval_map_every_n_epochs: int
    val_batch_size: int = 8
    val_mode: Literal["eval_bn", "train"] = "eval_bn"  # train: the original's (BN stats update)
    val_loss_mean: Literal["per_image", "per_batch"] = "per_image"
    # val mAP on the first N val images of each rank (a fixed subset; 0: all) and its evaluator
    eval_map_images: int = 0
    eval_map_backend: Literal["faster_coco_eval", "pycocotools"] = "faster_coco_eval"
    limit_train_batches: float | int
    log_every_n_steps: int
    # Any other pl.Trainer argument (gradient_clip_val, accumulate_grad_batches, ...), passed on
    # as given; names are checked against pl.Trainer's signature. Absent in older checkpoints.
    trainer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trainer")
    @classmethod
    def _trainer_arguments(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_trainer_arguments(v)
        return v

    @field_validator(
        "max_epochs",
        "batch_size",
        "min_size",
        "max_size",
        "num_nodes",
        "log_every_n_steps",
        "val_batch_size",
    )
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        # max_epochs -1 would mean "forever" to Lightning: a run that never ends.
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("num_workers", "eval_map_every_n_epochs")
    @classmethod
    def _not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be > 0")
        return v

    @field_validator("limit_train_batches")
    @classmethod
    def _limit(cls, v: float | int) -> float | int:
        if isinstance(v, float) and not 0.0 < v <= 1.0:
            raise ValueError("a fraction must be in (0, 1] (an int is a number of batches)")
        if isinstance(v, int) and v < 1:
            raise ValueError("must be > 0: a fraction in (0, 1] or a number of batches >= 1")
        return v

    @field_validator("monitor")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in LOGGED_METRICS:
            raise ValueError(
                f"{v!r} is not a metric the training logs; use one of {', '.join(LOGGED_METRICS)}"
            )
        return v

    @property
    def weights_file(self) -> Path | None:
        """`weights` as a file path (~ expanded), or None for the keywords `none` and `coco`."""
        return None if self.weights in WEIGHT_KEYWORDS else Path(self.weights).expanduser()


# pl.Trainer arguments that a TrainConfig field sets (set them there, so there is one place), and
# those the training stage owns (its loggers, checkpoints and output folder).
TRAINER_FIELDS = frozenset(
    {
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "precision",
        "max_epochs",
        "deterministic",
        "limit_train_batches",
        "log_every_n_steps",
    }
)
TRAINER_OWNED = frozenset({"logger", "callbacks", "default_root_dir", "enable_checkpointing"})


def trainer_parameters() -> list[str]:
    """The names pl.Trainer() takes, read from its signature (Lightning imported on first use)."""
    import inspect

    import pytorch_lightning as pl

    return [n for n in inspect.signature(pl.Trainer).parameters if n != "self"]


def check_trainer_arguments(args: dict[str, Any]) -> None:
    """ValueError naming the first argument pl.Trainer does not take, or that is set elsewhere."""
    import difflib

    if not args:
        return
    known = trainer_parameters()
    for name in args:
        if name in TRAINER_FIELDS:
            raise ValueError(f"{name}: set it as the section's own `{name}`, not under trainer")
        if name in TRAINER_OWNED:
            raise ValueError(f"{name}: set by the training stage itself, not configurable")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{name}: not a pl.Trainer argument{hint}")


class PredictConfig(_Section):
    """Inference settings: the predict command's options and the evaluate section's base.

    The one place their rules live (the command line is validated through this model too).
    """

    batch_size: int
    num_workers: int
    device: str
    score_threshold: float  # evaluate: overlays only; metrics use every detection returned

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("num_workers")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("score_threshold")
    @classmethod
    def _score(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be between 0 and 1")
        return v


class EvaluateConfig(PredictConfig):
    """Shared by the three evaluate stages; paths and class sets come from dvc.yaml."""

    num_overlays: int
    model: Literal["checkpoint", "onnx"] = "checkpoint"  # which file of each model is scored
    box_decimals: int = 2  # box corners rounded to this many decimals (the original: 1)

    @field_validator("num_overlays")
    @classmethod
    def _non_negative_overlays(cls, v: int) -> int:
        return PredictConfig._non_negative(v)

    @field_validator("box_decimals")
    @classmethod
    def _non_negative_decimals(cls, v: int) -> int:
        return PredictConfig._non_negative(v)


# The ONNX opset of the paper's published models and of `fashionfail export-onnx`.
DEFAULT_OPSET = 17


class ExportOnnxConfig(_Section):
    """The export-onnx stage: opset and how many random images check onnxruntime vs PyTorch."""

    opset: int
    verify_images: int

    @field_validator("opset")
    @classmethod
    def _opset(cls, v: int) -> int:
        if not 11 <= v <= 21:
            raise ValueError("must be between 11 and 21 (torch's TorchScript exporter)")
        return v

    @field_validator("verify_images")
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v


class ReportConfig(_Section):
    """The report stage: which matches its failure cases use, how many, calibration bins."""

    iou_type: Literal["bbox", "segm"]
    calibration_bins: int
    failures_per_class: int
    max_failures: int
    score_threshold: float

    @field_validator("calibration_bins", "failures_per_class", "max_failures")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("score_threshold")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be between 0 and 1")
        return v


SECTIONS: dict[str, type[_Section]] = {
    "download": DownloadConfig,
    "split": SplitConfig,
    "rle_encode": RleEncodeConfig,
    "train_facere": TrainConfig,
    "finetune_facere_plus": TrainConfig,
    "evaluate": EvaluateConfig,
    "export_onnx": ExportOnnxConfig,
    "report": ReportConfig,
}

S = TypeVar("S", bound=_Section)


def parse_section(model: type[S], values: object, where: str) -> S:
    """Validate `values` against `model`; ConfigError names `where` and the offending key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    # YAML gives lists where we want tuples; strict mode would reject them.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(problems) from None


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read a params file as a plain dict; ConfigError if it is missing or not YAML."""
    path = Path(path)
    try:
        with path.open() as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a params file") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    return params


def load_section(
    section: str, path: str | os.PathLike = "params.yaml", model: type[S] | None = None
) -> S:
    """Load and validate one section of a params file."""
    params = load_params(path)
    if section not in params:
        raise ConfigError(f"{path}: missing section {section!r}")
    return parse_section(model or SECTIONS[section], params[section], f"{path}:{section}")
