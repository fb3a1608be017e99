"""SE block detection in ONNX graphs (placeholder until the SE-pass work lands)."""

from __future__ import annotations


def find_se_blocks(model) -> list:
    """Return the SE blocks found in ``model`` (an onnx.ModelProto). Each has ``to_dict()``."""
    return []
