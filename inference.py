"""Predictions for Ref-YouTube-VOS, MeViS, Ref-DAVIS17, A2D-Sentences, JHMDB-Sentences, or one's own video.

    python inference.py --dataset_file ytvos --ytvos_path data/ref-youtube-vos --split valid \\
        --resume ckpt.pth --output_dir out/ytvos
    python inference.py --dataset_file mevis --mevis_path data/mevis --split valid_u --resume ckpt.pth
    python inference.py --video clip.mp4 --text "the dog on the left" --text "a red car" --resume ckpt.pth
    torchrun --nproc_per_node 8 inference.py --dataset_file mevis --split valid --resume ckpt.pth
    python inference.py --model tfvos --key_frames model --resume tfvos.pth   # TFVOS key-frame inference

docs/INFERENCE.md describes every benchmark's outputs, the submission zips, ``--save_logits``,
``--sub_video_len``, distributed runs and resuming; docs/TFVOS.md the key-frame inference (``--key_frames``).
The exit status is non-zero when a video failed (``<output_dir>/<split>/failures.json`` lists them).
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

from rvos import opts
from rvos.predict import build_benchmark
from rvos.predict.benchmarks.davis import DEFAULT_CLIP_LEN
from rvos.predict.engine import InferenceEngine
from rvos.predict.keyframe import KeyFrameEngine, add_keyframe_arguments, keyframe_mode, keyframe_model_options
from rvos.predict.model import build_inference_model, inference_resize
from rvos.predict.run_record import OutputFolderMismatch, prediction_record
from rvos.predict.runner import InferenceRunner
from rvos.util.dist import destroy_process_group, init_distributed_mode
from rvos.util.logger import setup_logging

logger = logging.getLogger("inference")

LOG_NAME = "inference.log"


def _add(parser: argparse.ArgumentParser, *flags, **kwargs) -> None:
    """Add an option unless the shared parser (opts.py) already defines it."""
    if not any(flag in parser._option_string_actions for flag in flags):
        parser.add_argument(*flags, **kwargs)


def add_inference_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The inference-only options (see docs/INFERENCE.md)."""
    _add(parser, "--video", default=None, help="a video file or a folder of frames to segment (instead of a benchmark)")
    _add(parser, "--text", "--text_query", dest="text", action="append", default=None,
         help="an expression for --video (repeat for several)")
    _add(parser, "--overlay", default="mp4", choices=["mp4", "gif"],
         help="format of the overlay of --video (and of --visualize)")
    _add(parser, "--allow_random_weights", action="store_true",
         help="without --resume, run the --config model with random weights (pipeline tests, benchmarks)")
    _add(parser, "--per_expression", action="store_true",
         help="run the full model per expression as the original scripts (default: shared visual backbone)")
    _add(parser, "--decode_batch", default=1, type=int,
         help="expressions decoded together in shared mode (0: all of a window). 1 gives masks bit-identical to "
              "--per_expression; more is faster on a GPU, with float rounding differences of about 1e-5 in logits")
    _add(parser, "--save_logits", action="store_true",
         help="also save soft masks and per-frame scores per expression for ensembling (docs/INFERENCE.md)")
    _add(parser, "--zip", action=argparse.BooleanOptionalAction, default=None,
         help="write the submission zip at the end (default: on for ytvos valid/test and mevis valid/test)")
    _add(parser, "--test_short_side", default=None, type=int,
         help="inference resize of the short side (default: 360; MUTR 432; A2D/JHMDB 360 with the long side <= 640)")
    _add(parser, "--test_max_size", default=None, type=int,
         help="cap on the long side after the inference resize (default: none, as the original)")
    _add(parser, "--davis_clip_len", default=DEFAULT_CLIP_LEN, type=int,
         help="Ref-DAVIS17: frames per clip (the original's 36; MUTR used 64)")
    add_keyframe_arguments(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("ReferFormer-family inference", parents=[opts.get_args_parser()],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_inference_arguments(parser)


def explicit_options(argv: Optional[List[str]]) -> Dict[str, str]:
    """The options given on the command line or in the --config file, each with where it was given."""
    return opts.option_sources(argv, build_parser())


def _unambiguous(argv: Optional[List[str]]) -> List[str]:
    """``argv`` with ``--text`` spelled ``--text_query``: ``opts.parse_args`` first looks for ``--config`` with a
    parser that allows abbreviations and does not know ``--text``, for which ``--text`` is an ambiguous prefix of
    ``--text_encoder`` / ``--text_backbone``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return ["--text_query" if a == "--text" else "--text_query=" + a[7:] if a.startswith("--text=") else a
            for a in argv]


def main(argv: Optional[List[str]] = None) -> int:
    argv = _unambiguous(argv)
    args = opts.parse_args_or_exit(argv, build_parser())
    ctx = init_distributed_mode(args)
    setup_logging(Path(args.output_dir), ctx.rank, log_name=LOG_NAME)
    try:
        benchmark = build_benchmark(args)
        model, model_args = build_inference_model(args, keyframe_model_options(args, explicit_options(argv)))
        device = torch.device(args.device)
        model.to(device)
        short_side, max_size = inference_resize(benchmark, getattr(model_args, "model", None), args.test_short_side,
                                                args.test_max_size)
        engine = InferenceEngine(model, device, per_expression=args.per_expression, decode_batch=args.decode_batch,
                                 amp=args.amp, size_divisibility=benchmark.size_divisibility,
                                 multi_object=benchmark.multi_object)
        mode = ("per-expression video model (chunked)" if engine.segment_video is not None else "per-expression"
                if args.per_expression else f"shared-backbone mode, decode batch {args.decode_batch or 'all'}")
        logger.info("%s inference on %s: short side %d%s, %s", benchmark.name, device, short_side,
                    f" (long side <= {max_size})" if max_size else "", mode)
        if keyframe_mode(args):
            engine = KeyFrameEngine.from_args(args, engine, benchmark, short_side, max_size)
        record = prediction_record(args, short_side, max_size) if ctx.rank == 0 else None
        runner = InferenceRunner(benchmark, engine, short_side, max_size, num_workers=args.num_workers, zip=args.zip,
                                 record=record)
        try:
            return runner.run()
        except OutputFolderMismatch as err:
            logger.error("%s", err)
            return 2
    finally:
        destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
