"""The node imports on Humble (Python 3.10, rclpy 3.3), Jazzy and Kilted: only rclpy modules that all
three have, one shim for what moved (rclpy.qos_event -> rclpy.event_handler in Iron), and no syntax
newer than Python 3.10 (Humble's, Ubuntu 22.04 / JetPack 6)."""

import ast
import importlib
import sys
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vos_ros"
# rclpy modules present, with the names imported from them, from Humble to Kilted.
COMMON_RCLPY = {"rclpy", "rclpy.callback_groups", "rclpy.context", "rclpy.executors", "rclpy.lifecycle",
                "rclpy.node", "rclpy.parameter", "rclpy.qos", "rclpy.task", "rclpy.time", "rclpy.duration"}
SHIMMED = {"rclpy.event_handler": "rclpy.qos_event"}  # Iron and later: Humble


def _rclpy_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rclpy":
            yield node, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rclpy":
                    yield node, alias.name


def test_only_common_rclpy_modules_and_the_shim_guarded_by_import_error():
    shim_sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 10))
        guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                   and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in t.handlers)
                   for n in ast.walk(t)}
        for node, module in _rclpy_imports(tree):
            if module in SHIMMED or module in SHIMMED.values():
                assert id(node) in guarded, f"{path.name}: {module} imported without its ImportError fallback"
                shim_sites.append(path.name)
            else:
                assert module in COMMON_RCLPY, f"{path.name} imports {module}, which not every distro has"
    assert sorted(set(shim_sites)) == ["qos.py"]


def test_qos_module_imports_where_only_the_humble_module_exists(monkeypatch):
    from rclpy import event_handler

    from vos_ros.ros import qos

    humble = types.ModuleType("rclpy.qos_event")

    class PublisherEventCallbacks(event_handler.PublisherEventCallbacks):
        pass

    class SubscriptionEventCallbacks(event_handler.SubscriptionEventCallbacks):
        pass

    humble.PublisherEventCallbacks, humble.SubscriptionEventCallbacks = PublisherEventCallbacks, SubscriptionEventCallbacks
    monkeypatch.setitem(sys.modules, "rclpy.event_handler", None)  # import fails, as on Humble
    monkeypatch.setitem(sys.modules, "rclpy.qos_event", humble)
    try:
        shimmed = importlib.reload(qos)
        assert shimmed.PublisherEventCallbacks is PublisherEventCallbacks
        pub, sub = shimmed.incompatible_qos_events(None, "image", "sensor_data")
        assert isinstance(pub, PublisherEventCallbacks) and isinstance(sub, SubscriptionEventCallbacks)
    finally:
        monkeypatch.undo()
        importlib.reload(qos)
    assert qos.PublisherEventCallbacks is event_handler.PublisherEventCallbacks
