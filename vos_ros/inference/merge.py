"""Merging per-target probability windows into one label map."""

from __future__ import annotations

import numpy as np


def merge_windows(
    windows: list[tuple[np.ndarray, tuple[int, int]]], ids: list[int], height: int, width: int, threshold: float,
    claims: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[int, float]]:
    """Label map (uint16) and each id's score (mean probability over the pixels it won).

    `windows` are (probabilities, (x, y) offset) per id. A pixel goes to the id
    with the highest probability there, if that is above `threshold` (overlaps
    are resolved per pixel by mask score), except that `claims` (id -> bool map
    over that id's window) hands the claimed pixels above `threshold` to that id
    outright. Work is confined to the union of the windows: everything outside
    is background.
    """
    labels = np.zeros((height, width), np.uint16)
    if not windows:
        return labels, {}
    x0 = min(x for _, (x, _) in windows)
    y0 = min(y for _, (_, y) in windows)
    x1 = max(x + w.shape[1] for w, (x, _) in windows)
    y1 = max(y + w.shape[0] for w, (_, y) in windows)
    stack = np.zeros((len(windows) + 1, y1 - y0, x1 - x0), np.float32)
    stack[0] = threshold
    for k, (window, (x, y)) in enumerate(windows):
        stack[k + 1, y - y0:y - y0 + window.shape[0], x - x0:x - x0 + window.shape[1]] = window
    winner = stack.argmax(axis=0)
    for k, ((window, (x, y)), object_id) in enumerate(zip(windows, ids)):
        if claims and object_id in claims:
            claimed = claims[object_id] & (window > threshold)
            winner[y - y0:y - y0 + window.shape[0], x - x0:x - x0 + window.shape[1]][claimed] = k + 1
    labels[y0:y1, x0:x1] = np.array([0, *ids], np.uint16)[winner]
    scores = {}
    for k, object_id in enumerate(ids):
        won = winner == k + 1
        scores[object_id] = float(stack[k + 1][won].mean()) if won.any() else 0.0
    return labels, scores
