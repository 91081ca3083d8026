"""Deployment backends: ONNX export, ONNX Runtime parity with torch, the TensorRT pieces that run without a GPU.

Parity tolerances (max absolute difference, ONNX Runtime CPU vs torch CPU, fp32;
outputs are of order 1-10): backbone levels 1e-4, MRN logits 1e-4, CRPN head
1e-5, DM confidence 1e-6. Measured here: 7e-6, 2e-6, 2e-7, 6e-8. Random heads
on the ImageNet backbone (no dependence on trained weights); the MRN output conv
is re-drawn larger than its near-zero initialisation so that its own term
counts in the comparison. TensorRT and CUDA tests skip where those are missing.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from torchvision.ops import roi_align

from vos_ros.backends import BackendUnavailable, create_backend
from vos_ros.backends.calibration import BatchFeeder, calibration_batches
from vos_ros.inference.calibration import record_network_inputs
from vos_ros.backends.onnx_export import GRAPHS, OPSET, ensure_onnx, network_digest, read_manifest
from vos_ros.backends.onnxruntime import OnnxRuntimeBackend
from vos_ros.backends.pytorch import TorchBackend
from vos_ros.backends.tensorrt import EngineCache, ShapeRange, engine_fields, engine_key, optimisation_profiles
from vos_ros.config import load_config
from vos_ros.data.synthetic import make_clip
from vos_ros.inference import Tracker
from vos_ros.inference.video import segment_video
from vos_ros.model.backbone import STRIDES
from vos_ros.model.decision import NUM_FEATURES
from vos_ros.model.dtn import load_dtn

from tensorrt_profiles import tensorrt_and_cuda

TOLERANCE = {"backbone": 1e-4, "mrn": 1e-4, "crpn_head": 1e-5, "decision": 1e-6}
TENSORRT_FP32_SLACK = 100  # TensorRT's fp32 builds may use TF32 tensor cores (10-bit mantissa inputs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = load_config("cpu")
    model = load_dtn(config, untrained=True)
    torch.nn.init.normal_(model.mrn.predict.weight, std=0.05)  # seeded by load_dtn
    cache = tmp_path_factory.mktemp("cache")
    folder = ensure_onnx(model, config, cache)
    return config, model, folder, cache


@pytest.fixture(scope="module")
def clip():
    return make_clip(8, (320, 240), num_objects=2, seed=1)


def _network_inputs(backend: TorchBackend, clip, k: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Realistic inputs for each graph with `k` objects (CPU): frame crops, RoIs of their features."""
    g = torch.Generator().manual_seed(k)
    crops = [torch.from_numpy(np.ascontiguousarray(f[8:232, 48:272])).permute(2, 0, 1).float() / 255
             for f in clip.frames[:k]]
    images = torch.stack(crops)
    with torch.no_grad():
        levels = backend.backbone(images)
    boxes = torch.tensor([[i, 30.0 + 10 * i, 40.0, 160.0, 180.0] for i in range(k)])
    rois = tuple(roi_align(f, boxes, (s, s), 1 / st, 2, True) for f, s, st in zip(levels, (56, 28, 14, 7), STRIDES))
    anchors = roi_align(levels[2], boxes.repeat(81, 1), (7, 7), 1 / 16, 2, True)
    return {"backbone": (images,), "decision": (torch.rand(k, NUM_FEATURES, generator=g),),
            "crpn_head": (anchors,), "mrn": rois + (torch.rand(k, 2, 56, 56, generator=g),)}


def _outputs(backend, graph: str, inputs) -> list[torch.Tensor]:
    if graph == "mrn":
        return [backend.mrn(list(inputs[:4]), inputs[4])]
    out = getattr(backend, graph)(*inputs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _assert_parity(reference, candidate, inputs, slack: float = 1.0) -> None:
    for graph, args in inputs.items():
        ref, got = _outputs(reference, graph, args), _outputs(candidate, graph, args)
        assert [r.shape for r in ref] == [o.shape for o in got], graph
        diff = max(float((r - o.to(r.device)).abs().max()) for r, o in zip(ref, got))
        assert diff <= slack * TOLERANCE[graph], (graph, diff)


def test_export_is_checked_opset_17_with_dynamic_object_dimension(exported):
    config, model, folder, _ = exported
    manifest = read_manifest(folder)
    assert manifest is not None and manifest["network_digest"] == network_digest(model, config)
    assert set(manifest["graphs"]) == set(GRAPHS)
    for name, entry in manifest["graphs"].items():
        graph = onnx.load(str(folder / entry["file"]))
        onnx.checker.check_model(graph, full_check=True)
        assert entry["opset"] >= OPSET
        leading = {i.name: i.type.tensor_type.shape.dim[0].dim_param for i in graph.graph.input}
        assert leading == {i: GRAPHS[name].dynamic[i][0] for i in GRAPHS[name].inputs}
        assert len(graph.graph.initializer) > 0  # weights are in the graph; state is not (inputs only)
    assert manifest["graphs"]["mrn"]["inputs"]["priors"] == ["objects", 2, 56, 56]


@pytest.mark.parametrize("k", [1, 3])
def test_onnxruntime_matches_torch_per_network(exported, clip, k):
    _, model, folder, _ = exported
    reference, candidate = TorchBackend(model), OnnxRuntimeBackend(folder)
    assert candidate.mrn_roi_sizes == reference.mrn_roi_sizes
    with torch.no_grad():
        _assert_parity(reference, candidate, _network_inputs(reference, clip, k))


def test_engine_on_onnxruntime_tracks_like_torch(exported, clip):
    config, model, folder, _ = exported
    runs = [segment_video(Tracker.from_backend(config, backend), clip.frames, clip.labels[0])
            for backend in (TorchBackend(model), OnnxRuntimeBackend(folder))]
    agreement = [float((a == b).mean()) for a, b in zip(runs[0].labels, runs[1].labels)]
    assert min(agreement) >= 0.999, agreement
    assert runs[0].br_frames == runs[1].br_frames


def test_onnxruntime_runs_an_adapted_mrn(exported, clip):
    _, model, folder, _ = exported
    reference, candidate = TorchBackend(copy.deepcopy(model)), OnnxRuntimeBackend(folder)
    inputs = _network_inputs(reference, clip, 2)["mrn"]
    adapted = copy.deepcopy(model.mrn)
    with torch.no_grad():
        offline = _outputs(candidate, "mrn", inputs)[0]
        adapted.predict.weight.mul_(-1)  # other weights than the export's
        for backend in (reference, candidate):
            backend.use_mrn(backend.compile_mrn(adapted))
        ref, got = (_outputs(b, "mrn", inputs)[0] for b in (reference, candidate))
        assert float((got - offline).abs().max()) > 100 * TOLERANCE["mrn"]  # the new weights are in use
        assert float((ref - got).abs().max()) <= TOLERANCE["mrn"]
        candidate.use_mrn(None)
        assert torch.equal(_outputs(candidate, "mrn", inputs)[0], offline)


def test_engine_on_onnxruntime_adapts_like_torch(exported, clip):
    _, model, _, cache = exported
    config = load_config("cpu", {"adaptation.iterations": 5})
    trackers = [Tracker.from_model(config, copy.deepcopy(model), backend, cache_dir=cache)
                for backend in ("torch", "onnxruntime")]
    runs = [segment_video(t, clip.frames, clip.labels[0]) for t in trackers]
    assert all(t.last_adaptation is not None and t.last_adaptation.pairs > 0 for t in trackers)
    agreement = [float((a == b).mean()) for a, b in zip(runs[0].labels, runs[1].labels)]
    assert min(agreement) >= 0.999, agreement


def test_export_cache_is_reused_and_keyed_by_weights(exported, monkeypatch):
    config, model, folder, cache = exported

    def no_export(*args, **kwargs):
        raise AssertionError("a valid cached export was exported again")

    monkeypatch.setattr("vos_ros.backends.onnx_export.export_onnx", no_export)
    assert ensure_onnx(model, config, cache) == folder
    backend = create_backend("onnxruntime", model, config, "cpu", cache_dir=cache)
    assert backend.label == "onnxruntime fp32 (CPUExecutionProvider)"
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.decision.head[0].bias += 0.01
    assert network_digest(changed, config) != network_digest(model, config)
    with pytest.raises(AssertionError, match="exported again"):
        ensure_onnx(changed, config, cache)  # new weights: a new export, never the old graphs


def test_tampered_export_is_not_valid(exported, tmp_path):
    _, _, folder, _ = exported
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert read_manifest(copy) is not None
    (copy / "decision.onnx").write_bytes(b"broken")
    assert read_manifest(copy) is None
    with pytest.raises(BackendUnavailable, match="no complete ONNX export"):
        OnnxRuntimeBackend(copy)


# ------------------------------------------------------------------- TensorRT without TensorRT
def test_optimisation_profiles_follow_the_configuration(exported):
    _, _, folder, _ = exported
    manifest = read_manifest(folder)
    cpu = optimisation_profiles(load_config("cpu"), manifest)
    assert cpu["backbone"]["images"] == ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (16, 3, 224, 224))
    assert cpu["mrn"]["res2_roi"] == ShapeRange((1, 24, 56, 56), (1, 24, 56, 56), (16, 24, 56, 56))
    assert cpu["decision"]["features"] == ShapeRange((1, 13), (1, 13), (16, 13))
    anchors = cpu["crpn_head"]["anchor_features"]
    assert (anchors.min[0], anchors.opt[0], anchors.max[0]) == (1, 81, 17 * 17 * 9)
    full_frame = optimisation_profiles(load_config("cpu", {"features.mode": "full_frame"}), manifest)
    assert full_frame["backbone"]["images"] == ShapeRange((1, 3, 32, 32), (1, 3, 480, 864), (1, 3, 1088, 1920))


def test_engine_key_covers_every_field():
    profile = {"images": ShapeRange((1, 3, 224, 224), (1, 3, 224, 224), (16, 3, 224, 224))}
    base = engine_fields("a" * 64, "10.3.0", "Orin", "8.7", "fp16", profile)
    changes = [engine_fields("b" * 64, "10.3.0", "Orin", "8.7", "fp16", profile),
               engine_fields("a" * 64, "10.4.0", "Orin", "8.7", "fp16", profile),
               engine_fields("a" * 64, "10.3.0", "RTX 4090", "8.7", "fp16", profile),
               engine_fields("a" * 64, "10.3.0", "Orin", "8.9", "fp16", profile),
               engine_fields("a" * 64, "10.3.0", "Orin", "8.7", "int8", profile),
               engine_fields("a" * 64, "10.3.0", "Orin", "8.7", "fp16",
                             {"images": ShapeRange((1, 3, 224, 224), (2, 3, 224, 224), (16, 3, 224, 224))})]
    keys = {engine_key(base)} | {engine_key(f) for f in changes}
    assert len(keys) == 1 + len(changes)
    assert engine_key(dict(reversed(list(base.items())))) == engine_key(base)


def test_engine_cache_reuses_a_valid_engine_and_rebuilds_otherwise(tmp_path):
    cache = EngineCache(tmp_path / "tensorrt")
    fields = engine_fields("a" * 64, "10.3.0", "Orin", "8.7", "fp16", {})
    builds = []

    def build():
        builds.append(1)
        return f"engine {len(builds)}".encode()

    def deserialize(data: bytes):
        return data.decode() if data.startswith(b"engine") else None

    assert cache.load_or_build("mrn", fields, build, deserialize) == ("engine 1", True)
    assert cache.load_or_build("mrn", fields, build, deserialize) == ("engine 1", False)
    assert len(builds) == 1 and json.loads(cache.path("mrn", fields).with_suffix(".json").read_text()) == fields
    cache.path("mrn", fields).write_bytes(b"truncated")  # does not deserialise: rebuilt and replaced
    assert cache.load_or_build("mrn", fields, build, deserialize) == ("engine 2", True)
    assert cache.load_or_build("mrn", fields, build, deserialize, rebuild=True) == ("engine 3", True)
    other = dict(fields, precision="int8")
    assert cache.load_or_build("mrn", other, build, deserialize) == ("engine 4", True)
    assert cache.load_or_build("mrn", fields, build, deserialize) == ("engine 3", False)
    assert not list(cache.folder.glob("*.partial-*"))


def test_calibration_batches_have_the_opt_shape():
    calls = [(torch.full((n, 2, 4, 4), float(i)), torch.full((n, 1), float(i))) for i, n in enumerate((1, 2, 3))]
    batches = calibration_batches(calls, [(2, 2, 4, 4), (2, 1)])
    assert len(batches) == 3  # 6 rows in batches of 2
    assert [b[1].flatten().tolist() for b in batches] == [[0, 1], [1, 2], [2, 2]]
    frames = [(torch.rand(1, 3, 480, 854),), (torch.rand(1, 3, 240, 320),)]
    resized = calibration_batches(frames, [(1, 3, 480, 864)])
    assert [tuple(b[0].shape) for b in resized] == [(1, 3, 480, 864)] * 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        calibration_batches(calls[:1], [(2, 2, 4, 4), (2, 1)])


def test_batch_feeder_hands_pointers_in_the_requested_order():
    batches = [(torch.full((1, 3), float(i)), torch.full((1, 2), 10.0 + i)) for i in range(2)]
    feeder = BatchFeeder(batches, ("a", "b"), "cpu")
    for i in range(2):
        pointers = feeder.next_pointers(["b", "a"])
        assert pointers == [feeder._current["b"].data_ptr(), feeder._current["a"].data_ptr()]
        assert feeder._current["a"].flatten().tolist() == [float(i)] * 3
    assert feeder.next_pointers(["a", "b"]) is None  # two batches, then the end


def test_recorded_inputs_fill_every_profile(exported, clip):
    config, model, folder, _ = exported
    recorded = record_network_inputs(model, config, [(clip.frames[:5], clip.labels[0])])
    profiles = optimisation_profiles(config, read_manifest(folder))
    for graph, spec in GRAPHS.items():
        opt = [profiles[graph][name].opt for name in spec.inputs]
        batches = calibration_batches(recorded[graph], opt)
        assert batches and [tuple(t.shape) for t in batches[0]] == opt


def test_tensorrt_unavailable_is_a_clear_error():
    if tensorrt_and_cuda():
        pytest.skip("TensorRT and a GPU are present: the backend is available")
    with pytest.raises(BackendUnavailable, match="TensorRT|CUDA GPU"):
        Tracker.from_config("cpu", untrained=True, backend="tensorrt")


# ------------------------------------------------------------------------ GPU machines only
@pytest.mark.skipif(not tensorrt_and_cuda(), reason="needs the tensorrt package and a CUDA GPU")
def test_tensorrt_matches_torch_and_reuses_its_engines(exported, clip, tmp_path):
    config, model, _, _ = exported
    inputs = _network_inputs(TorchBackend(model), clip, 3)
    engines = create_backend("tensorrt", model, config, "cuda", "fp32", tmp_path)
    assert sorted(engines.built) == sorted(GRAPHS)
    reference = TorchBackend(copy.deepcopy(model), "cuda", "fp32")
    with torch.no_grad():
        _assert_parity(reference, engines, {g: tuple(t.cuda() for t in args) for g, args in inputs.items()},
                       TENSORRT_FP32_SLACK)
    assert create_backend("tensorrt", model, config, "cuda", "fp32", tmp_path).built == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_fp16_on_cuda_tracks(exported, clip):
    config, model, _, _ = exported
    half = TorchBackend(load_dtn(config, untrained=True), "cuda")
    assert half.precision == "fp16"
    run = segment_video(Tracker.from_backend(config, half), clip.frames, clip.labels[0])
    assert len(run.labels) == len(clip.frames) and run.labels[-1].max() > 0
