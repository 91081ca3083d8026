"""Per-frame segmenters behind one interface (base.py); `method:` in the engine config picks one."""

from __future__ import annotations

from ...config import ConfigError, EngineConfig
from .base import Method
from .dtn import DTNMethod
from .rgmp import RGMPMethod

METHODS: dict[str, type[Method]] = {m.name: m for m in (DTNMethod, RGMPMethod)}


def method_class(config: EngineConfig) -> type[Method]:
    try:
        return METHODS[config.method]
    except KeyError:
        raise ConfigError(f"unknown method '{config.method}'; known methods: {', '.join(sorted(METHODS))}") from None


__all__ = ["METHODS", "Method", "method_class"]
