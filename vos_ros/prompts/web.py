"""The prompt page's HTTP server (no ROS here): a small JSON API over a `PromptBackend` and the
page's static files (prompts/page/), served from the package, nothing from a CDN.

API (JSON bodies; errors are {"error": why} with 400, 404, 409, 413 or 503 and change nothing):
- GET  /api/frame            latest frame as JPEG; headers X-Frame-Stamp (ns), X-Frame-Width, X-Frame-Height.
                             The served frame is kept (the last `kept_frames`) so a prompt can refer to it.
- POST /api/segment          {stamp, box?, positives?, negatives?} -> {mask: base64 PNG (0/255), area}
- POST /api/send             {stamp, mask: base64 PNG, name?, id?} -> {success, message, added_ids}
- GET  /api/targets          -> {targets: [{id, name, status, score}]}
- POST /api/remove           {ids: [...]} -> {success, message}
- POST /api/reset            -> {success, message}
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Protocol

import cv2
import numpy as np

from .prompt import Prompt, Segmenter

MAX_BODY_BYTES = 8 * 2**20  # a 4K mask PNG is well under this
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
          "/style.css": ("style.css", "text/css")}


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    success: bool
    message: str
    added_ids: tuple[int, ...] = ()


class PromptBackend(Protocol):
    """What the page needs from the robot side (the ROS node implements it)."""

    def latest_frame(self) -> tuple[int, np.ndarray] | None:
        """(stamp ns, RGB image) of the newest camera frame, or None before the first."""

    def add_target(self, stamp: int, mask: np.ndarray, target_id: int, name: str) -> Reply: ...

    def remove_targets(self, ids: list[int]) -> Reply: ...

    def reset(self) -> Reply: ...

    def targets(self) -> list[dict]:
        """[{id, name, status, score}] of the tracker's latest output."""


def _points(value, field: str) -> tuple[tuple[float, float], ...]:
    try:
        points = tuple((float(x), float(y)) for x, y in (value or ()))
    except (TypeError, ValueError):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'{field}' must be a list of [x, y] pairs") from None
    return points


def prompt_from_json(body: dict) -> Prompt:
    box = body.get("box")
    if box is not None:
        try:
            box = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            box = ()
        if len(box) != 4:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'box' must be [x1, y1, x2, y2]")
    return Prompt(box=box, positives=_points(body.get("positives"), "positives"),
                  negatives=_points(body.get("negatives"), "negatives"))


def encode_mask(mask: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    return base64.b64encode(png.tobytes()).decode()


def decode_mask(text, shape: tuple[int, int]) -> np.ndarray:
    """A base64 PNG (any non-zero pixel is object) of exactly `shape`, else RequestError."""
    try:
        data = base64.b64decode(str(text), validate=True)
        mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except (ValueError, cv2.error):
        mask = None
    if mask is None:
        raise RequestError(HTTPStatus.BAD_REQUEST, "'mask' is not a base64 PNG image")
    if mask.shape != shape:
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"mask is {mask.shape[1]}x{mask.shape[0]}, the frame {shape[1]}x{shape[0]}")
    if not mask.any():
        raise RequestError(HTTPStatus.BAD_REQUEST, "the mask is empty")
    return mask > 0


class PromptPage:
    """Serves the page for `backend`, segmenting prompts with `segmenter`, on host:port (port 0:
    any free one; `port` tells which)."""

    def __init__(self, backend: PromptBackend, segmenter: Segmenter, host: str = "127.0.0.1", port: int = 8765,
                 kept_frames: int = 16, jpeg_quality: int = 85):
        self.backend, self.segmenter = backend, segmenter
        self.kept_frames, self.jpeg_quality = kept_frames, jpeg_quality
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()  # served frames, oldest first
        self._lock = threading.Lock()
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server interface
                page._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                page._handle(self, "POST")

            def log_message(self, *args):  # requests are not worth a log line each
                pass

        self._posts = {"/api/segment": self._segment, "/api/send": self._send_target, "/api/remove": self._remove,
                       "/api/reset": self._reset}
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="prompt_page", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- requests
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        try:
            if method == "GET" and path in STATIC:
                name, kind = STATIC[path]
                self._respond(request, HTTPStatus.OK, resources.files(__package__).joinpath("page", name).read_bytes(),
                           kind)
            elif method == "GET" and path == "/api/frame":
                self._frame(request)
            elif method == "GET" and path == "/api/targets":
                self._json(request, {"targets": self.backend.targets()})
            elif method == "POST" and path in self._posts:
                self._json(request, self._posts[path](self._body(request)))
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no {method} {path}")
        except RequestError as e:
            self._json(request, {"error": str(e)}, e.status)
        except ValueError as e:  # a prompt the segmenter cannot use
            self._json(request, {"error": str(e)}, HTTPStatus.BAD_REQUEST)

    def _body(self, request: BaseHTTPRequestHandler) -> dict:
        try:
            length = int(request.headers.get("Content-Length", "0"))
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            request.close_connection = True  # the body is not read
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request of {length} bytes is over the {MAX_BODY_BYTES}-byte limit")
        raw = request.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    def _frame(self, request: BaseHTTPRequestHandler) -> None:
        latest = self.backend.latest_frame()
        if latest is None:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "no camera frame received yet")
        stamp, image = latest
        with self._lock:
            self._frames[stamp] = image
            self._frames.move_to_end(stamp)
            while len(self._frames) > self.kept_frames:
                self._frames.popitem(last=False)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        self._respond(request, HTTPStatus.OK, jpeg.tobytes(), "image/jpeg",
                   {"X-Frame-Stamp": str(stamp), "X-Frame-Width": str(image.shape[1]),
                    "X-Frame-Height": str(image.shape[0])})

    def _served_frame(self, body: dict) -> tuple[int, np.ndarray]:
        try:
            stamp = int(body.get("stamp"))
        except (TypeError, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'stamp' (ns, from X-Frame-Stamp) is required") from None
        with self._lock:
            image = self._frames.get(stamp)
        if image is None:
            raise RequestError(HTTPStatus.CONFLICT, f"frame {stamp} is no longer kept: take a new frame")
        return stamp, image

    def _segment(self, body: dict) -> dict:
        _, image = self._served_frame(body)
        mask = self.segmenter.segment(image, prompt_from_json(body))
        return {"mask": encode_mask(mask), "area": int(mask.sum())}

    def _respond(self, request, status, data: bytes, kind: str, headers: dict | None = None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    def _json(self, request, payload: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._respond(request, status, json.dumps(payload).encode(), "application/json")

    # ----------------------------------------------------------- tracker calls
    def _next_id(self) -> int:
        return max((t["id"] for t in self.backend.targets()), default=0) + 1

    def _send_target(self, body: dict) -> dict:
        stamp, image = self._served_frame(body)
        mask = decode_mask(body.get("mask"), image.shape[:2])
        try:
            target_id = int(body["id"]) if body.get("id") not in (None, "") else self._next_id()
        except (TypeError, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'id' must be an integer") from None
        if not 1 <= target_id <= 65535:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"id {target_id} is outside 1..65535")
        name = str(body.get("name") or "")[:64]
        return _reply(self.backend.add_target(stamp, mask, target_id, name))

    def _remove(self, body: dict) -> dict:
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'ids' must be a non-empty list of integers")
        return _reply(self.backend.remove_targets(ids))

    def _reset(self, body: dict) -> dict:
        return _reply(self.backend.reset())



def _reply(reply: Reply) -> dict:
    return {"success": reply.success, "message": reply.message, "added_ids": list(reply.added_ids)}
