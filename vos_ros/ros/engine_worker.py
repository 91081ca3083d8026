"""The tracker node's engine (ROS-free): loading it with the backend fallback, and the worker, the one
thread that touches it.

Executor callbacks only hand it frames (`offer`: the newest two are kept, an older one
waiting is dropped and counted) and commands (`add`, `remove`, `reset`: futures the
callbacks await). Each round it steps the newest frame first, so that an add for that frame
finds it stepped, then runs the queued commands in order. An add waits for its frame: one
stamped after the newest frame waits up to `wait_s` for it to arrive and be stepped; one on a
past frame is applied there and the new targets catch up over the frames stepped since.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Callable

import numpy as np

from vos_ros.inference.types import EngineInputError, FrameResult
from vos_ros.ros.frame_ring import Frame, FrameNotBuffered, FrameRing

LabelMaker = Callable[[np.ndarray, list[int]], np.ndarray]  # (frame rgb, tracked ids) -> uint16 labels


def load_tracker(config, param: Callable[[str], object]):
    """(the tracker on the `backend` parameter, None), or on `backend_fallback` when that backend cannot
    run here: (tracker, why); `param(name)` reads the node's parameters."""
    import torch  # only when the networks are needed

    from vos_ros.backends import BackendUnavailable
    from vos_ros.inference.engine import Tracker

    backend, fallback = param("backend"), param("backend_fallback")
    common = {"weights": param("weights") or None, "cache_dir": param("engine_cache") or None}
    try:
        return Tracker.from_config(config, device=param("device") or None, backend=backend,
                                   precision=param("precision") or None, **common), None
    except BackendUnavailable as e:
        if fallback == "none":
            raise
        device = (param("device") or None) if torch.cuda.is_available() else "cpu"
        reason = f"backend {backend} unavailable ({e}); running backend_fallback {fallback}"
        return Tracker.from_config(config, device=device, backend=fallback, **common), reason


class AddRejected(Exception):
    """An add, remove or reset that was not applied; nothing changed."""


def labels_as_given(labels: np.ndarray) -> LabelMaker:
    return lambda rgb, tracked: labels


def prompt_labels(mask_from_rgb: Callable[[np.ndarray], np.ndarray]) -> LabelMaker:
    """One new target, with the next free id, from a prompt's mask computed on its frame."""
    def make_labels(rgb: np.ndarray, tracked: list[int]) -> np.ndarray:
        try:
            mask = mask_from_rgb(rgb)
        except ValueError as e:
            raise AddRejected(str(e)) from e
        return mask.astype(np.uint16) * (max(tracked, default=0) + 1)

    return make_labels


@dataclasses.dataclass
class _Add:
    stamp_ns: int  # frame the mask/prompt belongs to; 0 = the newest frame
    make_labels: LabelMaker
    names: dict[int, str]
    source: str  # for log lines
    reply: concurrent.futures.Future
    expires: float  # monotonic time after which a frame that has not arrived is given up


@dataclasses.dataclass
class _Run:  # remove / reset
    run: Callable[[], str]
    reply: concurrent.futures.Future


class EngineWorker:
    def __init__(self, engine, ring_length: int, on_result: Callable[[Frame, FrameResult, dict[int, str]], None],
                 log: Callable[[str], None], warn: Callable[[str], None]):
        """`on_result` publishes a stepped frame's result (with the targets' names); `log` and `warn` report (from this thread)."""
        self.engine = engine
        self.names: dict[int, str] = {}  # target id -> the name it was added with
        self.dropped = 0
        self._on_result, self._log, self._warn = on_result, log, warn
        self._lock = threading.Condition()  # guards the frames and commands
        # Frames waiting for the worker. Two, not one: on a loaded host DDS and the
        # scheduler deliver frames in pairs now and then, and a 1-deep slot dropped one
        # of each pair although the tracker keeps up on average. Beyond two the oldest
        # is dropped (counted): when behind, the tracker works on the newest frames.
        self._pending: collections.deque[Frame] = collections.deque(maxlen=2)
        self._ring = FrameRing(ring_length)
        self._commands: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="vos_tracker_worker", daemon=True)
        self._thread.start()

    # -- executor side -------------------------------------------------------------
    def offer(self, frame: Frame) -> None:
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(frame)
            self._ring.append(frame)
            self._lock.notify()

    def add(self, stamp_ns: int, make_labels: LabelMaker, names: dict[int, str], source: str,
            wait_s: float) -> concurrent.futures.Future:
        """Future of the ids added."""
        return self._submit(_Add(stamp_ns, make_labels, names, source, concurrent.futures.Future(),
                                 time.monotonic() + wait_s))

    def remove(self, ids: list[int]) -> concurrent.futures.Future:
        def remove() -> str:
            removed = self.engine.remove_targets(ids)
            for i in removed:
                self.names.pop(i, None)
            return f"removed {removed}"

        return self._submit(_Run(remove, concurrent.futures.Future()))

    def reset(self) -> concurrent.futures.Future:
        def reset() -> str:
            self.engine.reset()
            self.names.clear()
            return "all targets removed"

        return self._submit(_Run(reset, concurrent.futures.Future()))

    def stop(self) -> None:
        """Join the thread; queued commands are rejected."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=30)
        with self._lock:
            pending, self._commands = list(self._commands), collections.deque()
        for cmd in pending:
            cmd.reply.set_exception(AddRejected("the tracker was deactivated"))

    def _submit(self, cmd):
        with self._lock:
            if self._stop.is_set():
                cmd.reply.set_exception(AddRejected("the tracker is not active"))
            else:
                self._commands.append(cmd)
                self._lock.notify()
        return cmd.reply

    # -- worker thread -------------------------------------------------------------
    def _work(self):
        waiting: list[_Add] = []  # adds whose frame has not arrived or not been stepped yet
        while not self._stop.is_set():
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._commands or self._stop.is_set(), timeout=0.1)
                frame = self._pending.popleft() if self._pending else None
                commands = list(self._commands)
                self._commands.clear()
            if frame is not None:  # first, so that an add for this frame finds it stepped
                self._step(frame)
            for cmd in waiting + commands:
                if isinstance(cmd, _Add):
                    if not self._try_add(cmd):
                        continue
                else:
                    self._run(cmd.reply, cmd.run)
            waiting = [c for c in waiting + commands if isinstance(c, _Add) and not c.reply.done()]

    @staticmethod
    def _run(reply: concurrent.futures.Future, fn: Callable):
        try:
            reply.set_result(fn())
        except (EngineInputError, AddRejected) as e:
            reply.set_exception(e)

    def _try_add(self, cmd: _Add) -> bool:
        """Apply `cmd`; False when its frame has not arrived or been stepped yet (try again later)."""
        with self._lock:
            try:
                index = len(self._ring.frames) - 1 if cmd.stamp_ns == 0 and self._ring.frames else self._ring.find(cmd.stamp_ns)
            except FrameNotBuffered as e:
                if e.too_new and time.monotonic() < cmd.expires:
                    return False
                cmd.reply.set_exception(AddRejected(f"{cmd.source}: {e}; nothing changed"))
                return True
            frame = self._ring.frames[index]
            later = [f.rgb for f in self._ring.processed_after(index)]
            # The engine has not reached this frame: step it first, or the add would put the engine
            # on this frame and the frame's own step would then track it onto itself (an extra
            # refinement pass that cost 2.3 J&F points on car-shadow).
            if not frame.processed and not later and time.monotonic() < cmd.expires:
                return False

        def add() -> list[int]:
            labels = cmd.make_labels(frame.rgb, self.engine.target_ids)
            if labels.shape != frame.rgb.shape[:2]:
                raise AddRejected(f"{cmd.source}: mask is {labels.shape[1]}x{labels.shape[0]} but the frame is "
                                  f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}; nothing changed")
            added = self.engine.add_targets(frame.rgb, labels, later_frames=later)
            for i in added:
                self.names[i] = cmd.names.get(i, self.names.get(i, ""))
            adaptation = "; adapting the MRN to them in the background" if self.engine.adaptation_pending else ""
            self._log(f"{cmd.source}: tracking {added} from the frame at {frame.stamp_ns * 1e-9:.3f} s, "
                      f"caught up over {len(later)} frames{adaptation}")
            return added

        self._run(cmd.reply, add)
        return True

    def _step(self, frame: Frame):
        adapted = self.engine.last_adaptation
        try:
            result = self.engine.step(frame.rgb)
        except EngineInputError as e:
            self._warn(f"frame skipped: {e}")
            return
        if self.engine.last_adaptation is not adapted:  # this step swapped a background fit in
            report = self.engine.last_adaptation
            self._log(f"MRN adapted to {report.target_ids} in {report.seconds:.1f} s (loss on {report.pairs} "
                      f"first-frame pairs {report.loss_before:.3f} -> {report.loss_after:.3f}), in use from the "
                      f"frame at {frame.stamp_ns * 1e-9:.3f} s")
        frame.processed = True
        self._on_result(frame, result, self.names)
