"""Human names for the model's six classes and the derived axes.

The checkpoint's config calls its outputs ``LABEL_0`` .. ``LABEL_5``, which mean nothing to a
reader. The classes are the cross product arousal (low, high) x valence (negative, neutral,
positive) in row-major order, so the name is derived from the index once, here, and every view
uses these strings.
"""

from __future__ import annotations

from streamser.constants import NUM_CLASSES

AROUSAL_LEVELS: tuple[str, ...] = ("low", "high")
"""Arousal level of class ``i`` is ``AROUSAL_LEVELS[i // 3]``."""

VALENCE_LEVELS: tuple[str, ...] = ("negative", "neutral", "positive")
"""Valence level of class ``i`` is ``VALENCE_LEVELS[i % 3]``."""

AROUSAL_AXIS = "arousal (0..1, derived)"
"""Axis title: arousal is computed from the class probabilities, not predicted directly."""

VALENCE_AXIS = "valence (-1..1, derived)"
"""Axis title: valence is computed from the class probabilities, not predicted directly."""


def class_name(i: int) -> str:
    """Name class ``i`` as ``"<arousal> / <valence>"``: ``class_name(0) == "low / negative"``."""
    if not 0 <= i < NUM_CLASSES:
        raise IndexError(f"class index {i} outside 0..{NUM_CLASSES - 1}")
    return f"{AROUSAL_LEVELS[i // 3]} / {VALENCE_LEVELS[i % 3]}"


CLASS_NAMES: tuple[str, ...] = tuple(class_name(i) for i in range(NUM_CLASSES))
"""All six names in model output order."""

DEMO_WARNING = "demo model: random weights, output is meaningless"
"""Said wherever the demo model's output is shown, logged or reported."""
