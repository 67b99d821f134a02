"""``uwstego replay``: run a bundle over a recorded dive, offline, without ROS."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from uwstego.backends import BACKEND_NAMES, CPU_GRAPH_CHOICES, PRECISIONS
from uwstego.objects import ObjectSettings, parse_class_list
from uwstego.replay.loop import ReplaySettings, replay
from uwstego.replay.outputs import CONFIDENCE_MODES, NODE_NAMESPACE, OVERLAY_MODES
from uwstego.replay.summary import model_labels
from uwstego.survey.cli import add_navigation_options

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="segment a rosbag, a video or an image folder offline: output bag, "
                       "report, scores",
        description="Run the node's Segmenter over a bag's camera topic (or a video's frames, "
                    "or a folder's images) frame by frame. Writes an output bag (the input "
                    "frames and the camera's CameraInfo copied unchanged, plus the node's "
                    "topics), an HTML report with plots and an overlay video, and scores "
                    "against ground truth if given or declared by the bag.")
    p.add_argument("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3), a video file "
                   "(.mp4, .mkv, .webm ...) or a folder of images (replayed in file name order)")
    p.add_argument("--fps", type=float, help="frame rate of a video or image folder, for its "
                   "frame times (default: the video's own, 10 for a folder)")
    p.add_argument("--bundle", type=Path, required=True, help="deploy bundle folder")
    p.add_argument("--topic", help="camera topic (Image or CompressedImage); default "
                   "/camera/image_raw[/compressed] or the bag's only image topic")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", help="ground-truth label topic in the bag (mono8 class ids, "
                    "255 = ignore), matched to frames by header stamp; default: the topic the "
                    "bag declares as its labels (uwstego synth bags), if any")
    gt.add_argument("--gt-dir", type=Path, help="folder of ground-truth label PNGs named by "
                    "header stamp in ns or by frame index (000042.png)")
    p.add_argument("--gt-classes", type=int, help="number of ground-truth classes "
                   "(default: 1 + the largest label seen)")
    p.add_argument("--gt-names", type=lambda s: tuple(s.split(",")),
                   help="comma-separated ground-truth class names, in label order")
    p.add_argument("--out", type=Path, help="output bag folder (must not exist)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="output bag storage (default mcap)")
    p.add_argument("--bag-overlay", choices=OVERLAY_MODES, default="jpeg",
                   help="overlay in the output bag: jpeg (CompressedImage on "
                        "<namespace>/overlay/compressed, default), raw (rgb8, as the node), off")
    p.add_argument("--bag-confidence", choices=CONFIDENCE_MODES, default="mono16",
                   help="confidence in the output bag: mono16 (default) or mono8, the cosine "
                        "similarity clipped to [0, 1] times 65535 or 255, the factor back on "
                        "<namespace>/confidence/scale; 32FC1 (as the node); off")
    p.add_argument("--report", type=Path,
                   help="report folder (HTML, PNGs, overlay video, frames to look at, "
                        "summary.json)")
    p.add_argument("--compare", type=Path, metavar="BUNDLE2", action="append", default=[],
                   help="another bundle to run on the same frames and compare with the first; "
                        "may be given several times (output topics under <namespace>/compare, "
                        "<namespace>/compare2 ...)")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                   help="inference backend; auto takes TensorRT, then ONNX Runtime CUDA, then CPU")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="TensorRT engine precision; ONNX Runtime runs the FP32 graph for fp16 "
                        "and fp32, the INT8 graph for int8")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime threads (default 0: one per core; docs/deploy.md §11)")
    p.add_argument("--cpu-graph", choices=CPU_GRAPH_CHOICES, default="auto",
                   help="the CPU graph ONNX Runtime runs: auto times the bundle's graphs once "
                        "on this machine and takes the fastest")
    p.add_argument("--every", type=int, default=1, metavar="N", help="use every N-th frame")
    p.add_argument("--realtime", action="store_true",
                   help="pace frames by their bag timestamps instead of as fast as possible")
    p.add_argument("--namespace", default=NODE_NAMESPACE,
                   help=f"namespace of the output topics (default {NODE_NAMESPACE}, the node's)")
    p.add_argument("--overlay-alpha", type=float, default=0.5,
                   help="weight of the class colours over the frame in overlays, 0-1")
    add_navigation_options(p)
    objects = p.add_argument_group("objects (docs/objects.md; files in <report>/objects/)")
    objects.add_argument("--objects", type=parse_class_list, default=(), metavar="NAMES",
                         help="comma-separated class names of the bundle whose connected "
                              "regions are objects: tracks, per-frame detections, a report "
                              "section (default: none)")
    objects.add_argument("--object-min-area", type=int, default=ObjectSettings.min_area,
                         metavar="PX", help="smallest object in pixels (default "
                                            f"{ObjectSettings.min_area})")
    objects.add_argument("--object-max-missed", type=int, default=ObjectSettings.max_missed,
                         metavar="N", help="frames an object may go unseen and keep its track "
                                           f"(default {ObjectSettings.max_missed})")
    objects.add_argument("--gt-objects", type=parse_class_list, metavar="NAMES",
                         help="ground-truth class names whose regions are the true objects, "
                              "for detection recall/precision per class (default: the "
                              "--objects names the ground truth has)")
    objects.add_argument("--object-iou", type=float, default=0.5,
                         help="bounding-box IoU at which a detection finds a true object "
                              "(default 0.5)")
    p.add_argument("--json", action="store_true",
                   help="print the summary (without per-frame series) as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trusted-key", type=Path, action="append", default=[], metavar="PUB.pem",
                   help="load only bundles signed by this Ed25519 public key (repeat for "
                        "several; see docs/bundle.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = ReplaySettings(
        topic=args.topic, fps=args.fps, every=args.every, realtime=args.realtime,
        backend=args.backend, threads=args.threads, cpu_graph=args.cpu_graph,
        precision=args.precision, gt_topic=args.gt_topic, gt_dir=args.gt_dir,
        nav_topic=args.nav_topic, max_nav_gap_s=args.max_nav_gap,
        gt_classes=args.gt_classes, gt_names=args.gt_names, overlay_alpha=args.overlay_alpha,
        namespace=args.namespace,
        storage=args.storage, bag_overlay=args.bag_overlay,
        bag_confidence=args.bag_confidence, progress=not args.no_progress,
        trusted_keys=tuple(map(str, args.trusted_key)),
        objects=ObjectSettings(classes=args.objects, min_area=args.object_min_area,
                               max_missed=args.object_max_missed),
        gt_objects=args.gt_objects, object_iou=args.object_iou)
    result = replay(args.bag, args.bundle, settings, out_bag=args.out, report_dir=args.report,
                    compare=args.compare)
    s = result.summary
    frames = s.frames
    if args.json:
        print(json.dumps(s.to_dict(series=False), indent=2))
    if not frames.processed:
        written = [str(p) for p in (result.out_bag, result.report_dir) if p is not None]
        log.error("no frame of %s was usable (%s)%s", s.topic, frames.why_none(),
                  f"; written anyway: {', '.join(written)}" if written else "")
        return 1
    lat = s.primary.figures.latency_ms
    log.info("%d frames processed, %d skipped, %.1f frames/s; latency p50 %s ms, p95 %s ms",
             frames.processed, frames.skipped, s.throughput_fps or 0.0, _ms(lat.p50),
             _ms(lat.p95))
    names = model_labels([m.bundle for m in s.models])
    for model, name in zip(s.models, names, strict=True):
        truth = model.ground_truth.scores if model.ground_truth else None
        if truth is not None and truth.mIoU is not None:
            log.info("%s against the ground truth (%d classes): mIoU %.1f%%, accuracy %.1f%%",
                     name, model.ground_truth.n_classes or 0, truth.mIoU, truth.accuracy or 0.0)
        if model.agreement is not None and model.agreement.accuracy is not None:
            log.info("agreement of %s (%s) with %s: %.1f%% of pixels", name, model.bundle.path,
                     names[0], model.agreement.accuracy)
    for problem in frames.damage:
        log.warning("damage: %s", problem)
    return 0


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
