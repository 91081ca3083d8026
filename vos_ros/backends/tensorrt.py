"""The TensorRT backend: engines built from the exported ONNX graphs, cached on disk.

Written against the TensorRT Python API of 8.6 and 10.x (JetPack 6, desktop
wheels): Builder / OnnxParser / builder config with a workspace pool limit, one
optimisation profile per engine (min/opt/max of the object or anchor count and,
for full-frame features, the image size), FP16 and INT8 builder flags, INT8 via
an IInt8EntropyCalibrator2 fed with the networks' real inputs (recorded while
the torch networks track real frames: `calibration.py`), build_serialized_network,
Runtime.deserialize_cuda_engine, and execution with set_input_shape /
set_tensor_address / execute_async_v3 on torch CUDA tensors and torch's stream.
Not run on real hardware in this repository (no GPU there): the pure-Python
parts (profiles, cache key, cache reuse, calibration batches) are unit-tested.

An adapted MRN (first-frame adaptation) gets an engine of its own, built from a new
export of the MRN graph with the adapted weights and kept in memory only (fp16 for an
int8 backend: the calibration table is the offline weights'). Building it takes
seconds to a minute on a Jetson, in the background where adaptation.background is on.

`EngineSet` builds or loads the engines of any exported graph set: DTN's four
(`TensorRTBackend`), RGMP's two and LIP's four (backends/rgmp.py, backends/lip.py, with
their own optimisation profiles from `shape_profiles`).

Engine cache: CACHE/tensorrt/<graph>-<key[:16]>.engine with a .json beside it
holding the key's fields: ONNX file sha256, TensorRT version, GPU name and
compute capability, precision, optimisation profile. A cached engine whose
fields match and which deserialises is reused without rebuilding; anything else
is rebuilt and replaced (written to a temporary file, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import torch

from ..config import EngineConfig
from .base import PRECISIONS, Backend, BackendUnavailable
from .onnx_export import GRAPHS, GraphSpec, default_cache_dir, export_mrn, mrn_levels, read_manifest

MIN_VERSION = (8, 6)  # name-based tensors (set_input_shape / execute_async_v3) and opset 17
WORKSPACE_BYTES = 1 << 30  # builder scratch memory; Jetson boards share it with the CPU
OPT_OBJECTS = 1  # most robot tasks track one object: tactics are tuned for it
# Full-frame (height, width) range: min (the smallest padded frame), opt (854x480 padded to the
# stride, 32), max (1080p padded).
FULL_FRAME_SIDES = ((32, 32), (480, 864), (1088, 1920))

T = TypeVar("T")


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def max_anchors(config: EngineConfig) -> int:
    """Most anchors the engine sends through the CRPN head for one target.

    A lost target's grid widens but its cells are thinned to a step of grid // (3 * crpn.grid)
    (Tracker._reidentify), which keeps at most 6 * crpn.grid - 1 cells per side.
    """
    cells = 6 * config.crpn.grid - 1
    return cells * cells * len(config.crpn.multipliers) ** 2


def optimisation_profiles(config: EngineConfig, manifest: dict) -> dict[str, dict[str, ShapeRange]]:
    """DTN's graphs: graph -> input -> min/opt/max shapes."""
    k = config.tracking.max_objects
    per_target = config.crpn.grid ** 2 * len(config.crpn.multipliers) ** 2
    if config.features.mode == "target_region":  # one square region per target
        side = config.features.region_size
        regions, height, width = (1, 1, k), (side,) * 3, (side,) * 3
    else:  # one padded frame
        regions = (1, 1, 1)
        height, width = (tuple(s[i] for s in FULL_FRAME_SIDES) for i in (0, 1))
    return shape_profiles(manifest, {"objects": object_range(config), "anchors": (1, per_target, max_anchors(config)),
                                     "batch": regions, "height": height, "width": width})


def object_range(config: EngineConfig) -> tuple[int, int, int]:
    k = config.tracking.max_objects
    return 1, min(OPT_OBJECTS, k), k


def frame_ranges(rows: int, stride: int) -> dict[str, tuple[int, int, int]]:
    """Padded frame sides from the smallest to 1080p, opt at `rows` (a 16:9 frame), and the
    sides of the stride-`stride` level they give (`rows`, `cols`)."""
    opt = tuple(-(-side // stride) * stride for side in (rows, round(rows * 16 / 9)))
    sides = {"height": (stride, opt[0], FULL_FRAME_SIDES[-1][0]), "width": (stride, opt[1], FULL_FRAME_SIDES[-1][1])}
    return {**sides, "rows": tuple(v // stride for v in sides["height"]),
            "cols": tuple(v // stride for v in sides["width"])}


def shape_profiles(manifest: dict, ranges: dict[str, tuple[int, int, int]]) -> dict[str, dict[str, ShapeRange]]:
    """graph -> input -> min/opt/max shapes: each named dynamic dimension of the export takes its
    (min, opt, max) from `ranges`; static dimensions come from the exported graph."""
    profiles: dict[str, dict[str, ShapeRange]] = {}
    for graph, entry in manifest["graphs"].items():
        profiles[graph] = {}
        for name, shape in entry["inputs"].items():
            axes = entry["dynamic_axes"].get(name, {})
            bounds = [ranges[axes[str(i)]] if str(i) in axes else (int(d),) * 3 for i, d in enumerate(shape)]
            profiles[graph][name] = ShapeRange(*(tuple(b[j] for b in bounds) for j in range(3)))
    return profiles


def engine_fields(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str, precision: str,
                  profile: dict[str, ShapeRange]) -> dict:
    """Everything an engine depends on: a change in any of them needs a new engine."""
    return {"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name,
            "compute_capability": compute_capability, "precision": precision,
            "profile": {name: [list(r.min), list(r.opt), list(r.max)] for name, r in sorted(profile.items())}}


def engine_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class EngineCache:
    """Serialised engines on disk, each with the key fields it was built for."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, graph: str, fields: dict) -> Path:
        return self.folder / f"{graph}-{engine_key(fields)[:16]}.engine"

    def load_or_build(self, graph: str, fields: dict, build: Callable[[], bytes],
                      deserialize: Callable[[bytes], T | None], rebuild: bool = False) -> tuple[T, bool]:
        """(engine, built): the cached engine when valid, else a new one (cached for next time)."""
        path = self.path(graph, fields)
        sidecar = path.with_suffix(".json")
        if not rebuild and path.exists() and sidecar.exists():
            try:
                cached_fields = json.loads(sidecar.read_text())
            except ValueError:
                cached_fields = None
            if cached_fields == fields:
                engine = deserialize(path.read_bytes())
                if engine is not None:
                    return engine, False
        data = build()
        engine = deserialize(data)
        if engine is None:
            raise RuntimeError(f"TensorRT could not deserialise the {graph} engine it just built")
        self.folder.mkdir(parents=True, exist_ok=True)
        for target, content in ((path, data), (sidecar, (json.dumps(fields, indent=2) + "\n").encode())):
            partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
            partial.write_bytes(content)
            partial.replace(target)
        return engine, True


def require_tensorrt(device: str | torch.device):
    """The tensorrt module, or BackendUnavailable naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend tensorrt needs the TensorRT Python package (import tensorrt: {exc}). Jetson: it comes with "
            "JetPack (apt install python3-libnvinfer; a venv needs --system-site-packages); desktop: "
            "pip install tensorrt") from exc
    version = tuple(int(p) for p in trt.__version__.split(".")[:2])
    if version < MIN_VERSION:
        raise BackendUnavailable(f"backend tensorrt needs TensorRT >= {'.'.join(map(str, MIN_VERSION))}, "
                                 f"found {trt.__version__}")
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        raise BackendUnavailable(f"backend tensorrt needs a CUDA GPU (device {device}, "
                                 f"torch.cuda.is_available() = {torch.cuda.is_available()})")
    return trt


def seed_method_precision(method: str, name: str, precision: str | None, device: str | torch.device) -> str:
    """The precision a seed method's graphs run at on backend `name`: fp32 on torch and
    onnxruntime; fp16 (the default) or fp32 on tensorrt, whose package and GPU are checked
    before anything is exported. Anything else is BackendUnavailable."""
    if name not in ("torch", "onnxruntime", "tensorrt"):
        raise BackendUnavailable(f"method {method} runs on torch, onnxruntime or tensorrt, not {name}")
    if name == "tensorrt":
        require_tensorrt(device)
        if precision not in (None, "fp16", "fp32"):
            raise BackendUnavailable(f"method {method} runs tensorrt at fp16 or fp32, not {precision} "
                                     "(no int8 calibration for its graphs)")
        return precision or "fp16"
    if precision not in (None, "fp32"):
        raise BackendUnavailable(f"method {method} runs {name} at fp32 only, not {precision} (tensorrt runs fp16)")
    return "fp32"


def gpu_identity(device: torch.device) -> tuple[str, str]:
    """Name (with the SM count: Jetson Orin modules all report "Orin", 8.7) and compute capability."""
    props = torch.cuda.get_device_properties(device)
    return f"{props.name} ({props.multi_processor_count} SMs)", f"{props.major}.{props.minor}"


def _build_serialized(trt, logger, onnx_path: Path | bytes, profile: dict[str, ShapeRange], precision: str,
                      calibrator=None) -> bytes:
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch (the flag is deprecated); 8.6 needs it set.
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path if isinstance(onnx_path, bytes) else onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {_graph_name(onnx_path)}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    shapes = builder.create_optimization_profile()
    for name, r in profile.items():
        shapes.set_shape(name, r.min, r.opt, r.max)
    if config.add_optimization_profile(shapes) < 0:
        raise RuntimeError(f"invalid optimisation profile for {_graph_name(onnx_path)}: {profile}")
    if precision in ("fp16", "int8"):  # int8: layers without int8 kernels run fp16, not fp32
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if not config.set_calibration_profile(shapes):  # calibration runs at the profile's opt shapes
            raise RuntimeError(f"TensorRT rejected the calibration profile for {_graph_name(onnx_path)}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {_graph_name(onnx_path)} (see its log above)")
    return bytes(serialized)


def _graph_name(onnx_path: Path | bytes) -> str:
    return "the adapted MRN graph" if isinstance(onnx_path, bytes) else str(onnx_path)


def _entropy_calibrator(trt, feeder, cache_file: Path):
    """An IInt8EntropyCalibrator2 over `feeder` (calibration.BatchFeeder), caching its table in `cache_file`."""

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by TensorRT's Python bindings

        def get_batch_size(self):
            return 1  # explicit-batch networks take the batch from the calibration profile's opt shape

        def get_batch(self, names):
            return feeder.next_pointers(names)

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_file.with_name(f"{cache_file.name}.partial-{os.getpid()}")
            partial.write_bytes(bytes(cache))
            partial.replace(cache_file)  # never a truncated table read back later

    return FrameCalibrator()


class _EngineRunner:
    """One engine + execution context; float32 torch CUDA tensors in and out.

    Runs on its own CUDA stream, ordered after and before torch's current stream:
    execute_async_v3 on the default stream may add device-wide synchronisations
    (TensorRT's ExecutionContext documentation).
    """

    def __init__(self, trt, engine, spec: GraphSpec, device: torch.device):
        self.engine = engine  # the context needs its engine alive
        self.context = engine.create_execution_context()
        self.inputs, self.outputs = spec.inputs, spec.outputs
        self.device = device
        self.stream = torch.cuda.Stream(device)
        for name in self.inputs + self.outputs:
            if engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(f"{spec.name} engine tensor {name} is {engine.get_tensor_dtype(name)}, expected float32")

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        with torch.cuda.device(self.device):  # TensorRT runs on the current CUDA device
            caller = torch.cuda.current_stream(self.device)
            inputs = [t.to(self.device, torch.float32).contiguous() for t in tensors]
            for name, tensor in zip(self.inputs, inputs):
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise RuntimeError(f"input {name} shape {tuple(tensor.shape)} is outside the engine's profile")
                self._bind(name, tensor)
            outputs = []
            for name in self.outputs:
                out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device=self.device)
                self._bind(name, out)
                outputs.append(out)
            self.stream.wait_stream(caller)  # the inputs are written on the caller's stream
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            caller.wait_stream(self.stream)  # the caller reads the outputs after the engine wrote them
            for tensor in inputs + outputs:  # the allocator must not reuse them before the engine is done
                tensor.record_stream(self.stream)
        return outputs

    def _bind(self, name: str, tensor: torch.Tensor) -> None:
        if not self.context.set_tensor_address(name, tensor.data_ptr()):
            raise RuntimeError(f"TensorRT rejected the address of tensor {name}")


class EngineSet:
    """The engines of one exported graph set, from the cache or built now, each with its runner.

    `calibrator(engines, graph, calibration_file)` gives the int8 calibrator of a graph that has
    to be built at int8; without one, int8 takes cached engines only.
    """

    def __init__(self, onnx_folder: Path, manifest: dict, graphs: dict[str, GraphSpec],
                 profiles: dict[str, dict[str, ShapeRange]], device: str | torch.device = "cuda",
                 precision: str = "fp16", cache_dir: Path | None = None, rebuild: bool = False,
                 calibrator: Callable[[EngineSet, str, Path], object] | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision}")
        trt = self.trt = require_tensorrt(device)
        self.device, self.precision, self.graphs, self.profiles = torch.device(device), precision, graphs, profiles
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.gpu_name, capability = gpu_identity(self.device)
        cache = EngineCache(Path(cache_dir or default_cache_dir()) / "tensorrt")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)  # outlives the engines it deserialises
        self.built: list[str] = []  # graphs built now (the others came from the cache)
        self.runners: dict[str, _EngineRunner] = {}
        for graph, entry in manifest["graphs"].items():
            fields = engine_fields(entry["sha256"], trt.__version__, self.gpu_name, capability, precision,
                                   profiles[graph])
            calibration_file = cache.path(graph, fields).with_suffix(".calib")

            def build(graph=graph, entry=entry, calibration_file=calibration_file) -> bytes:
                int8 = None
                if precision == "int8":
                    if calibrator is None:
                        raise BackendUnavailable(
                            f"no cached int8 engine for {graph}: build it with vos-ros build-engine --precision int8 "
                            "--calibration FRAMES (int8 needs real frames to calibrate)")
                    int8 = calibrator(self, graph, calibration_file)
                print(f"building the TensorRT {precision} engine for {graph} (once per GPU and TensorRT version)",
                      flush=True)
                return _build_serialized(trt, self.logger, Path(onnx_folder) / entry["file"], profiles[graph],
                                         precision, int8)

            if rebuild:
                calibration_file.unlink(missing_ok=True)
            with torch.cuda.device(self.device):  # TensorRT builds and deserialises on the current device
                engine, built = cache.load_or_build(graph, fields, build, self.runtime.deserialize_cuda_engine, rebuild)
                self.runners[graph] = _EngineRunner(trt, engine, graphs[graph], self.device)
            if built:
                self.built.append(graph)
        self._warm_up()

    def _warm_up(self) -> None:
        """One run per engine at its opt shapes: the first frame then does not pay for lazy
        CUDA module loading and memory allocation."""
        for graph, runner in self.runners.items():
            runner(*(torch.zeros(self.profiles[graph][name].opt, device=self.device) for name in runner.inputs))
        torch.cuda.synchronize(self.device)

    def compile(self, graph: str, onnx: bytes, precision: str) -> _EngineRunner:
        """A runner for an in-memory export of `graph` (new weights, same profile), not cached."""
        data = _build_serialized(self.trt, self.logger, onnx, self.profiles[graph], precision)
        with torch.cuda.device(self.device):
            engine = self.runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise RuntimeError(f"TensorRT could not deserialise the {graph} engine it just built")
            return _EngineRunner(self.trt, engine, self.graphs[graph], self.device)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, onnx_folder: Path, config: EngineConfig, device: str | torch.device = "cuda",
                 precision: str = "fp16", cache_dir: Path | None = None,
                 calibration_inputs: Callable[[], dict[str, list]] | None = None, rebuild: bool = False):
        """Engines for the four graphs (from the cache, or built now). `calibration_inputs` returns
        recorded network inputs per graph (inference/calibration.py record_network_inputs); int8 needs it
        whenever an engine is not cached yet."""
        from .calibration import BatchFeeder, calibration_batches

        manifest = read_manifest(onnx_folder)
        if manifest is None:
            raise BackendUnavailable(f"no complete ONNX export in {onnx_folder} (vos-ros export writes one)")
        recorded: dict[str, list] = {}

        def calibrator(engines: EngineSet, graph: str, calibration_file: Path):
            if not recorded:
                recorded.update(calibration_inputs())
            inputs = GRAPHS[graph].inputs
            opt = [engines.profiles[graph][name].opt for name in inputs]
            feeder = BatchFeeder(calibration_batches(recorded[graph], opt), inputs, engines.device)
            return _entropy_calibrator(engines.trt, feeder, calibration_file)

        self._engines = EngineSet(onnx_folder, manifest, GRAPHS, optimisation_profiles(config, manifest), device,
                                  precision, cache_dir, rebuild, calibrator if calibration_inputs else None)
        self.device, self.precision = self._engines.device, precision
        self.gpu_name, self.built = self._engines.gpu_name, self._engines.built
        self._runners = self._engines.runners
        self.mrn_roi_sizes, self._backbone_channels = mrn_levels(manifest)
        self._offline_mrn = self._runners["mrn"]

    @property
    def label(self) -> str:
        return f"tensorrt {self.precision} ({self.gpu_name})"

    def backbone(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self._runners["backbone"](images)

    def decision(self, features: torch.Tensor) -> torch.Tensor:
        return self._runners["decision"](features)[0]

    def crpn_head(self, anchor_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, deltas = self._runners["crpn_head"](anchor_features)
        return logits, deltas

    def mrn(self, roi_features: list[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        return self._runners["mrn"](*roi_features, priors)[0]

    def compile_mrn(self, mrn: torch.nn.Module) -> _EngineRunner:
        precision = "fp16" if self.precision == "int8" else self.precision
        return self._engines.compile("mrn", export_mrn(mrn, self._backbone_channels), precision)

    def use_mrn(self, compiled: _EngineRunner | None) -> None:
        self._runners["mrn"] = self._offline_mrn if compiled is None else compiled
