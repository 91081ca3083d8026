"""ONNX graphs of the four DTN networks (and of RGMP's and LIP's), their manifest, and the export cache.

One graph per network (backbone, decision, crpn_head, mrn), exported with
torch's `torch.export`-based exporter at opset 17, simplified with onnxslim and
checked with onnx's full checker. The graphs are stateless: per-object state
(previous masks, embeddings, boxes) stays in the engine and enters every call as
tensors (the MRN priors are the warped previous mask and the first-frame appearance match). Leading dimensions are
dynamic: objects (decision, mrn), anchors (crpn_head: the anchors of one target,
81 for a 3x3 grid, more while a lost target is searched) and target regions
(backbone `batch`, with dynamic `height` and `width` for full-frame features).

A folder of graphs is keyed by the *network digest*: a hash of the weights
(the state dict as loaded) and of the network code (vos_ros/model), so new
weights or a changed network never reuse stale graphs.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import EngineConfig
from ..model.backbone import STRIDES
from ..model.decision import NUM_FEATURES
from ..model.dtn import DTN
from ..model.mrn import PRIORS, MaskRefinementNetwork

OPSET = 17  # the newest opset that TensorRT 8.6 (JetPack 6.0) parses; TensorRT 10 reads it too
MANIFEST = "manifest.json"
MODEL_CODE = Path(__file__).resolve().parents[1] / "model"
MAX_LEADING = 4096  # export-time bounds of the dynamic leading dimensions
SIDE_RANGE = (32, 4096)  # ... and of image sides (the backbone's total stride is 32)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: dimension name}
    # dimension name -> (the dimension it is a multiple of, the factor): an image side that is
    # 32x the side of a feature map given beside it
    derived: dict[str, tuple[str, int]] = field(default_factory=dict)


GRAPHS = {
    spec.name: spec for spec in (
        GraphSpec("backbone", ("images",), ("res2", "res3", "res4", "res5"),
                  {"images": {0: "batch", 2: "height", 3: "width"}}),
        GraphSpec("decision", ("features",), ("confidence",), {"features": {0: "objects"}}),
        GraphSpec("crpn_head", ("anchor_features",), ("objectness_logits", "box_deltas"),
                  {"anchor_features": {0: "anchors"}}),
        GraphSpec("mrn", ("res2_roi", "res3_roi", "res4_roi", "res5_roi", "priors"), ("mask_logits",),
                  {name: {0: "objects"} for name in ("res2_roi", "res3_roi", "res4_roi", "res5_roi", "priors")}),
    )
}


class _BackboneGraph(nn.Module):
    def __init__(self, model: DTN):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, images):
        return tuple(self.backbone(images))


class _MRNGraph(nn.Module):
    def __init__(self, mrn: MaskRefinementNetwork):
        super().__init__()
        self.mrn = mrn

    def forward(self, res2_roi, res3_roi, res4_roi, res5_roi, priors):
        return self.mrn([res2_roi, res3_roi, res4_roi, res5_roi], priors)


def _mrn_example(channels: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.rand(2, c, s, s) for c, s in zip(channels, sizes)) + (torch.rand(2, PRIORS, sizes[0], sizes[0]),)


def _modules_and_examples(model: DTN, config: EngineConfig) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """Each graph's module (tensors in, tensors out) and example inputs (leading dimension 2, so
    that torch.export does not specialise it to 1)."""
    channels, roi = model.backbone.channels, config.crpn.roi_size
    return {
        "backbone": (_BackboneGraph(model), (torch.rand(2, 3, 224, 256),)),
        "decision": (model.decision, (torch.rand(2, NUM_FEATURES),)),
        "crpn_head": (model.crpn, (torch.rand(2, channels[2], roi, roi),)),
        "mrn": (_MRNGraph(model.mrn), _mrn_example(channels, model.mrn.roi_sizes)),
    }


RGMP_STRIDE = STRIDES[-1]  # image sides are this multiple of the deepest level's
RGMP_GRAPHS = {
    spec.name: spec for spec in (
        GraphSpec("rgmp_reference", ("images", "masks"), ("reference",),
                  {name: {0: "batch", 2: "height", 3: "width"} for name in ("images", "masks")},
                  {"height": ("rows", RGMP_STRIDE), "width": ("cols", RGMP_STRIDE)}),
        GraphSpec("rgmp_propagate", ("reference", "images", "guidance"), ("logits",),
                  {"reference": {0: "batch", 2: "rows", 3: "cols"},
                   **{name: {0: "batch", 2: "height", 3: "width"} for name in ("images", "guidance")}},
                  {"height": ("rows", RGMP_STRIDE), "width": ("cols", RGMP_STRIDE)}),
    )
}


class _RGMPReferenceGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images, masks):
        return self.model.reference(images, masks)


class _RGMPPropagateGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, reference, images, guidance):
        return self.model(reference, images, guidance)


def _rgmp_modules_and_examples(model: nn.Module, config: EngineConfig
                               ) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    images, masks = torch.rand(2, 3, 96, 128), torch.rand(2, 1, 96, 128)
    return {
        "rgmp_reference": (_RGMPReferenceGraph(model), (images, masks)),
        "rgmp_propagate": (_RGMPPropagateGraph(model), (torch.rand(2, 320, 3, 4), images, masks)),
    }


LEVEL_NAMES = ("l8", "l16", "l32")
HIDDEN_NAMES = ("h8", "h16", "h32")
_LEVEL_AXES = {name: {0: "batch", 2: f"rows{s}", 3: f"cols{s}"}
               for names in (LEVEL_NAMES, HIDDEN_NAMES) for name, s in zip(names, (8, 16, 32))}
LIP_GRAPHS = {
    spec.name: spec for spec in (
        GraphSpec("lip_backbone", ("images",), ("l4", "l8", "l16", "l32"),
                  {"images": {0: "batch", 2: "height", 3: "width"}}),
        GraphSpec("lip_memory", LEVEL_NAMES + HIDDEN_NAMES,
                  ("new_h8", "new_h16", "new_h32", "p8", "p16", "p32", "heatmap", "size"), _LEVEL_AXES,
                  {"rows8": ("rows32", 4), "cols8": ("cols32", 4), "rows16": ("rows32", 2), "cols16": ("cols32", 2)}),
        GraphSpec("lip_box_trunk", ("pooled",), ("features",), {"pooled": {0: "rois"}}),
        GraphSpec("lip_mask_trunk", ("pooled", "shortcut"), ("features",),
                  {"pooled": {0: "rois"}, "shortcut": {0: "rois"}}),
    )
}


class _LIPBackboneGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, images):
        return tuple(self.backbone(images))


class _LIPMemoryGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.memory = model.memory

    def forward(self, l8, l16, l32, h8, h16, h32):
        hidden, propagated, heatmap, size = self.memory([l8, l16, l32], [h8, h16, h32])
        return (*hidden, *propagated, heatmap, size)


def _lip_modules_and_examples(model: nn.Module, config: EngineConfig
                              ) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    c, c4 = model.channels, model.backbone.channels[0]
    levels = tuple(torch.rand(2, ch, 3 * f, 4 * f) for ch, f in zip(model.backbone.channels[1:], (4, 2, 1)))
    hidden = tuple(torch.rand(2, c, 3 * f, 4 * f) for f in (4, 2, 1))
    return {
        "lip_backbone": (_LIPBackboneGraph(model), (torch.rand(2, 3, 96, 128),)),
        "lip_memory": (_LIPMemoryGraph(model), levels + hidden),
        "lip_box_trunk": (model.box_trunk, (torch.rand(2, 3 * c, 7, 7),)),
        "lip_mask_trunk": (model.mask_trunk, (torch.rand(2, c, 14, 14), torch.rand(2, c4, 28, 28))),
    }


@dataclass(frozen=True)
class GraphSet:
    """The graphs one method's networks export to, and a folder-name tag for its cache."""

    tag: str
    graphs: dict[str, GraphSpec]
    modules_and_examples: Callable[[nn.Module, EngineConfig], dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]]


DTN_SET = GraphSet("", GRAPHS, _modules_and_examples)
RGMP_SET = GraphSet("rgmp-", RGMP_GRAPHS, _rgmp_modules_and_examples)
LIP_SET = GraphSet("lip-", LIP_GRAPHS, _lip_modules_and_examples)


def network_digest(model: nn.Module, config: EngineConfig) -> str:
    """sha256 of the weights as loaded (names, shapes, values), of the RoI sizes and the MRN's
    correction scale (fixed in the CRPN and MRN graphs, not visible in the weights) and of the network code."""
    digest = hashlib.sha256(f"crpn.roi_size={config.crpn.roi_size} mrn.roi_size={config.mrn.roi_size} "
                             f"mrn.correction_scale={config.mrn.correction_scale}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for path in sorted(MODEL_CODE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_cache_dir() -> Path:
    """$VOS_ROS_CACHE, else $XDG_CACHE_HOME/vos_ros, else ~/.cache/vos_ros."""
    if os.environ.get("VOS_ROS_CACHE"):
        return Path(os.environ["VOS_ROS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vos_ros"


def _shape(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's expected notices: opset 17 is below its own (it converts down, and
    the result's opset is checked) and the MRN inputs share one `objects` dimension."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="# The axis name")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(spec: GraphSpec, module: nn.Module, example: tuple[torch.Tensor, ...]):
    """One network as a simplified, fully checked ONNX ModelProto at opset >= OPSET."""
    import onnx
    import onnxslim
    from torch.export import Dim

    name = spec.name
    dims: dict[str, Dim] = {}
    for derived, (base, factor) in spec.derived.items():
        dims.setdefault(base, Dim(base, min=1, max=SIDE_RANGE[1] // factor))
        dims[derived] = factor * dims[base]
    for axes in spec.dynamic.values():
        for axis_name in axes.values():
            low, high = SIDE_RANGE if axis_name in ("height", "width") else (1, MAX_LEADING)
            dims.setdefault(axis_name, Dim(axis_name, min=low, max=high))
    dynamic_shapes = {inp: {axis: dims[n] for axis, n in axes.items()} for inp, axes in spec.dynamic.items()}
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(module.eval(), example, input_names=list(spec.inputs),
                                    output_names=list(spec.outputs), dynamic_shapes=dynamic_shapes,
                                    opset_version=OPSET, dynamo=True, verbose=False)
    graph = onnxslim.slim(program.model_proto)
    onnx.checker.check_model(graph, full_check=True)
    if _opset(graph) < OPSET:
        raise RuntimeError(f"exported {name} graph has opset {_opset(graph)}, expected >= {OPSET}")
    return graph


def _opset(graph) -> int:
    return max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def export_mrn(mrn: MaskRefinementNetwork, channels: tuple[int, ...]) -> bytes:
    """The MRN graph alone, serialised, for weights that change at run time (first-frame
    adaptation: onnxruntime and tensorrt run the adapted MRN from its own export). `channels`:
    the backbone's, levels 2..5. The caller sets the module's correction scale."""
    module = copy.deepcopy(mrn).float().cpu().eval()
    return _export_graph(GRAPHS["mrn"], _MRNGraph(module), _mrn_example(channels, module.roi_sizes)).SerializeToString()


def export_onnx(model: nn.Module, config: EngineConfig, out: Path, digest: str | None = None,
                graph_set: GraphSet = DTN_SET) -> dict:
    """Write the graphs (DTN's four by default) and manifest.json into `out`; returns the manifest."""
    import onnx
    import onnxslim

    model = model.float().cpu().eval()
    digest = digest or network_digest(model, config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"network_digest": digest, "config": config.name, "torch": torch.__version__,
                "simplifier": f"onnxslim {onnxslim.__version__}", "graphs": {}}
    for name, (module, example) in graph_set.modules_and_examples(model, config).items():
        spec = graph_set.graphs[name]
        graph = _export_graph(spec, module, example)
        path = out / f"{name}.onnx"
        onnx.save(graph, str(path))
        manifest["graphs"][name] = {
            "file": path.name, "sha256": file_sha256(path), "opset": _opset(graph),
            "inputs": {v.name: _shape(v) for v in graph.graph.input},
            "outputs": {v.name: _shape(v) for v in graph.graph.output},
            "dynamic_axes": {inp: {str(a): n for a, n in axes.items()} for inp, axes in spec.dynamic.items()},
        }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path, graph_set: GraphSet = DTN_SET) -> dict | None:
    """The folder's manifest when every graph it names is present and unchanged, else None."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        graphs = manifest["graphs"]
        if set(graphs) != set(graph_set.graphs):
            return None
        for entry in graphs.values():
            if file_sha256(Path(folder) / entry["file"]) != entry["sha256"]:
                return None
    except (OSError, ValueError, KeyError):
        return None
    return manifest


def mrn_levels(manifest: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The exported MRN's RoI size and backbone channels per level (Res2..Res5)."""
    inputs = manifest["graphs"]["mrn"]["inputs"]
    shapes = [inputs[name] for name in GRAPHS["mrn"].inputs[:4]]
    return tuple(int(s[-1]) for s in shapes), tuple(int(s[1]) for s in shapes)


def ensure_onnx(model: nn.Module, config: EngineConfig, cache_dir: Path | None = None,
                graph_set: GraphSet = DTN_SET) -> Path:
    """The cached graph folder for these weights and this network, exported on first use.

    Folder: CACHE/onnx/<config name>-<the set's tag><network digest[:16]>. An export goes to a temporary
    folder first and is renamed into place, so a crash or a second process never leaves a
    half-written folder that looks valid.
    """
    digest = network_digest(model, config)
    folder = Path(cache_dir or default_cache_dir()) / "onnx" / f"{config.name}-{graph_set.tag}{digest[:16]}"
    manifest = read_manifest(folder, graph_set)
    if manifest is not None and manifest["network_digest"] == digest:
        return folder
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"exporting ONNX graphs to {folder} (once for these weights)", flush=True)
    export_onnx(model, config, staging, digest, graph_set)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:  # another process put its (identical) export in place first
        shutil.rmtree(staging, ignore_errors=True)
    return folder
