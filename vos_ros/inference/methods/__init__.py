"""Per-frame segmenters behind one interface (base.py); `method:` in the engine config picks one."""

from __future__ import annotations

from ...config import EngineConfig
from .base import Method
from .dtn import DTNMethod
from .dyenet import DyeNetMethod
from .lip import LIPMethod
from .ovsnet import OVSNetMethod
from .rgmp import RGMPMethod

METHODS: dict[str, type[Method]] = {m.name: m for m in (DTNMethod, RGMPMethod, LIPMethod, OVSNetMethod, DyeNetMethod)}


def method_class(config: EngineConfig) -> type[Method]:
    """The config's method (its name checked against config.METHOD_NAMES when the config loaded)."""
    return METHODS[config.method]


__all__ = ["METHODS", "Method", "method_class"]
