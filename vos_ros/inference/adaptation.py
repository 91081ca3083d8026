"""First-frame adaptation: the MRN fine-tuned on the annotated frame of the video it tracks.

Not in DTN (it reports no online training); RGMP, LIP and OSVOS-style methods
fine-tune on the first frame, OVSNet dreams training pairs from it (Lucid Data
Dreaming). Why here: trained on six sequences, the MRN's learnt correction is
confident on the objects it has seen and wrong on others (model/mrn.py); a few
seconds of fine-tuning on pairs made from the annotated frame alone
(data/pairs.py FirstFramePairs) teaches it the objects it is actually asked to
follow, and the other targets around them.

Cost control (the tracker waits for it when targets are added, unless
adaptation.background fits it in a worker thread): each target's pairs are
built once and the backbone runs once over them (the backbone is frozen, so
its features are cached); the iterations then run the MRN alone on
random minibatches of the cached RoI features, priors and masks. The appearance
match of every pair is computed once against the target's reference, which is
the engine's first-frame reference (the same RoI and mask).

One adapted MRN serves all targets (the engine batches them through one
network): on every add it restarts from the offline weights and fits the pairs
of all current targets. Removing a target drops its pairs for later fits.
"""

from __future__ import annotations

import copy
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import default_collate

from ..config import EngineConfig
from ..data.examples import ExampleBuilder, mrn_inputs
from ..data.pairs import FirstFramePairs
from ..model.losses import mrn_loss
from ..model.mrn import MaskRefinementNetwork


@dataclass
class AdaptationReport:
    target_ids: list[int]
    pairs: int
    loss_before: float  # mean MRN loss over the pairs, offline weights
    loss_after: float  # ... adapted weights
    seconds: float = 0.0  # building the pairs and fitting, as the engine timed it


@dataclass
class _TargetPairs:
    roi_features: list[torch.Tensor]  # levels 2..5, (P, C_j, m_j, m_j)
    priors: torch.Tensor  # (P, 2, M, M): warped previous mask, appearance match
    masks: torch.Tensor  # (P, 1, M, M)


class MRNAdapter:
    """Holds the offline MRN weights, each target's cached first-frame pairs, and fits an adapted copy."""

    def __init__(self, config: EngineConfig, mrn: MaskRefinementNetwork, device: torch.device):
        """`mrn` (offline weights) becomes the adapter's own network: pass a copy."""
        self.config = config
        self.device = device
        self.network = mrn.to(device, torch.float32)
        self.network.correction_scale = 1.0  # trained at full correction, as the trainer does
        self._offline = copy.deepcopy(self.network.state_dict())
        self._builder = ExampleBuilder(config)
        self._pairs: dict[int, _TargetPairs] = {}

    @property
    def target_ids(self) -> list[int]:
        return sorted(self._pairs)

    def remove(self, ids: list[int]) -> None:
        for i in ids:
            self._pairs.pop(i, None)

    def clear(self) -> None:
        """Drop every target's pairs; `network` goes back to the offline weights."""
        self._pairs.clear()
        self.network.load_state_dict(self._offline)

    @torch.inference_mode(False)
    @torch.no_grad()
    def add(self, image: np.ndarray, labels: np.ndarray, ids: list[int],
            backbone: Callable[[torch.Tensor], list[torch.Tensor]]) -> None:
        """Build and cache the pairs of targets `ids` of label map `labels` (re-adding an id replaces them)."""
        cfg = self.config
        pairs = FirstFramePairs(image, labels, ids)
        for i in ids:
            rng = np.random.default_rng([cfg.adaptation.seed, i])
            examples = []
            for _ in range(4 * cfg.adaptation.examples):  # a pair whose previous mask left the frame is skipped
                example = self._builder.build(pairs.sample(rng, i), rng)
                if example is not None:
                    examples.append(example)
                if len(examples) == cfg.adaptation.examples:
                    break
            if not examples:
                continue
            batch = default_collate(examples)
            # Every pair's reference view is the annotated frame: the backbone sees it once (image n).
            n = len(examples)
            views = [batch["image"], batch["ref_image"][:1]] + ([batch["mem_image"]] if "mem_image" in batch else [])
            images = torch.cat(views).to(self.device).float() / 255.0
            features = [level.float() for level in backbone(images)]
            memory_index = torch.arange(n + 1, 2 * n + 1) if "mem_image" in batch else None
            levels, priors = mrn_inputs(features, batch, torch.full((n,), n), memory_index, self.network.roi_sizes,
                                        cfg.mrn)
            self._pairs[i] = _TargetPairs(levels, priors, batch["mask"].to(self.device))

    @torch.inference_mode(False)
    def fit(self) -> AdaptationReport:
        """Fine-tune `network` from the offline weights on the cached pairs of all current targets
        (no pairs: the offline weights themselves). Deterministic for the same targets and frame."""
        settings = self.config.adaptation
        self.network.load_state_dict(self._offline)
        if not self._pairs:
            self.network.eval()
            return AdaptationReport([], 0, math.nan, math.nan)
        pairs = [self._pairs[i] for i in self.target_ids]
        features = [torch.cat([p.roi_features[j] for p in pairs]) for j in range(len(pairs[0].roi_features))]
        priors, masks = torch.cat([p.priors for p in pairs]), torch.cat([p.masks for p in pairs])
        generator = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=settings.lr, weight_decay=1e-4)
        before = self._loss(features, priors, masks)
        self.network.train()
        with torch.enable_grad():
            for _ in range(settings.iterations):
                pick = torch.randint(masks.shape[0], (settings.batch_size,), generator=generator).to(self.device)
                loss = mrn_loss(self.network([f[pick] for f in features], priors[pick]), masks[pick])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.network.eval()
        return AdaptationReport(self.target_ids, masks.shape[0], before, self._loss(features, priors, masks))

    @torch.no_grad()
    def _loss(self, features: list[torch.Tensor], priors: torch.Tensor, masks: torch.Tensor) -> float:
        """Mean MRN loss over all cached pairs (the network in eval mode)."""
        self.network.eval()
        return float(mrn_loss(self.network(features, priors), masks))


class AdaptationRunner:
    """Runs an adapter's calls for the engine and swaps each fit into the backend's MRN: at once,
    or with adaptation.background in order on one worker thread, where only the newest fit is
    swapped in (a reset drops it) and the tracker keeps stepping with the weights it has."""

    def __init__(self, adapter: MRNAdapter, backend, background: bool):
        self.adapter, self.backend, self.background = adapter, backend, background
        self.last: AdaptationReport | None = None  # the fit now in use
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    @property
    def pending(self) -> bool:
        """A fit is running, or done but not yet swapped in."""
        return self._pending is not None

    @property
    def fitting(self) -> bool:
        """A fit is running (it is swapped in at the first step after it ends)."""
        return self._pending is not None and not self._pending.done()

    def start(self, image: np.ndarray, labels: np.ndarray, ids: list[int]) -> None:
        """Pairs for `ids`, then a refit on every current target's pairs."""
        self._pending = self._call(self._fit, image.copy(), labels.copy(), ids)
        self.swap_ready()

    def remove(self, ids: list[int]) -> None:
        """The adapted MRN stays; the next refit leaves these targets out."""
        self._call(self.adapter.remove, ids)

    def reset(self) -> None:
        """The offline weights again (waits for a fit still running)."""
        self._pending = None
        self._call(self.adapter.clear).result()
        self.backend.use_mrn(None)

    def swap_ready(self) -> None:
        if self._pending is None or not self._pending.done():
            return
        report, compiled = self._pending.result()
        self._pending = None
        self.backend.use_mrn(compiled)
        self.last = report

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self.swap_ready()

    def _call(self, fn, *args) -> Future:
        if not self.background:
            future = Future()
            future.set_result(fn(*args))
            return future
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="vos_ros_adaptation")
        return self._worker.submit(fn, *args)

    def _fit(self, image: np.ndarray, labels: np.ndarray, ids: list[int]) -> tuple[AdaptationReport, object]:
        """The adapted MRN, compiled by the backend (an ONNX export, an engine build) where the fit ran."""
        start = time.perf_counter()
        self.adapter.add(image, labels, ids, self.backend.backbone)
        report = self.adapter.fit()
        network = copy.deepcopy(self.adapter.network)
        network.correction_scale = self.adapter.config.mrn.correction_scale
        compiled = self.backend.compile_mrn(network)
        report.seconds = time.perf_counter() - start
        return report, compiled
