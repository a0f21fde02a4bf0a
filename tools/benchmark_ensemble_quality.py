"""Ensemble quality on the synthetic world: J&F of each source, each round and the final output (docs/BENCHMARKS.md).

    python tools/benchmark_ensemble_quality.py --work output/ensbench --json output/ensbench/quality.json

Steps, each skipped when its output exists (a rerun continues where it stopped):

1. the tiny text encoder and a synthetic Ref-YouTube-VOS (``--num_videos`` training, ``--num_valid_videos``
   held-out videos), as ``scripts/quickstart.sh`` makes them;
2. one tiny model per ``--seeds`` seed (``configs/tiny/referformer_tiny_synthetic.yaml``, ``--epochs`` epochs);
3. inference of each on the held-out split with ``--save_logits`` (PNGs and probability stores);
4. the recipe of ``build_recipe``: the sources, a vote of the sources, each source propagated by optical flow
   from its own key frame (``--flow_method``), a final vote of the sources and their propagated variants;
   ``tools/ensemble.py`` is run once per round with that round as the final one;
5. ``tools/evaluate.py --protocol ytvos`` against ``_synthetic_gt`` on every source and every round's output.

With ``--dataset mevis`` the same steps run on a synthetic MeViS: the models train with ``--dataset_file mevis``,
predict its ``valid_u`` split (``--num_valid_videos`` videos, local ground truth) and are scored with
``tools/evaluate.py --protocol mevis``.

The J&F table is logged as markdown and written with the machine and the settings to ``--json``.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.predict.writers import save_binary_png  # noqa: E402
from rvos.tools.benchmark import machine  # noqa: E402

logger = logging.getLogger("benchmark_ensemble_quality")

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/tiny/referformer_tiny_synthetic.yaml"
# The tiny model trains on the synthetic frames at their own size (96 px short side): inference at that size too.
TEST_SHORT_SIDE = "96"
# What each --dataset changes: path option, predicted split, the PNG tree scored (under <inference>/<split>: the
# ytvos protocol reads <results>/Annotations, the mevis one <results>/<video> directly), table title.
DATASETS = {"ytvos": {"path_option": "--ytvos_path", "split": "valid", "results": ".", "title": "Ref-YouTube-VOS"},
            "mevis": {"path_option": "--mevis_path", "split": "valid_u", "results": "Annotations",
                      "title": "MeViS (valid_u)"}}


def source_name(seed: int) -> str:
    return f"seed{seed}"


def build_recipe(seeds: List[int], meta: str, frames: str, logits: Dict[int, str], min_votes: str = "majority",
                 propagator: Dict = None) -> Dict:
    """The benchmark recipe (a dict for ``yaml.safe_dump``; paths relative to the recipe's root).

    Sources ``seed<N>`` (``--save_logits`` stores ``logits[N]``); rounds: ``voted`` (the sources, each expression on
    its own, ``min_votes``, key frames by the mean score), ``seed<N>_prop`` (source N carried from its own
    highest-scoring frame by ``propagator``, optical flow by default), ``final`` (a vote of the sources and their
    propagated variants, ``min_votes``).
    """
    propagator = propagator or {"type": "optical_flow", "method": "dis"}
    names = [source_name(s) for s in seeds]
    rounds = [{"name": "voted", "op": "vote", "inputs": names, "grouping": "none", "min_votes": min_votes,
               "key_frame": {"rule": "mean", "inputs": names}}]
    for name in names:
        rounds.append({"name": f"{name}_prop", "op": "propagate", "inputs": [name], "propagator": dict(propagator),
                       "key_frame": {"rule": "argmax", "inputs": [name]}})
    rounds.append({"name": "final", "op": "vote", "inputs": names + [f"{n}_prop" for n in names], "grouping": "none",
                   "min_votes": min_votes})
    return {"description": "benchmark_ensemble_quality: tiny models of several seeds, voted and propagated",
            "root": ".", "meta": meta, "frames": frames,
            "sources": {source_name(s): {"type": "npz", "path": logits[s]} for s in seeds},
            "rounds": rounds, "final": "final"}


def run(command: List[str], log: Path) -> None:
    """Run one step (output to ``log``); a failure names the command and the log."""
    logger.info("$ %s", " ".join(command))
    with open(log, "a") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"step failed (exit {done.returncode}): {' '.join(command)}; see {log}")


def prepare(args, work: Path, log: Path) -> Path:
    """The text encoder and the synthetic dataset; returns the dataset root."""
    encoder, data = work / "tiny_text_encoder", work / "data" / args.dataset
    if not (encoder / "model.safetensors").is_file():
        run([sys.executable, "tools/make_tiny_text_encoder.py", "--out", str(encoder)], log)
    if not (data / "synthetic_meta.json").is_file():
        held_out = "--num_valid_videos" if args.dataset == "ytvos" else "--num_valid_u_videos"
        run([sys.executable, "tools/make_synthetic_data.py", "--dataset", args.dataset, "--root", str(data), "--seed",
             str(args.data_seed), "--num_videos", str(args.num_videos), held_out, str(args.num_valid_videos)], log)
    return data


def train_and_infer(args, work: Path, data: Path, seed: int, log: Path) -> Path:
    """Train the tiny model with ``seed`` and run it on the held-out split; returns the inference folder."""
    train, pred = work / f"train_seed{seed}", work / f"inference_seed{seed}"
    encoder, path_option = str(work / "tiny_text_encoder"), DATASETS[args.dataset]["path_option"]
    if not (train / f"checkpoint{args.epochs - 1:04d}.pth").is_file():
        run([sys.executable, "main.py", "--config", CONFIG, "--dataset_file", args.dataset, "--text_encoder", encoder,
             path_option, str(data),
             "--output_dir", str(train), "--epochs", str(args.epochs), "--lr_drop", str(args.epochs - 1),
             "--num_workers", "1", "--resume", "auto", "--seed", str(seed)]
            + (["--max_iters_per_epoch", str(args.max_iters_per_epoch)] if args.max_iters_per_epoch else []), log)
    split = DATASETS[args.dataset]["split"]
    # ytvos valid writes its submission zip last; MeViS valid_u writes no zip, its logit stores are the last output
    done = pred / "submission_ytvos_valid.zip" if args.dataset == "ytvos" else pred / split / "logits"
    if not done.exists():
        run([sys.executable, "inference.py", "--dataset_file", args.dataset, path_option, str(data), "--split", split,
             "--resume", str(train / "checkpoint.pth"), "--text_encoder", encoder, "--device", "cpu", "--output_dir",
             str(pred), "--test_short_side", TEST_SHORT_SIDE, "--save_logits"], log)
    return pred


def evaluate(data: Path, results: Path, output: Path, log: Path) -> Dict:
    """``tools/evaluate.py`` (ytvos or mevis protocol, by ``data``'s layout) of a PNG tree against the held-out GT."""
    if not output.is_file():
        if (data / "valid_u" / "mask_dict.json").is_file():
            protocol = ["--protocol", "mevis", "--mevis-root", str(data / "valid_u"), "--workers", "1"]
        else:
            protocol = ["--protocol", "ytvos", "--meta",
                        str(data / "meta_expressions" / "valid" / "meta_expressions.json"), "--gt",
                        str(data / "_synthetic_gt" / "valid" / "Annotations")]
        run([sys.executable, "tools/evaluate.py"] + protocol + ["--results", str(results), "--output", str(output)],
            log)
    scores = json.loads(output.read_text())
    return {k: scores[k] for k in ("J&F", "J", "F", "n_expressions")}


def held_out_meta(data: Path) -> Dict:
    """The held-out meta: MeViS valid_u, or the Ref-YTVOS valid meta without the test videos it also lists (what
    inference.py predicts, DATASETS.md §1.4)."""
    if (data / "valid_u" / "meta_expressions.json").is_file():
        return json.loads((data / "valid_u" / "meta_expressions.json").read_text())
    meta = json.loads((data / "meta_expressions" / "valid" / "meta_expressions.json").read_text())
    test = json.loads((data / "meta_expressions" / "test" / "meta_expressions.json").read_text())["videos"]
    return {"videos": {name: entry for name, entry in meta["videos"].items() if name not in test}}


def frames_dir(data: Path) -> Path:
    """The JPEG folder of the held-out split."""
    return data / ("valid_u" if (data / "valid_u" / "meta_expressions.json").is_file() else "valid") / "JPEGImages"


def write_empty_masks(data: Path, out: Path) -> Path:
    """An all-background ``Annotations/`` tree of the held-out videos: the trivial baseline row."""
    if not (out / "done").is_file():
        for video, entry in held_out_meta(data)["videos"].items():
            with Image.open(frames_dir(data) / video / f"{entry['frames'][0]}.jpg") as image:
                width, height = image.size
            for exp_id in entry["expressions"]:
                (out / video / exp_id).mkdir(parents=True, exist_ok=True)
                for frame in entry["frames"]:
                    save_binary_png(out / video / exp_id / f"{frame}.png", np.zeros((height, width), dtype=bool))
        (out / "done").write_text("")
    return out


def run_tag(args) -> str:
    """Suffix of the ensemble outputs of a non-default flow method (the DIS outputs keep plain names)."""
    return "" if args.flow_method == "dis" else f"_{args.flow_method}"


def ensemble_rounds(args, work: Path, data: Path, preds: Dict[int, Path], log: Path) -> Dict[str, Path]:
    """Write the recipe, run the tool once per round (that round final); returns each round's Annotations/."""
    rel = {s: os.path.relpath(p / DATASETS[args.dataset]["split"] / "logits", work) for s, p in preds.items()}
    meta = work / "meta_valid_only.json"
    meta.write_text(json.dumps(held_out_meta(data)))
    recipe = build_recipe(args.seeds, meta.name, os.path.relpath(frames_dir(data), work), rel,
                          args.min_votes, {"type": "optical_flow", "method": args.flow_method})
    tag = run_tag(args)
    outputs = {}
    for spec in recipe["rounds"]:
        name = spec["name"]
        path = work / f"recipe_{name}{tag}.yaml"
        path.write_text(yaml.safe_dump(dict(recipe, final=name), sort_keys=False))
        out = work / "ensemble" / f"{name}{tag}"
        if not (out / "submission.zip").is_file():
            run([sys.executable, "tools/ensemble.py", str(path), "--output", str(out), "--workers",
                 str(args.workers), "--no_progress"], log)
        outputs[name] = out / "Annotations"
    return outputs


def table(rows: List[Dict]) -> str:
    lines = ["| output | what | J&F | J | F |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['what']} | {100 * row['J&F']:.1f} | {100 * row['J']:.1f} | "
                     f"{100 * row['F']:.1f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ytvos", choices=sorted(DATASETS), help="the synthetic benchmark")
    parser.add_argument("--work", type=Path, default=Path("output/ensemble_quality"), help="everything goes here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one tiny model per seed")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of each model")
    parser.add_argument("--max_iters_per_epoch", type=int, default=None,
                        help="cut each training epoch short (a loaded CPU)")
    parser.add_argument("--num_videos", type=int, default=12, help="synthetic training videos")
    parser.add_argument("--num_valid_videos", type=int, default=6, help="synthetic held-out videos (MeViS: valid_u)")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--min_votes", default="majority", help="the vote rounds' min_votes")
    parser.add_argument("--flow_method", default="dis", choices=["dis", "farneback"],
                        help="the optical-flow propagator's method (docs/PROPAGATION.md)")
    parser.add_argument("--workers", type=int, default=1, help="tools/ensemble.py worker processes")
    parser.add_argument("--json", type=Path, default=None, help="write the table here (default: <work>/quality.json)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "steps.log"
    data = prepare(args, work, log)
    preds = {seed: train_and_infer(args, work, data, seed, log) for seed in args.seeds}
    rows, scored = [], Path(DATASETS[args.dataset]["split"]) / DATASETS[args.dataset]["results"]
    for seed, pred in preds.items():
        rows.append(dict(name=source_name(seed), what=f"tiny model, seed {seed}",
                         **evaluate(data, pred / scored, work / "scores" / f"{source_name(seed)}.json", log)))
    what = {"voted": f"vote of the {len(args.seeds)} sources ({args.min_votes})",
            "final": f"vote of the sources and their propagated variants ({args.min_votes})"}
    for name, annotations in ensemble_rounds(args, work, data, preds, log).items():
        rows.append(dict(name=name, what=what.get(name, f"{name[:-5]} propagated (optical flow, {args.flow_method}) "
                                                         "from its "
                                                         "highest-scoring frame"),
                         **evaluate(data, annotations, work / "scores" / f"{name}{run_tag(args)}.json", log)))
    rows.append(dict(name="empty", what="all-background masks (trivial baseline)",
                     **evaluate(data, write_empty_masks(data, work / "empty"), work / "scores" / "empty.json", log)))
    markdown = table(rows)
    logger.info("J&F on the held-out synthetic %s (%d videos, %d expressions):\n%s",
                DATASETS[args.dataset]["title"], args.num_valid_videos, rows[0]["n_expressions"], markdown)
    payload = {"machine": machine(), "dataset": args.dataset, "seeds": args.seeds, "epochs": args.epochs,
               "max_iters_per_epoch": args.max_iters_per_epoch, "num_videos": args.num_videos,
               "num_valid_videos": args.num_valid_videos, "min_votes": args.min_votes,
               "flow_method": args.flow_method, "rows": rows,
               "markdown": markdown}
    out = args.json or work / f"quality{run_tag(args)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
