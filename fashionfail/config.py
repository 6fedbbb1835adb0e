"""Typed configuration: one model per params.yaml section.

Unknown keys, missing keys and wrong types fail at start-up with the key's name, so a typo in
params.yaml or a `dvc exp run -S` override never trains for an hour on a default by mistake.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fashionfail.categories import LabelSpaceName


class ConfigError(Exception):
    """A params file or section is wrong; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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


class RleEncodeConfig(_Section):
    invalid: Literal["drop", "error"]


WEIGHT_KEYWORDS = ("none", "coco")  # TrainConfig.weights values that name no file


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
    optimizer: Literal["sgd", "adam", "adamw"]
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

    @field_validator("val_batch_size")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @property
    def weights_file(self) -> Path | None:
        """`weights` as a file path (~ expanded), or None for the keywords `none` and `coco`."""
        return None if self.weights in WEIGHT_KEYWORDS else Path(self.weights).expanduser()


# pl.Trainer arguments that a TrainConfig field sets (set them there, so there is one place), and
# those the training stage owns (its loggers, checkpoints and output folder).
TRAINER_FIELDS = frozenset({
    "accelerator", "devices", "strategy", "num_nodes", "precision", "max_epochs",
    "deterministic", "limit_train_batches", "log_every_n_steps",
})  # fmt: skip
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


SECTIONS: dict[str, type[_Section]] = {
    "download": DownloadConfig,
    "split": SplitConfig,
    "rle_encode": RleEncodeConfig,
    "train_facere": TrainConfig,
    "finetune_facere_plus": TrainConfig,
    "evaluate": EvaluateConfig,
    "export_onnx": ExportOnnxConfig,
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
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
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
