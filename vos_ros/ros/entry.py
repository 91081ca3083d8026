"""The `main` of a single-node executable (init, spin until Ctrl-C or shutdown, clean up), and awaiting
another thread from a callback."""

from __future__ import annotations

import concurrent.futures
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future as RosFuture


def run_node(make_node: Callable[[], Node], args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


async def await_thread_future(node: Node, future: concurrent.futures.Future, timeout_s: float):
    """Await a future that another thread completes, from a callback of `node`'s executor, which
    keeps serving other callbacks meanwhile; True when it is done within `timeout_s`.

    A blocking wait needed a multi-threaded executor, whose threads contended with the tracker's
    worker for the GIL: engine steps stalled for 150-570 ms now and then and frames were dropped
    (car-shadow at 10 Hz across processes)."""
    woken = RosFuture(executor=node.executor)
    # A done callback makes set_result (the other thread or the timer) schedule it, which wakes the executor.
    woken.add_done_callback(lambda _: None)

    def wake(*_):
        if not woken.done():
            woken.set_result(None)

    future.add_done_callback(wake)
    timer = node.create_timer(timeout_s, wake)
    try:
        await woken
    finally:
        node.destroy_timer(timer)
    return future.done()
