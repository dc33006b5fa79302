"""Weights that ship with the package (see MODEL_CARD.md when present)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def bundled_path(scale: int) -> Path | None:
    """The bundled WDSR-B 32x16 checkpoint for ``scale``, or None if this install has none."""
    path = HERE / f"wdsr-b-32x16-x{scale}.safetensors"
    return path if path.is_file() else None
