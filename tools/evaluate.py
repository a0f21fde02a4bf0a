"""Offline evaluation of saved predictions: DAVIS-2017, Ref-DAVIS17, MeViS valid_u, A2D- and JHMDB-Sentences,
and Ref-YouTube-VOS-layout predictions against ground-truth PNG folders (the synthetic world's held-out splits).

Examples:
    python tools/evaluate.py --protocol refdavis --davis-root data/ref-davis/DAVIS --results out/valid \\
        --csv --output out/refdavis_results.json
    python tools/evaluate.py --protocol davis --davis-root DAVIS --results out/valid/anno_0 --task unsupervised
    python tools/evaluate.py --protocol mevis --mevis-root data/mevis/valid_u --results out/mevis/Annotations \\
        --workers 8 --output out/mevis_results.json
    python tools/evaluate.py --protocol a2d --gt data/a2d_sentences --predictions out/a2d_predictions.json
    python tools/evaluate.py --protocol jhmdb --gt data/jhmdb_sentences --predictions out/jhmdb_predictions.json
    python tools/evaluate.py --protocol ytvos --meta data/ytvos/meta_expressions/valid/meta_expressions.json \
        --gt data/ytvos/_synthetic_gt/valid/Annotations --results out/valid

The paper-style table is logged; ``--output`` saves every number (per object / expression / image) as JSON.
``--report DIR`` (ytvos and mevis) also writes an HTML page to look at: the table, the J&F distribution over
expressions, J&F per expression kind (the synthetic world's ``synthetic_meta.json``, found beside the data or given
with ``--expression-kinds``) and the worst expressions as GIFs, prediction beside ground truth.
"""
import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.evaluation import (evaluate_davis, evaluate_mevis, evaluate_refdavis,  # noqa: E402
                                 evaluate_referring_segmentation, save_json, write_davis_csvs)
from rvos.evaluation.a2d import GT_FILE_NAMES  # noqa: E402
from rvos.evaluation.expression_masks import (FolderExpressionMasks, MeViSExpressionMasks,  # noqa: E402
                                              guess_frames_root)
from rvos.evaluation.expressions import expression_scores, find_sidecar, load_expression_kinds  # noqa: E402
from rvos.evaluation.html_report import DEFAULT_WORST, write_report  # noqa: E402
from rvos.evaluation.davis import TASKS  # noqa: E402
from rvos.evaluation.ytvos import evaluate_expression_folders  # noqa: E402
from rvos.evaluation.metrics import DEFAULT_BOUND_TH  # noqa: E402

PROTOCOLS = ("davis", "refdavis", "mevis", "a2d", "jhmdb", "ytvos")
REQUIRED = {
    "davis": ("davis_root", "results"),
    "refdavis": ("davis_root", "results"),
    "mevis": ("results",),
    "a2d": ("gt", "predictions"),
    "jhmdb": ("gt", "predictions"),
    "ytvos": ("meta", "gt", "results"),
}
REPORT_PROTOCOLS = ("ytvos", "mevis")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS, help="which benchmark protocol to run")
    parser.add_argument("--output", type=Path, help="write all results to this JSON file")

    davis = parser.add_argument_group("davis / refdavis")
    davis.add_argument("--davis-root", type=Path,
                       help="DAVIS folder holding JPEGImages/, Annotations_unsupervised/ (or Annotations/), ImageSets/")
    davis.add_argument("--subset", default="val", help="ImageSets/2017/<subset>.txt (default: val)")
    davis.add_argument("--task", default="unsupervised", choices=TASKS,
                       help="davis only; refdavis always uses the unsupervised task (default: unsupervised)")
    davis.add_argument("--resolution", default="480p", help="davis only: frame folder resolution (default: 480p)")
    davis.add_argument("--csv", action="store_true",
                       help="also write the official global_results-<subset>.csv and per-sequence_results-<subset>.csv "
                            "into each results folder")

    mevis = parser.add_argument_group("mevis")
    mevis.add_argument("--mevis-root", type=Path,
                       help="folder with meta_expressions.json and mask_dict.json (e.g. data/mevis/valid_u)")
    mevis.add_argument("--meta", type=Path, help="meta_expressions.json (mevis default: <mevis-root>/meta_expressions.json; needed by ytvos)")
    mevis.add_argument("--mask-dict", type=Path, help="mask_dict.json (default: <mevis-root>/mask_dict.json)")
    mevis.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                       help="processes scoring expressions in parallel (default: min(8, CPUs))")
    mevis.add_argument("--drop-broken-expressions", action="store_true",
                       help="like the official script, leave out (with a warning) expressions whose predictions are "
                            "missing or of the wrong size instead of stopping with an error")

    parser.add_argument_group("ytvos", "ground-truth PNG folders: --meta (meta_expressions.json), --gt (folder of "
                              "<video>/<exp_id>/<frame>.png), --results (predictions in the same layout)")
    a2d = parser.add_argument_group("a2d / jhmdb")
    a2d.add_argument("--gt", type=Path,
                     help="COCO-format GT JSON, or the dataset folder holding it under its official name "
                          f"({GT_FILE_NAMES['a2d']} / {GT_FILE_NAMES['jhmdb']}); ytvos: the ground-truth PNG folder")
    a2d.add_argument("--predictions", type=Path, help="COCO results JSON: all queries of every sample")
    a2d.add_argument("--map-top1-only", action="store_true",
                     help="compute mAP on each sample's top-1 prediction only (default: all, as the papers)")

    parser.add_argument("--results", type=Path,
                        help="predictions: <results>/<seq>/<frame>.png (davis), the folder holding anno_0..anno_3 "
                             "(refdavis), or <results>/<video>/<exp_id>/<frame>.png (mevis)")
    report = parser.add_argument_group("report (ytvos, mevis)")
    report.add_argument("--report", type=Path, metavar="DIR",
                        help="also write an HTML report (DIR/index.html with its images; relative links)")
    report.add_argument("--report-worst", type=int, default=DEFAULT_WORST, metavar="N",
                        help=f"how many of the worst expressions the report shows as GIFs (default: {DEFAULT_WORST})")
    report.add_argument("--frames", type=Path,
                        help="the split's frame folder <frames>/<video>/<frame>.jpg for the report's GIFs (default: "
                             "JPEGImages of the meta's split, where the benchmark layout puts it)")
    report.add_argument("--expression-kinds", type=Path, metavar="FILE",
                        help="JSON listing expressions: [{video, exp_id, kind}] (default: the synthetic world's "
                             "synthetic_meta.json beside the data, if any)")
    parser.add_argument("--bound-th", type=float, default=DEFAULT_BOUND_TH,
                        help="boundary F tolerance: fraction of the image diagonal if < 1, else pixels "
                             f"(default: {DEFAULT_BOUND_TH})")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Evaluate according to ``args.protocol`` and return the results dict."""
    if args.protocol == "davis":
        results = evaluate_davis(args.davis_root, args.results, task=args.task, subset=args.subset,
                                 resolution=args.resolution, bound_th=args.bound_th)
        if args.csv:
            write_davis_csvs(results, args.results)
        return results
    if args.protocol == "refdavis":
        return evaluate_refdavis(args.davis_root, args.results, subset=args.subset, write_csvs=args.csv,
                                 bound_th=args.bound_th)
    if args.protocol == "mevis":
        return evaluate_mevis(args.meta, args.mask_dict, args.results, workers=args.workers,
                              drop_broken_expressions=args.drop_broken_expressions, bound_th=args.bound_th)
    if args.protocol == "ytvos":
        return evaluate_expression_folders(args.meta, args.gt, args.results, bound_th=args.bound_th)
    gt = args.gt / GT_FILE_NAMES[args.protocol] if args.gt.is_dir() else args.gt
    return evaluate_referring_segmentation(gt, args.predictions, top1_only_map=args.map_top1_only)


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.protocol == "mevis":
        if args.mevis_root is None and (args.meta is None or args.mask_dict is None):
            parser.error("mevis needs --mevis-root, or both --meta and --mask-dict")
        args.meta = args.meta or args.mevis_root / "meta_expressions.json"
        args.mask_dict = args.mask_dict or args.mevis_root / "mask_dict.json"
    missing = [f"--{name.replace('_', '-')}" for name in REQUIRED[args.protocol] if getattr(args, name) is None]
    if missing:
        parser.error(f"--protocol {args.protocol} needs {' and '.join(missing)}")
    if args.report is not None and args.protocol not in REPORT_PROTOCOLS:
        parser.error(f"--report needs per-expression scores: --protocol {' or '.join(REPORT_PROTOCOLS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {"protocol": args.protocol, **run(args)}
    if args.output:
        logging.getLogger(__name__).info("results saved to %s", save_json(results, args.output))
    if args.report is not None:
        write_evaluation_report(args, results)
    return results


def write_evaluation_report(args: argparse.Namespace, results: dict) -> Path:
    """The HTML report of a ytvos / mevis evaluation (``--report``)."""
    data_paths = (args.meta, args.gt, args.mevis_root)
    kinds_file = args.expression_kinds or find_sidecar(data_paths)
    kinds = load_expression_kinds(kinds_file) if kinds_file is not None else None
    scores = expression_scores(results["per_expression"], args.meta, args.protocol, kinds)
    frames = args.frames or guess_frames_root(args.meta)
    if args.protocol == "mevis":
        masks = MeViSExpressionMasks(args.meta, args.mask_dict, args.results, frames)
    else:
        masks = FolderExpressionMasks(args.meta, args.gt, args.results, frames)
    details = {"predictions": str(args.results), "expressions": str(args.meta),
               "frames": str(frames) if frames is not None else "not found (masks drawn on grey)",
               "expression kinds": str(kinds_file) if kinds_file is not None else "not known"}
    return write_report(args.report, f"{args.protocol} evaluation: {args.results.name}", scores, masks,
                        worst=args.report_worst, details=details)


if __name__ == "__main__":
    main()
