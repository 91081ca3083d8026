"""Streaming inference: `Tracker` holds the state, `step()` runs one frame."""

from .engine import Tracker
from .types import EngineInputError, FrameResult, Stream, TargetResult, TargetStatus

__all__ = ["Tracker", "EngineInputError", "FrameResult", "Stream", "TargetResult", "TargetStatus"]
