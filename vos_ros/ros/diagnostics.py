"""The tracker's /diagnostics status: rates, latency, frame counts, engine and per-target state."""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

FALLING_BEHIND_S = 0.5  # mean latency above which the status warns


class RateCounter:
    """Events per second over the last diagnostics period."""

    def __init__(self):
        self.total = 0
        self._last_total = 0
        self._last_time = time.monotonic()

    def rate(self) -> float:
        now = time.monotonic()
        rate = (self.total - self._last_total) / max(now - self._last_time, 1e-6)
        self._last_total, self._last_time = self.total, now
        return rate


def tracker_status(name: str, engine, received: RateCounter, published: RateCounter, latencies: list[float],
                   counts: dict[str, int], configuration: str, backend: str, last_error: str,
                   targets: list) -> DiagnosticStatus:
    """`engine` None: the networks are not loaded (inactive); `latencies` in seconds, since the last call."""
    status = DiagnosticStatus(name=f"{name}: tracking", hardware_id=str(engine.device) if engine else "")
    mean = float(np.mean(latencies)) if latencies else float("nan")
    values = {
        "input_rate_hz": f"{received.rate():.2f}",
        "output_rate_hz": f"{published.rate():.2f}",
        "latency_mean_ms": f"{1e3 * mean:.1f}" if latencies else "nan",
        "latency_max_ms": f"{1e3 * max(latencies):.1f}" if latencies else "nan",
        **{k: str(v) for k, v in counts.items()},
        "backend": engine.backend.label if engine else backend,
        "device": str(engine.device) if engine else "",
        "configuration": configuration,
        "theta_c": f"{engine.theta_c:.3f}" if engine else "",
        "last_error": last_error,
    }
    for t in targets:
        values[f"target_{t.id}"] = f"{t.status.name.lower()} score={t.score:.2f} stream={t.stream.name}"
    if engine is None:
        status.level, status.message = DiagnosticStatus.ERROR, "networks not loaded"
    elif received.total == 0:
        status.level, status.message = DiagnosticStatus.WARN, "no images received"
    elif latencies and mean > FALLING_BEHIND_S:
        status.level, status.message = DiagnosticStatus.WARN, f"falling behind (latency > {FALLING_BEHIND_S} s)"
    else:
        status.level, status.message = DiagnosticStatus.OK, f"tracking {len(targets)} targets"
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
