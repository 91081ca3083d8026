"""The prompt page in a real headless browser (Debian's chromium through selenium), the tracker and
the page node in their own processes: a box drawn on a frame of a played clip becomes a target
that the tracker then follows."""

import os
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from ros_test_helpers import spin_until

from vos_ros.data.synthetic import make_clip
from vos_ros.ros.bench import node_command, stop

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM), reason="chromium and chromedriver are not installed")

CLIP = make_clip(num_frames=120, size=(320, 240), num_objects=1, seed=3)  # played once, no cut
RATE_HZ = 4.0
MIN_IOU = 0.6  # mean IoU of the tracked object over the frames after the box was drawn
ARRAYS_AFTER = 12  # object arrays scored after the target was added


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_box_drawn_on_the_page_is_tracked(ctx, weights_file, tmp_path):
    import rclpy
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from sensor_msgs.msg import Image

    from vos_ros.msg import TrackedObjectArray
    from vos_ros.ros.image_conv import numpy_to_imgmsg
    from vos_ros.ros.messages import labels_from_array

    port = _free_port()
    tracker_args = ["--ros-args", "-p", "image_qos:=reliable", "-p", "adaptation_iterations:=0", "-p", "cpu_threads:=1",
                    "-p", "publish_overlay:=false", "-p", "init_mask_topic:=unused"]
    tracker_args += ["-p", f"weights:={weights_file}"] if weights_file else []
    # The page's default segmenter (the learnt prompt network), as a user gets it.
    page_args = ["--ros-args", "-p", f"port:={port}", "-p", "image_qos:=reliable"]
    procs = [subprocess.Popen(node_command(exe) + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for exe, args in (("tracker_node", tracker_args), ("prompt_ui", page_args))]
    node = rclpy.create_node("clip_player", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    images = node.create_publisher(Image, "image", 10)
    arrays: list[TrackedObjectArray] = []
    node.create_subscription(TrackedObjectArray, "vos/objects", arrays.append, 50)
    index_of: dict[int, int] = {}  # stamp (ns) -> clip frame

    def play():
        count = len(index_of)
        if count < len(CLIP.frames):
            msg = numpy_to_imgmsg(CLIP.frames[count], "rgb8")
            msg.header.stamp.sec = 1000 + count
            index_of[(1000 + count) * 10**9] = count
            images.publish(msg)

    node.create_timer(1.0 / RATE_HZ, play)
    stop_spin = threading.Event()

    def spin():
        while not stop_spin.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin)
    browser = None
    try:
        assert spin_until(executor, lambda: images.get_subscription_count() >= 2, 60), "tracker and page subscribed"
        spinner.start()
        browser = _browser()
        _wait(lambda: _try_get(browser, f"http://127.0.0.1:{port}/"), 60, "the page to be served")
        frame = browser.find_element(By.ID, "frame")
        _wait(lambda: frame.get_attribute("data-stamp"), 30, "a frame on the page")
        browser.find_element(By.ID, "live").click()  # freeze
        time.sleep(0.5)  # a poll in flight may still land
        stamp = int(frame.get_attribute("data-stamp"))
        truth = CLIP.labels[index_of[stamp]] == 1
        ys, xs = np.nonzero(truth)
        box = (xs.min() - 4, ys.min() - 4, xs.max() + 5, ys.max() + 5)

        overlay = browser.find_element(By.ID, "overlay")
        rect = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                      "return [r.width, r.height, arguments[0].width, arguments[0].height];", overlay)
        scale = rect[0] / rect[2]

        def offset(x, y):  # image pixel -> offset from the element's centre, in CSS pixels
            return int((x - rect[2] / 2) * scale), int((y - rect[3] / 2) * scale)

        ActionChains(browser).move_to_element_with_offset(overlay, *offset(box[0], box[1])).click_and_hold() \
            .move_to_element_with_offset(overlay, *offset((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)) \
            .move_to_element_with_offset(overlay, *offset(box[2], box[3])).release().perform()
        body = browser.find_element(By.TAG_NAME, "body")
        _wait(lambda: body.get_attribute("data-mask") == "ready", 60, "the mask preview")
        assert int(frame.get_attribute("data-stamp")) == stamp, "drawing froze the frame"
        browser.find_element(By.ID, "name").send_keys("sprite")
        # The mask preview before sending (docs/prompt_page.png is one: VOS_ROS_SCREENSHOT=docs/prompt_page.png).
        browser.save_screenshot(os.environ.get("VOS_ROS_SCREENSHOT") or str(tmp_path / "prompt_page.png"))
        browser.find_element(By.ID, "send").click()
        _wait(lambda: body.get_attribute("data-sent"), 60, "the tracker's answer")
        status = browser.find_element(By.ID, "status").text
        assert body.get_attribute("data-sent") == "ok", status

        def tracked():
            return [a for a in list(arrays) if a.objects and _stamp(a) > stamp]

        _wait(lambda: len(tracked()) >= ARRAYS_AFTER, 120, f"{ARRAYS_AFTER} object arrays after the add")
        scores = []
        for array in tracked()[:ARRAYS_AFTER]:
            assert [o.id for o in array.objects] == [1] and array.objects[0].label == "sprite"
            truth = CLIP.labels[index_of[_stamp(array)]] == 1
            labels = labels_from_array(array) == 1
            scores.append((labels & truth).sum() / max((labels | truth).sum(), 1))
        assert np.mean(scores) > MIN_IOU, (scores, [(o.status, o.score, o.box.x_offset, o.box.y_offset, o.box.width, o.box.height) for a in tracked()[:ARRAYS_AFTER] for o in a.objects], box)
        row = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#targets tbody tr[data-id='1']"), 10,
                    "the target in the page's list")
        assert "sprite" in row[0].text
        assert all(p.poll() is None for p in procs)
    finally:
        if browser is not None:
            browser.quit()
        stop_spin.set()
        if spinner.is_alive():
            spinner.join()
        logs = [stop(p) for p in procs]
        executor.shutdown()
        node.destroy_node()
    assert "prompt page on http://127.0.0.1" in logs[1], logs[1][-2000:]


def _try_get(browser, url) -> bool:
    try:
        browser.get(url)
    except Exception:  # noqa: BLE001 - the server may not listen yet
        return False
    return "vos_ros" in browser.title


def _stamp(array) -> int:
    return array.header.stamp.sec * 10**9 + array.header.stamp.nanosec
