"""Where and how widely a LOST target is looked for (ours; DTN does not handle lost targets).

Both feature modes search at the size the target had when last seen whole (its very last
box may be a sliver of it, or a one-frame false re-identification):
- `full_frame` widens the anchor grid around where it was last seen every lost frame
  (`lost_search_growth`), up to the whole feature map;
- `target_region` scans the frame with tiles at the target's own scale, one tile per frame,
  every other frame the one where it was last seen, the others nearest first, with anchors
  over the whole tile.
Sparser anchor cells as the grid widens: at most (3 x crpn.grid)^2 cells, so a lost target
costs about what a few tracked ones do (it is searched every frame). How its candidates are
ranked and accepted is the method's (DTN: first-frame appearance, targets.reacquire_bar).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import EngineConfig
from ..model.geometry import Box, Region, box_center
from ..model.step_inputs import target_region
from .targets import Target

MAX_GROWTH_STEPS = 16  # growth stops here (1.5^16 is far past any frame)


def search_box(target: Target) -> Box:
    """Where a lost target is looked for first: its last box's centre at the size it had when
    last seen whole."""
    cx, cy = box_center(target.box)
    w, h = target.tracked_size
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def search_tile(target: Target, config: EngineConfig, width: int, height: int) -> Region:
    """target_region while lost: the next tile of a scan over the frame.

    Tiles are squares of `lost_tile_scale` x the target's tracking region side, overlapping
    by half (any object of the target's size lies wholly inside one), one per lost frame: the
    tile nearest where the target was last seen on odd lost frames, the others nearest-first
    on even ones, so that where the target vanished is never more than a frame from being
    looked at again (an occluded object mostly reappears there).
    """
    tracking_side = target_region(search_box(target), config.features, width, height).side
    side = min(tracking_side * config.tracking.lost_tile_scale, float(max(width, height)))

    def centres(extent: int) -> np.ndarray:
        if side >= extent:
            return np.array([extent / 2])
        return np.linspace(side / 2, extent - side / 2, int(math.ceil((extent - side) / (side / 2))) + 1)

    cx, cy = box_center(target.box)
    tiles = sorted(((x, y) for y in centres(height) for x in centres(width)),
                   key=lambda c: (c[0] - cx) ** 2 + (c[1] - cy) ** 2)
    n = target.frames_lost
    x, y = tiles[0 if n % 2 else (n // 2) % len(tiles)]
    return Region(x - side / 2, y - side / 2, side, config.features.region_size)


def search_anchors(target: Target, region: Region, map_size: tuple[int, int], stride: int,
                   config: EngineConfig) -> tuple[Box, int, int]:
    """A lost target's conditional-anchor window on `region`'s feature map: (the box anchors
    are centred and sized on, in input pixels; grid cells per side; cell step)."""
    box = region.to_input(search_box(target))
    if config.features.mode == "target_region":  # the whole tile, at the last whole box's size
        w, h = box[2] - box[0], box[3] - box[1]
        mx, my = map_size[0] * stride / 2, map_size[1] * stride / 2
        box = (mx - w / 2, my - h / 2, mx + w / 2, my + h / 2)
        grid = max(map_size) + 1
    else:
        growth = config.tracking.lost_search_growth ** min(target.frames_lost, MAX_GROWTH_STEPS)
        grid = min(2 * int(math.ceil(config.crpn.grid * growth / 2)) + 1, 2 * max(map_size) + 1)
    return box, grid, max(1, math.ceil(grid / (3 * config.crpn.grid)))
