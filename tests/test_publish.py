"""A published checkpoint's bytes do not depend on the folder the run was made in."""

from __future__ import annotations

import torch

from fashionfail.models.train import canonical_checkpoint

KEY = "AtomicModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}"


def _checkpoint(work) -> dict:
    """What Lightning's ModelCheckpoint state holds after a run in `work`: absolute paths."""
    return {
        "state_dict": {"w": torch.arange(6.0)},
        "callbacks": {
            KEY: {
                "best_model_path": str(work / "best.ckpt"),
                "last_model_path": str(work / "last.ckpt"),
                "dirpath": str(work),
                "best_k_models": {str(work / "best.ckpt"): torch.tensor(0.5)},
                "elsewhere": "/data/weights.pth",
            }
        },
    }


def _published(folder) -> tuple[bytes, dict]:
    work = folder / "models/.facere.resume/0123abcd"
    work.mkdir(parents=True)
    torch.save(_checkpoint(work), work / "best.ckpt")
    canonical_checkpoint(work / "best.ckpt", work)
    data = (work / "best.ckpt").read_bytes()
    return data, torch.load(work / "best.ckpt", weights_only=False)


def test_two_clones_publish_the_same_bytes(tmp_path):
    one, state = _published(tmp_path / "clone-a")
    two, _ = _published(tmp_path / "clone-bb")
    assert one == two
    assert str(tmp_path).encode() not in one
    cb = state["callbacks"][KEY]
    assert cb["best_model_path"] == "best.ckpt" and cb["last_model_path"] == "last.ckpt"
    assert cb["dirpath"] == "." and list(cb["best_k_models"]) == ["best.ckpt"]
    assert cb["elsewhere"] == "/data/weights.pth"  # paths outside the run's folder stay
    assert torch.equal(state["state_dict"]["w"], torch.arange(6.0))
