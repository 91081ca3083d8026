"""TensorRT without TensorRT: whether it can run here, and the input shapes a method sends
through its exported graphs checked against the optimisation profiles its engines would get
(an engine rejects any shape outside its profile)."""

import torch

from vos_ros.backends.tensorrt import ShapeRange


def tensorrt_and_cuda() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def record_graph_inputs(backend) -> dict[str, list[tuple[tuple[int, ...], ...]]]:
    """Wraps an exported-graph backend's `_run`: graph -> the input shapes of every call from now on."""
    recorded: dict[str, list[tuple[tuple[int, ...], ...]]] = {}
    run = backend._run

    def recording(graph, *inputs):
        recorded.setdefault(graph, []).append(tuple(tuple(t.shape) for t in inputs))
        return run(graph, *inputs)

    backend._run = recording
    return recorded


def assert_within_profiles(recorded, profiles: dict[str, dict[str, ShapeRange]], inputs: dict[str, tuple[str, ...]]):
    """Every recorded call fits its graph's profile, and each profile's opt lies within min..max."""
    assert set(recorded) == set(profiles)
    for graph, calls in recorded.items():
        for call in calls:
            for name, shape in zip(inputs[graph], call):
                r = profiles[graph][name]
                assert len(shape) == len(r.min), (graph, name)
                assert all(lo <= s <= hi for lo, s, hi in zip(r.min, shape, r.max)), (graph, name, shape, r)
        for r in profiles[graph].values():
            assert all(lo <= o <= hi for lo, o, hi in zip(r.min, r.opt, r.max))
