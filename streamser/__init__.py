"""streamser: real-time speech-emotion analysis (arousal and valence) in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamser.version import __version__

if TYPE_CHECKING:
    from streamser.model import EmotionModel, Prediction, load_model

__all__ = ["EmotionModel", "Prediction", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # Lazy, so `streamser --version` and the CLI's argument errors do not wait for torch.
    if name in ("load_model", "EmotionModel", "Prediction"):
        from streamser import model

        return getattr(model, name)
    raise AttributeError(f"module 'streamser' has no attribute {name!r}")
