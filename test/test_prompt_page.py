"""The prompt page's HTTP API against a stand-in tracker (no ROS): frames, segmenting, sending,
and bad requests that get a clear answer and change nothing."""

import base64
import json
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from vos_ros.data.synthetic import make_clip
from vos_ros.prompts.grabcut import GrabCutSegmenter
from vos_ros.prompts.web import MAX_BODY_BYTES, PromptPage, Reply

CLIP = make_clip(num_frames=2, size=(320, 240), num_objects=1, seed=3)


class StandInTracker:
    def __init__(self):
        self.frame = None
        self.added, self.removed, self.resets = [], [], 0

    def latest_frame(self):
        return self.frame

    def add_target(self, stamp, mask, target_id, name):
        self.added.append((stamp, mask, target_id, name))
        return Reply(True, f"tracking [{target_id}]", (target_id,))

    def remove_targets(self, ids):
        self.removed.append(ids)
        return Reply(False, f"unknown ids {ids}")

    def reset(self):
        self.resets += 1
        return Reply(True, "reset")

    def targets(self):
        return [{"id": t, "name": n, "status": "tracking", "score": 0.9} for _, _, t, n in self.added]


@pytest.fixture
def page():
    tracker = StandInTracker()
    server = PromptPage(tracker, GrabCutSegmenter(), port=0)
    server.start()
    yield tracker, f"http://127.0.0.1:{server.port}"
    server.stop()


def request(url, body=None, raw: bytes | None = None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.read(), reply.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def error(status_body):
    return json.loads(status_body[1])["error"]


def test_page_segments_a_box_and_sends_it_stamped(page):
    tracker, url = page
    status, body, _ = request(url + "/")
    assert status == 200 and b'id="overlay"' in body
    assert request(url + "/app.js")[0] == 200 and request(url + "/style.css")[0] == 200
    assert request(url + "/api/frame")[0] == 503  # no frame yet
    tracker.frame = (1234, CLIP.frames[0])
    status, jpeg, headers = request(url + "/api/frame")
    assert status == 200 and headers["X-Frame-Stamp"] == "1234" and headers["X-Frame-Width"] == "320"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)

    truth = CLIP.labels[0] == 1
    ys, xs = np.nonzero(truth)
    box = [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 3, int(ys.max()) + 3]
    status, body, _ = request(url + "/api/segment", {"stamp": 1234, "box": box})
    assert status == 200, body
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(json.loads(body)["mask"]), np.uint8), cv2.IMREAD_GRAYSCALE) > 0
    assert (mask & truth).sum() / (mask | truth).sum() > 0.7

    status, body, _ = request(url + "/api/send", {"stamp": 1234, "mask": json.loads(body)["mask"], "name": "sprite"})
    assert status == 200 and json.loads(body) == {"success": True, "message": "tracking [1]", "added_ids": [1]}
    stamp, sent, target_id, name = tracker.added[0]
    assert (stamp, target_id, name) == (1234, 1, "sprite") and np.array_equal(sent, mask)
    assert json.loads(request(url + "/api/targets")[1])["targets"][0]["id"] == 1
    # without an id, the next free one after the tracker's targets
    again = json.loads(request(url + "/api/segment", {"stamp": 1234, "box": box})[1])["mask"]
    assert json.loads(request(url + "/api/send", {"stamp": 1234, "mask": again})[1])["added_ids"] == [2]


def test_bad_requests_get_a_reason_and_change_nothing(page):
    tracker, url = page
    tracker.frame = (55, CLIP.frames[0])
    request(url + "/api/frame")
    small = base64.b64encode(cv2.imencode(".png", np.full((10, 10), 255, np.uint8))[1].tobytes()).decode()
    empty = base64.b64encode(cv2.imencode(".png", np.zeros((240, 320), np.uint8))[1].tobytes()).decode()
    cases = [
        (request(url + "/api/send", {"stamp": 55, "mask": small}), 400, "mask is 10x10, the frame 320x240"),
        (request(url + "/api/send", {"stamp": 55, "mask": empty}), 400, "empty"),
        (request(url + "/api/send", {"stamp": 55, "mask": "not base64!"}), 400, "not a base64 PNG"),
        (request(url + "/api/send", {"stamp": 54, "mask": small}), 409, "no longer kept"),
        (request(url + "/api/send", {"mask": small}), 400, "'stamp'"),
        (request(url + "/api/segment", {"stamp": 55, "box": [1, 2, 3]}), 400, "'box' must be"),
        (request(url + "/api/segment", {"stamp": 55, "positives": [[900, 5]]}), 400, "outside"),
        (request(url + "/api/segment", {"stamp": 55}), 400, "needs a box"),
        (request(url + "/api/remove", {"ids": "all"}), 400, "'ids' must be"),
        (request(url + "/api/segment", raw=b"{not json"), 400, "not JSON"),
        (request(url + "/api/segment", raw=b"[1, 2]"), 400, "JSON object"),
        (request(url + "/api/nothing", {}), 404, "no POST /api/nothing"),
        (request(url + "/api/send", raw=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1)}), 413, "limit"),
    ]
    for (status, body, _), want_status, want_text in cases:
        assert status == want_status and want_text in error((status, body)), (want_text, status, body)
    assert tracker.added == [] and tracker.removed == []
    # the tracker's own refusal comes back as it is
    status, body, _ = request(url + "/api/remove", {"ids": [7]})
    assert status == 200 and json.loads(body) == {"success": False, "message": "unknown ids [7]", "added_ids": []}
    assert json.loads(request(url + "/api/reset", {})[1])["success"] and tracker.resets == 1
