"""The model zoo (configs/zoo.yaml): list it, identify a checkpoint, reproduce the papers' numbers.

    python tools/zoo.py list
    python tools/zoo.py identify ytvos_swin_tiny.pth          # or a folder written by tools/convert_checkpoint.py
    python tools/zoo.py reproduce --weights checkpoints/ --data data/ [--rows 'referformer_*/ref_davis17_valid']

``identify`` reads the checkpoint's names, shapes and recorded options (no weights) and says which zoo entries and
config it fits, which its recorded options rule out, or for an unknown checkpoint the closest architecture and a
table of what differs; exit status 0 when it fits an entry or its recorded options, 1 otherwise.

``reproduce`` runs, for every zoo entry whose checkpoint is in ``--weights`` (under its published file name, or
as ``<id>.pth`` / ``<id>/``), inference (``inference.py``) and the offline evaluation (``tools/evaluate.py``) of
each benchmark the paper reports for it, and prints the paper's number beside ours. The datasets are looked up
under ``--data`` with the default folder names (ref-youtube-vos, ref-davis, mevis, a2d_sentences,
jhmdb_sentences). Rows scored by an evaluation server (Ref-YouTube-VOS, MeViS valid) are marked and their
submission zip is written; rows this code does not compute (RefCOCO: ``main.py --eval``; CFBI post-processing)
are marked too. Arguments after ``--`` go to every ``inference.py`` run (``-- --device cpu --num_workers 2``).
Rerunning resumes: finished predictions are kept.
"""
import argparse
import fnmatch
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.evaluation import evaluate_mevis, evaluate_refdavis, evaluate_referring_segmentation  # noqa: E402
from rvos.evaluation.a2d import GT_FILE_NAMES  # noqa: E402
from rvos.evaluation.ytvos import evaluate_expression_folders  # noqa: E402
from rvos.models.checkpoint import CheckpointError, checkpoint_layout, compare_shapes, normalise_state_dict  # noqa: E402
from rvos.predict.options import options_to_argv  # noqa: E402
from rvos.predict.zoo import (BENCHMARKS, ZOO_FILE, Zoo, ZooEntry, ZooError, architecture_values,  # noqa: E402
                              build_layout, format_identification, identify, load_zoo)
from rvos import inference  # noqa: E402

logger = logging.getLogger("zoo")

METRIC_NAMES = {"jf": "J&F", "j": "J", "f": "F", "oiou": "oIoU", "miou": "mIoU", "map": "mAP",
                "rec_precision_at_0.5": "REC P@0.5", "ris_oiou": "RIS oIoU"}


# ---------------------------------------------------------------------------------------------- list

def _paper_summary(entry: ZooEntry) -> str:
    parts = []
    for benchmark, metrics in entry.paper.items():
        numbers = "-" if not metrics else "/".join(f"{v:g}" for v in metrics.values())
        names = "" if not metrics else " " + "/".join(METRIC_NAMES[m] for m in metrics)
        parts.append(f"{benchmark}{names} {numbers}")
    return "; ".join(parts) or "-"


def list_zoo(zoo: Zoo) -> str:
    """The zoo as text: per entry its id, variant, backbone and config, then its training data, the paper's numbers
    and where it is published."""
    width = max(len(e.id) for e in zoo.entries)
    lines = []
    for entry in zoo.entries:
        variant = entry.variant + ("" if entry.built else " (variant not built here)")
        lines.append(f"{entry.id.ljust(width)}  {variant}, {entry.backbone}, config {entry.config or '-'}")
        lines.append(f"{'':{width}}  trained on: {' -> '.join(entry.training_data)}")
        lines.append(f"{'':{width}}  paper: {_paper_summary(entry)}")
        published = entry.published.get("where", "") + (f", file {entry.file}" if entry.file else "")
        lines.append(f"{'':{width}}  published: {published}" + (f", {entry.published['url']}"
                                                                 if entry.published.get("url") else ""))
    lines.append(f"{len(zoo.entries)} checkpoints ({zoo.path})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- reproduce

@dataclass(frozen=True)
class Benchmark:
    """How to run and score one zoo benchmark. ``folder``: the dataset under --data; ``metrics``: zoo metric ->
    key of the evaluator's result; ``local``: whether it is scored here (else by a server) given the dataset
    folder; ``score``: (dataset folder, inference output folder) -> the evaluator's result dict."""

    name: str
    dataset_file: str
    folder: str
    split: str
    metrics: Dict[str, str]
    local: Callable[[Path], bool]
    score: Optional[Callable[[Path, Path], dict]]
    server: str = ""


def _ytvos_gt(root: Path) -> Path:
    return root / "_synthetic_gt" / "valid" / "Annotations"


def _score_ytvos(root: Path, out: Path) -> dict:
    return evaluate_expression_folders(root / "meta_expressions" / "valid" / "meta_expressions.json", _ytvos_gt(root),
                                       out / "valid")


def _score_refdavis(root: Path, out: Path) -> dict:
    return evaluate_refdavis(root / "DAVIS", out / "valid")["mean"]


def _score_mevis(root: Path, out: Path) -> dict:
    return evaluate_mevis(root / "valid_u" / "meta_expressions.json", root / "valid_u" / "mask_dict.json",
                          out / "valid_u" / "Annotations")


def _score_referring(name: str) -> Callable[[Path, Path], dict]:
    return lambda root, out: evaluate_referring_segmentation(root / GT_FILE_NAMES[name], out / "test" / "predictions.json")


JF = {"jf": "J&F", "j": "J", "f": "F"}
JF_DAVIS = {"jf": "J&F-Mean", "j": "J-Mean", "f": "F-Mean"}
REFERRING = {"oiou": "overall_iou", "miou": "mean_iou", "map": "mAP 0.5:0.95"}
RUNS = {
    "ref_youtube_vos_valid": Benchmark("ref_youtube_vos_valid", "ytvos", "ref-youtube-vos", "valid", JF,
                                       lambda root: _ytvos_gt(root).is_dir(), _score_ytvos,
                                       server="the Ref-YouTube-VOS CodaLab server"),
    "ref_davis17_valid": Benchmark("ref_davis17_valid", "davis", "ref-davis", "valid", JF_DAVIS,
                                   lambda root: True, _score_refdavis),
    "mevis_valid_u": Benchmark("mevis_valid_u", "mevis", "mevis", "valid_u", JF, lambda root: True, _score_mevis),
    "mevis_valid": Benchmark("mevis_valid", "mevis", "mevis", "valid", JF, lambda root: False, None,
                             server="the MeViS CodaLab server"),
    "a2d_sentences_test": Benchmark("a2d_sentences_test", "a2d", "a2d_sentences", "test", REFERRING,
                                    lambda root: True, _score_referring("a2d")),
    "jhmdb_sentences": Benchmark("jhmdb_sentences", "jhmdb", "jhmdb_sentences", "test", REFERRING,
                                 lambda root: True, _score_referring("jhmdb")),
}
NOT_RUN = {
    "ref_youtube_vos_valid_cfbi": "CFBI post-processing is not part of this code",
    "refcoco": "image benchmark: main.py --dataset_file refcoco --eval --resume CKPT",
    "refcoco+": "image benchmark: main.py --dataset_file refcoco+ --eval --resume CKPT",
    "refcocog": "image benchmark: main.py --dataset_file refcocog --eval --resume CKPT",
}
assert set(RUNS) | set(NOT_RUN) == set(BENCHMARKS)


@dataclass
class Row:
    """One line of the reproduce table (numbers in percent; ``ours`` None when not computed here)."""

    entry: str
    benchmark: str
    metric: str
    paper: Optional[float]
    ours: Optional[float]
    status: str
    note: str = ""


def find_checkpoint(entry: ZooEntry, weights: Path) -> Optional[Path]:
    """The checkpoint of ``entry`` in folder ``weights`` (published name, ``<id>.pth`` or ``<id>/``), or None."""
    for name in entry.file_names():
        if (weights / name).exists():
            return weights / name
    return None


def selected(entry: ZooEntry, benchmark: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return True
    names = (f"{entry.id}/{benchmark}", entry.id, benchmark)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def entry_argv(entry: ZooEntry, overrides: Dict) -> List[str]:
    """inference.py options of an entry: its architecture (from its config; a checkpoint with its own config
    rebuilds from that) and its ``inference`` options."""
    return options_to_argv(inference.build_parser(), {**architecture_values(entry.model_args(**overrides)),
                                                      **overrides, **entry.inference})


def fits_entry(entry: ZooEntry, checkpoint: Path, overrides: Dict) -> Optional[str]:
    """None when the checkpoint has the names and shapes of the entry's model, else what differs."""
    theirs = normalise_state_dict(checkpoint_layout(checkpoint).shapes)
    missing, unexpected, shapes = compare_shapes(build_layout(entry.model_args(**overrides)), theirs)
    if not (missing or unexpected or shapes):
        return None
    return (f"{checkpoint} does not fit {entry.id}: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} wrongly shaped names (python tools/zoo.py identify {checkpoint})")


def run_benchmark(entry: ZooEntry, benchmark: Benchmark, checkpoint: Path, data: Path, out: Path,
                  base_argv: List[str], extra: List[str]) -> List[Row]:
    """Inference then (when local) evaluation of one benchmark of one entry."""
    paper = entry.paper.get(benchmark.name) or {}
    metrics = list(paper) or list(benchmark.metrics)[:1]

    def rows(status: str, scores: Optional[dict] = None, note: str = "") -> List[Row]:
        return [Row(entry.id, benchmark.name, METRIC_NAMES[m], paper.get(m),
                    None if scores is None else 100 * float(scores[benchmark.metrics[m]]), status, note)
                for m in metrics]

    root = data / benchmark.folder
    if not root.is_dir():
        return rows("no data", note=f"{root} not found")
    argv = (["--resume", str(checkpoint), *base_argv, "--dataset_file", benchmark.dataset_file,
             f"--{benchmark.dataset_file}_path", str(root), "--split", benchmark.split, "--output_dir", str(out)]
            + extra)
    local = benchmark.local(root)
    if not local and benchmark.dataset_file in ("ytvos", "mevis"):
        argv.append("--zip")
    logger.info("%s / %s: inference.py %s", entry.id, benchmark.name, " ".join(argv))
    if inference.main(argv) != 0:
        return rows("inference failed", note=f"see {out}")
    if not local:
        zips = sorted(out.glob("submission_*.zip"))
        return rows("server", note=f"upload {zips[0] if zips else out} to {benchmark.server}")
    try:
        scores = benchmark.score(root, out)
    except (OSError, ValueError, KeyError) as err:
        return rows("evaluation failed", note=f"{type(err).__name__}: {err}")
    return rows("ok", scores)


def reproduce(zoo: Zoo, weights: Path, data: Path, output: Path, patterns: Sequence[str], overrides: Dict,
              extra: List[str]) -> List[Row]:
    """The reproduce table for every entry whose checkpoint is in ``weights`` (see the module docstring)."""
    table: List[Row] = []
    for entry in zoo.entries:
        benchmarks = [b for b in entry.paper if selected(entry, b, patterns)]
        checkpoint = find_checkpoint(entry, weights) if benchmarks else None
        if checkpoint is None:
            continue
        if not entry.built:
            table += [Row(entry.id, b, "-", None, None, "not built", f"the {entry.variant} variant is not built here")
                      for b in benchmarks]
            continue
        try:
            problem = fits_entry(entry, checkpoint, overrides)
        except CheckpointError as err:
            problem = str(err)
        if problem is not None:
            table += [Row(entry.id, b, "-", None, None, "wrong checkpoint", problem) for b in benchmarks]
            continue
        base_argv = entry_argv(entry, overrides)
        for name in benchmarks:
            if name in NOT_RUN:
                paper = entry.paper.get(name) or {"-": None}
                table += [Row(entry.id, name, METRIC_NAMES.get(m, m), v, None, "not run", NOT_RUN[name])
                          for m, v in paper.items()]
                continue
            table += run_benchmark(entry, RUNS[name], checkpoint, data, output / entry.id / name, base_argv, extra)
    return table


def format_rows(rows: Sequence[Row]) -> str:
    def number(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.1f}"

    header = ("entry", "benchmark", "metric", "paper", "ours", "status", "note")
    cells = [header] + [(r.entry, r.benchmark, r.metric, number(r.paper), number(r.ours), r.status, r.note)
                        for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells)


# ---------------------------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=ZOO_FILE, help="the zoo file (default: configs/zoo.yaml)")
    parser.add_argument("--text_encoder", default=None,
                        help="text encoder for the models built from the zoo's configs (default: their own)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print the zoo")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    ident = commands.add_parser("identify", help="which zoo entry / config a checkpoint fits")
    ident.add_argument("checkpoint", type=Path, help="a .pth file or a converted checkpoint folder")
    ident.add_argument("--json", action="store_true", help="print the result as JSON")
    repro = commands.add_parser("reproduce", help="inference + evaluation of the zoo entries found in --weights")
    repro.add_argument("--weights", type=Path, required=True, help="folder of checkpoints")
    repro.add_argument("--data", type=Path, required=True, help="folder of datasets (default folder names)")
    repro.add_argument("--output", type=Path, default=Path("out/zoo_reproduce"), help="predictions go here")
    repro.add_argument("--rows", nargs="+", default=[],
                       help="only these rows: entry ids, benchmark names or ENTRY/BENCHMARK, with * wildcards")
    repro.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    return parser


def identification_json(ident) -> dict:
    def fit(f):
        return {"variant": f.variant, "entry": f.entry.id if f.entry else None, "architecture": f.label,
                "how": f.how, "agrees": f.agrees, "contradicts": f.contradicts, "overlap": round(f.overlap, 4)}

    return {"checkpoint": ident.source, "variant": ident.variant, "fits": [fit(f) for f in ident.fits],
            "ruled_out": [fit(f) for f in ident.ruled_out],
            "closest": fit(ident.closest) if ident.closest is not None else None, "notes": ident.notes}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {"text_encoder": args.text_encoder} if args.text_encoder else {}
    try:
        zoo = load_zoo(args.zoo)
        if args.command == "list":
            print(json.dumps([asdict(e) for e in zoo.entries], indent=1) if args.json else list_zoo(zoo))
            return 0
        if args.command == "identify":
            ident = identify(args.checkpoint, zoo, overrides)
            print(json.dumps(identification_json(ident), indent=1) if args.json else format_identification(ident, zoo))
            return 0 if ident.fits else 1
        rows = reproduce(zoo, args.weights, args.data, args.output, args.rows, overrides, extra)
    except (ZooError, CheckpointError) as err:
        logger.error("%s", err)
        return 1
    if not rows:
        logger.error("no zoo entry (of the selected rows) has its checkpoint in %s (names: the published file name, "
                     "<id>.pth or <id>/)", args.weights)
        return 1
    print(format_rows(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.status in ("ok", "server", "not run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
