"""`vos-ros`: segment, eval, bench, bench-ros, train, train-rgmp, train-lip, train-ovsnet, train-dyenet, train-prompts, prompt-eval, reacquire, demo, export, build-engine."""

from __future__ import annotations

import argparse
import sys

from ..backends import BACKENDS, PRECISIONS
from ..config import METHOD_NAMES, ConfigError
from ..inference.types import EngineInputError


def _add_network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="cpu", help="cpu | gpu | path to a YAML config (default: cpu)")
    p.add_argument("--weights", default=None, help="the method's weights file (default: the config's shipped weights)")
    p.add_argument("--untrained", action="store_true",
                   help="ImageNet backbone + random heads instead of trained weights (development only)")
    p.add_argument("--method", default=None, help=f"per-frame segmenter: {' | '.join(METHOD_NAMES)} (default: the config's `method`)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    _add_network_args(p)
    p.add_argument("--device", default=None, help="cpu | cuda (default: the config's; cuda for tensorrt)")
    p.add_argument("--theta-c", type=float, default=None, help="decision threshold (default: the config's)")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="inference backend (default: torch)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="torch: fp32 on CPU, fp16 on CUDA (default); onnxruntime: fp32; tensorrt: fp16 (default), "
                        "fp32, int8 (engine built by build-engine)")
    p.add_argument("--cache", default=None,
                   help="folder for ONNX graphs and TensorRT engines (default: $VOS_ROS_CACHE or ~/.cache/vos_ros)")


def _method_trainer(sub, method: str, help: str, section: str, iterations: int, batch_size: int,
                    batch_help: str | None = None, lr: float = 1e-3, lr_help: str = "learning rate (cosine decay)",
                    checkpoint_every: int = 250, stills_help: str = "still-image sets, made into clips"
                    ) -> argparse.ArgumentParser:
    """`train-METHOD` with the arguments every seed-method trainer takes (training/common.train_loop)."""
    p = sub.add_parser(f"train-{method}", help=help)
    p.add_argument("--config", default="cpu", help=f"whose {method} section ({section}) to train")
    p.add_argument("--video", required=True, help="DAVIS-layout training split (never a dev split)")
    p.add_argument("--out", required=True, help="run folder: checkpoint, losses.jsonl, weights per checkpoint")
    p.add_argument("--stills", default="", metavar="DIR", help=stills_help)
    p.add_argument("--iterations", type=int, default=iterations)
    p.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    p.add_argument("--holdout", default="", metavar="SEQ[,SEQ...]",
                   help="train sequences left out and scored (mean J&F) at each checkpoint; the best is kept")
    p.add_argument("--no-resume", action="store_true")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vos-ros", description="DTN video object segmentation and tracking")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment DAVIS sequences, a video file or an image folder")
    src = seg.add_mutually_exclusive_group(required=True)
    src.add_argument("--davis", help="DAVIS root (JPEGImages/480p, Annotations/480p)")
    src.add_argument("--video", help="video file or folder of images")
    seg.add_argument("--mask", help="first-frame mask PNG (with --video)")
    seg.add_argument("--sequences", help="comma-separated DAVIS sequences (default: all)")
    seg.add_argument("--out", required=True, help="output folder")
    seg.add_argument("--offline", action="store_true",
                     help="the whole clip at once (method dyenet: bidirectional propagation, tracklets linked), "
                          "for recorded video")
    _add_model_args(seg)

    ev = sub.add_parser("eval", help="J, F, J&F of predicted masks against DAVIS ground truth")
    ev.add_argument("--davis", required=True)
    ev.add_argument("--pred", required=True)
    ev.add_argument("--sequences", help="comma-separated sequences to score (default: every annotated one)")
    ev.add_argument("--json", help="also write the scores here")

    bench = sub.add_parser("bench", help="per-stage times, fps for 1 and 3 objects, memory, theta_c sweep; "
                                         "another backend than torch is also timed against torch in the same run")
    _add_model_args(bench)
    bench.add_argument("--data", default=None, help="folder with davis2016/dev for the sweep (default: ../shared/data)")
    bench.add_argument("--long-frames", type=int, default=2000, help="frames of the memory run")
    bench.add_argument("--frames", type=int, default=100, help="frames per speed measurement")
    bench.add_argument("--sweep", default="0,0.5,0.7,0.83,0.9,0.95,1", help="theta_c values ('' to skip)")
    bench.add_argument("--out", default="bench_out", help="folder for the plot and JSON")

    train = sub.add_parser("train", help="train the DTN networks (stage 1 synthetic, stage 2 DAVIS train)")
    train.add_argument("--config", default="cpu")
    train.add_argument("--data", required=True, help="DAVIS-layout training split (never a dev split)")
    train.add_argument("--out", required=True, help="run folder: checkpoints, losses.jsonl, final weights")
    train.add_argument("--iterations", type=int, default=3000)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--workers", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--holdout", default="", metavar="SEQ[,SEQ...]",
                       help="training sequences left out and scored (mean J&F) at each checkpoint; the best is kept")
    train.add_argument("--stills", default="", metavar="DIR",
                       help="still-image sets (DIR/SET/images/*.jpg, DIR/SET/masks/*.png) for synthetic pairs")
    train.add_argument("--still-share", type=float, default=0.0,
                       help="share of synthetic pairs whose object is cut from a still image (with --stills)")
    train.add_argument("--checkpoint-every", type=int, default=250)
    train.add_argument("--backbone-stages", type=int, default=0, metavar="N",
                       help="fine-tune the backbone's last N of 4 stages, BatchNorm frozen (default 0: frozen)")
    train.add_argument("--backbone-lr", type=float, default=3e-5, help="backbone learning rate (with --backbone-stages)")
    train.add_argument("--init", default="", metavar="WEIGHTS", help="start from these weights (fine-tuning)")
    train.add_argument("--widen", action="store_true",
                       help="--init's heads are narrower than the config's (e.g. mrn.channels): start from them widened, "
                            "computing what they computed")
    train.add_argument("--lr", type=float, default=3e-4, help="heads' learning rate (cosine decay)")
    train.add_argument("--stage1-fraction", type=float, default=0.15, help="share of synthetic-only iterations first")
    train.add_argument("--alike-occluders", type=float, default=0.0,
                       help="share of synthetic occluders that are the target itself, cut from another frame (alike instances)")
    train.add_argument("--recurrent-fraction", type=float, default=0.0,
                       help="share of iterations on clips tracked with the model's own predictions as priors")
    train.add_argument("--clip-steps", type=int, default=3, help="tracked pairs per recurrent clip")
    train.add_argument("--alike-clips", type=float, default=0.0,
                       help="share of recurrent clips with an alike instance (the target, cut from another frame) moving with it")
    train.add_argument("--prior-strays", type=float, default=0.0,
                       help="share of perturbed previous masks given a stray piece (a trail, a blob on a neighbour)")
    train.add_argument("--heads", default="", help="comma-separated heads that learn (decision,crpn,mrn; default all)")
    train.add_argument("--no-resume", action="store_true")

    train_rgmp = _method_trainer(sub, "rgmp", "train the RGMP network (stage 1 simulated pairs, stage 2 recurrent on "
                                 "train video)", "width, working scale", iterations=1000, batch_size=4, lr=3e-4,
                                 lr_help="learning rate of the new layers: decoder, mask filters (cosine decay)",
                                 stills_help="still-image sets for stage 1")
    train_rgmp.add_argument("--stage", required=True, choices=("pairs", "clips"),
                            help="pairs: simulated from still images and frames; clips: recurrent (BPTT) on the video")
    train_rgmp.add_argument("--encoder-lr", type=float, default=3e-5, help="learning rate of the ImageNet encoder")
    train_rgmp.add_argument("--recurrences", type=int, default=4, help="stage 2: predicted frames per clip")
    train_rgmp.add_argument("--init", default="", metavar="WEIGHTS", help="start from these RGMP weights (stage 2)")

    train_lip = _method_trainer(sub, "lip", "train the LIP networks (memory and heads) on train video, recurrently, "
                                "with still images as clips", "width, working scale", iterations=1500, batch_size=2)
    train_lip.add_argument("--still-share", type=float, default=0.3, help="share of clips from still images")
    train_lip.add_argument("--frames", type=int, default=8, help="frames per clip")
    train_lip.add_argument("--truncate", type=int, default=4, help="the gradient is stopped every this many frames")
    train_lip.add_argument("--init", default="", metavar="WEIGHTS", help="start from these LIP weights")

    train_ovsnet = _method_trainer(sub, "ovsnet", "train OVSNet's Re-ID and MGA heads on train video and still images "
                                   "(its detector, LIP's network, stays frozen)", "detector, working scale",
                                   iterations=1500, batch_size=6, batch_help="clips (three frames each) per batch")
    train_ovsnet.add_argument("--still-share", type=float, default=0.3, help="share of clips from still images")

    train_dyenet = _method_trainer(sub, "dyenet", "train DyeNet's Re-ID network and Re-MP on train video and still "
                                   "images (its proposals, LIP's network, stay frozen)", "detector, working scale",
                                   iterations=800, batch_size=4, batch_help="clips per batch", checkpoint_every=200)
    train_dyenet.add_argument("--still-share", type=float, default=0.3, help="share of clips from still images")
    train_dyenet.add_argument("--steps", type=int, default=5, help="frames per clip (Re-MP's recurrence)")

    train_prompts = sub.add_parser("train-prompts", help="train the prompt network (box / click -> mask) on still "
                                                         "images and train video")
    train_prompts.add_argument("--video", required=True, help="DAVIS-layout training split (never a dev split)")
    train_prompts.add_argument("--stills", required=True, metavar="DIR",
                               help="still-image sets (DIR/SET/images/*.jpg, DIR/SET/masks/*.png)")
    train_prompts.add_argument("--out", required=True, help="run folder: checkpoint, losses.jsonl, best weights")
    train_prompts.add_argument("--iterations", type=int, default=2000)
    train_prompts.add_argument("--batch-size", type=int, default=8)
    train_prompts.add_argument("--lr", type=float, default=3e-4, help="head learning rate (cosine decay)")
    train_prompts.add_argument("--seed", type=int, default=0)
    train_prompts.add_argument("--still-share", type=float, default=0.5, help="share of objects from still images")
    train_prompts.add_argument("--checkpoint-every", type=int, default=250)
    train_prompts.add_argument("--backbone-stages", type=int, default=None, metavar="N",
                               help="fine-tune the backbone's last N of 4 stages for prompts, BatchNorm statistics frozen "
                                    "(stored with the head; default: --init's, else 0: the tracker's backbone as it is)")
    train_prompts.add_argument("--init", default=None, metavar="WEIGHTS",
                               help="start from these prompt weights and their settings (default: the tracker's MRN)")
    train_prompts.add_argument("--region-scale", type=float, default=None,
                               help="backbone region side / longer RoI side (default: --init's, else 1.5)")
    train_prompts.add_argument("--refine-passes", type=int, default=None,
                               help="refining passes of a box prompt when the checkpoints are scored (default: "
                                    "--init's, else 1)")
    train_prompts.add_argument("--backbone-lr", type=float, default=3e-5, help="with --backbone-stages")
    train_prompts.add_argument("--augment", type=float, default=0.0,
                               help="share of objects mirrored, rescaled (up to 1.35x) and recoloured")
    train_prompts.add_argument("--holdout", default="", metavar="SEQ[,SEQ...]",
                               help="train sequences left out and scored (box and click IoU) at each checkpoint; "
                                    "the best is kept")
    train_prompts.add_argument("--no-resume", action="store_true")

    prompt_eval = sub.add_parser("prompt-eval", help="mask IoU of box or click prompts derived from DAVIS ground "
                                                     "truth, every 10th frame")
    prompt_eval.add_argument("--davis", required=True, help="DAVIS root")
    prompt_eval.add_argument("--prompt", required=True, choices=("box", "click"))
    prompt_eval.add_argument("--segmenter", default="learnt", choices=("learnt", "grabcut"))
    prompt_eval.add_argument("--weights", default=None, help="prompt network weights (default: the shipped file)")
    prompt_eval.add_argument("--sequences", help="comma-separated sequences (default: all)")
    prompt_eval.add_argument("--every", type=int, default=10, help="frame step (default 10)")

    reacquire = sub.add_parser("reacquire", help="frames to re-acquire an object hidden for long, and false "
                                                 "re-acquisitions on its look-alike (synthetic clips)")
    _add_model_args(reacquire)
    reacquire.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated clip seeds")

    sub.add_parser("bench-ros", add_help=False,
                   help="end-to-end latency/throughput across processes: player -> tracker -> probe (--help for options)")

    demo = sub.add_parser("demo", help="track the embedded demo scene and score it (no camera, no data)")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--frames", type=int, default=90)
    _add_model_args(demo)

    export = sub.add_parser("export", help="ONNX graphs of the method's networks (+ manifest.json), checked and simplified")
    _add_network_args(export)
    export.add_argument("--out", required=True, help="output folder")

    build = sub.add_parser("build-engine", help="build and cache the TensorRT engines (at install time on the robot)")
    _add_network_args(build)
    build.add_argument("--device", default="cuda", help="CUDA device (default: cuda)")
    build.add_argument("--precision", default="fp16", choices=PRECISIONS, help="default: fp16")
    build.add_argument("--calibration", default=None,
                       help="int8 (method dtn): a DAVIS root (annotated sequences) or a folder of consecutive camera frames")
    build.add_argument("--cache", default=None, help="cache folder (default: $VOS_ROS_CACHE or ~/.cache/vos_ros)")
    build.add_argument("--rebuild", action="store_true", help="rebuild even when a cached engine fits")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench-ros"]:  # its own parser; imports rclpy only when asked for
        from ..ros.bench import main as bench_ros

        return bench_ros(argv[1:])
    args = build_parser().parse_args(argv)
    from . import commands

    try:
        return getattr(commands, args.command.replace("-", "_"))(args)
    except (FileNotFoundError, ValueError, ConfigError, EngineInputError, RuntimeError) as exc:
        print(f"vos-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
