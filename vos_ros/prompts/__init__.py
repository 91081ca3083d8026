"""What a user gives to choose an object (a box, clicks, a polygon) and the segmenters that
turn it into a mask (no ROS here).

- `learnt` (default, learnt.py): the project's prompt network, trained on still images and
  train video (`vos-ros train-prompts`).
- `grabcut` (grabcut.py): OpenCV GrabCut, nothing learnt.

`vos-ros prompt-eval` measures both on DAVIS (eval/prompt_eval.py).
"""

from __future__ import annotations

from .prompt import Clicks, Prompt, Segmenter, check_image

__all__ = ["SEGMENTERS", "Clicks", "Prompt", "Segmenter", "build_segmenter", "check_image"]

SEGMENTERS = ("learnt", "grabcut")


def build_segmenter(name: str = "learnt", weights: str | None = None, device: str = "cpu") -> Segmenter:
    """A segmenter by name; `weights`: the learnt one's file (default: the shipped weights)."""
    if name == "grabcut":
        from .grabcut import GrabCutSegmenter
        return GrabCutSegmenter()
    if name == "learnt":
        from .learnt import LearntSegmenter
        return LearntSegmenter.from_weights(weights, device)
    raise ValueError(f"unknown prompt segmenter '{name}': use one of {', '.join(SEGMENTERS)}")
