"""Run a recipe over every video of the meta: one video at a time, optionally in worker processes, resumable.

Per video, ``<output>/Annotations/<video>/`` is written under its partial folder (``rvos.predict.writers``) and
renamed when whole, after its record ``<output>/videos/<video>.json`` (key frames, abstentions, the recipe's
digest). A rerun skips the videos whose record comes from the same recipe (sources, rounds and final round; a
changed recipe redoes every video) and whose folder holds every PNG, each whole (a deleted or damaged PNG redoes
its video). A failed video is logged, listed in
``failures.json`` and skipped; the run then ends without the zip and returns the failures. When every video is
done: ``key_frames.json``, the submission zip and (when the recipe names the frames) its check.
"""
import dataclasses
import hashlib
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from rvos.ensemble.recipe import Recipe
from rvos.ensemble.rounds import VideoFusion
from rvos.ensemble.sources import MissingPrediction, SourceError
from rvos.predict.submission import check_submission, SubmissionEntry, write_zip
from rvos.predict.writers import (commit_dir, folder_complete, fresh_partial_dir, save_binary_png,
                                 write_json_atomic)

logger = logging.getLogger(__name__)

_WORKER: Optional[VideoFusion] = None


@dataclass
class RunReport:
    videos: int
    done_before: int
    failures: Dict[str, str]
    abstained: List[str]
    zip_path: Optional[Path]


def load_meta(recipe: Recipe) -> Dict[str, dict]:
    """The meta's ``videos`` mapping (a bad file is reported with its name)."""
    try:
        return json.loads(recipe.meta.read_text())["videos"]
    except (OSError, ValueError, KeyError) as err:
        raise SourceError(f"cannot read the meta {recipe.meta}: {err!r}") from err


def recipe_digest(recipe: Recipe) -> str:
    """sha256 of what decides the masks (sources, rounds, final round): a video written under another digest is
    redone."""
    rounds = [{k: v for k, v in dataclasses.asdict(r).items() if k != "line"} for r in recipe.rounds]
    content = {"sources": recipe.sources, "rounds": rounds, "final": recipe.final}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def video_done(output: Path, video: str, meta_video: dict, digest: str) -> bool:
    """Whether the video's record was written by a recipe with this digest and its folder holds every expression's
    PNGs, each whole (a deleted or damaged PNG redoes the video, with a warning naming it)."""
    record = output / "videos" / f"{video}.json"
    if not record.is_file():
        return False
    try:
        if json.loads(record.read_text()).get("recipe_digest") != digest:
            return False
    except ValueError:
        return False
    names = [f"{frame}.png" for frame in meta_video["frames"]]
    return all(folder_complete(output / "Annotations" / video / exp_id, names) for exp_id in meta_video["expressions"])


def key_frame_round(recipe: Recipe) -> Optional[str]:
    """The round whose key frames go to ``key_frames.json``: the last one up to the final round that has any."""
    chosen = None
    for spec in recipe.rounds:
        if spec.key_frame is not None:
            chosen = spec.name
        if spec.name == recipe.final:
            break
    return chosen


def process_video(fusion: VideoFusion, video: str, meta_video: dict, digest: str) -> List[str]:
    """Fuse one video and write its masks and record; returns the abstention notes."""
    output = fusion.recipe.output
    result = fusion.run(video, meta_video)
    final = output / "Annotations" / video
    partial = fresh_partial_dir(final)
    for exp_id, masks in result.masks.items():
        (partial / exp_id).mkdir()
        for frame, mask in zip(meta_video["frames"], masks):
            save_binary_png(partial / exp_id / f"{frame}.png", mask)
    write_json_atomic(output / "videos" / f"{video}.json",
                      {"key_frames": result.key_frames, "abstained": result.abstained, "recipe_digest": digest})
    commit_dir(final)
    return result.abstained


def _init_worker(recipe: Recipe) -> None:
    global _WORKER
    _WORKER = VideoFusion(recipe)


def _work(item: Tuple[str, dict, str]) -> Tuple[str, Optional[str], List[str]]:
    video, meta_video, digest = item
    try:
        return video, None, process_video(_WORKER, video, meta_video, digest)
    except (MissingPrediction, SourceError, ValueError, OSError, KeyError, RuntimeError) as err:
        return video, f"{type(err).__name__}: {err}", []


def run_recipe(recipe: Recipe, workers: int = 1, progress: bool = True) -> RunReport:
    """Run ``recipe`` over the meta's videos (sorted ids); see the module docstring."""
    meta = load_meta(recipe)
    videos = sorted(meta)
    fusion = VideoFusion(recipe)  # builds every source (a bad one fails here, before any work)
    output = recipe.output
    output.mkdir(parents=True, exist_ok=True)
    digest = recipe_digest(recipe)
    todo = [v for v in videos if not video_done(output, v, meta[v], digest)]
    if len(todo) < len(videos):
        logger.info("%d of %d videos are done already: skipped", len(videos) - len(todo), len(videos))
    failures: Dict[str, str] = {}
    abstained: List[str] = []
    items = [(v, meta[v], digest) for v in todo]
    bar = tqdm(total=len(items), desc="ensemble", unit="video", disable=not progress)
    if workers > 1 and len(items) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(recipe,)) as pool:
            results = pool.map(_work, items)
            for video, error, notes in results:
                _collect(video, error, notes, failures, abstained, bar)
    else:
        global _WORKER
        _WORKER = fusion
        for item in items:
            _collect(*_work(item), failures, abstained, bar)
    bar.close()
    failures_path = output / "failures.json"
    if failures:
        write_json_atomic(failures_path, failures)
        logger.error("%d videos failed (listed in %s); the others are written, rerun to retry", len(failures),
                     failures_path)
        return RunReport(len(videos), len(videos) - len(todo), failures, abstained, None)
    if failures_path.exists():
        failures_path.unlink()
    return RunReport(len(videos), len(videos) - len(todo), failures, abstained, finish(recipe, meta, videos))


def _collect(video, error, notes, failures, abstained, bar) -> None:
    if error is not None:
        logger.error("video %s failed: %s", video, error)
        failures[video] = error
    for note in notes:
        logger.warning("%s", note)
    abstained.extend(notes)
    bar.update(1)


def finish(recipe: Recipe, meta: Dict[str, dict], videos: List[str]) -> Path:
    """key_frames.json (if a round has key frames), abstentions.json, the submission zip and its check."""
    output = recipe.output
    records = {v: json.loads((output / "videos" / f"{v}.json").read_text()) for v in videos}
    chosen = key_frame_round(recipe)
    if chosen is not None:
        payload = {v: {e: {"index_info": {"class_index": records[v]["key_frames"][chosen][e]}}
                       for e in meta[v]["expressions"]} for v in videos}
        write_json_atomic(output / "key_frames.json", payload)
    write_json_atomic(output / "abstentions.json", {v: records[v]["abstained"] for v in videos
                                                    if records[v]["abstained"]})
    entries = list(submission_entries(recipe, meta, videos))
    zip_path = write_zip(entries, output / "submission.zip")
    if recipe.frames is not None:
        problems = check_submission(zip_path, entries)
        if problems:
            raise SourceError(f"{zip_path} fails its check: {problems[:5]}")
    return zip_path


def submission_entries(recipe: Recipe, meta: Dict[str, dict], videos: List[str]):
    """The ``Annotations/<video>/<exp_id>/<frame>.png`` entries of the submission zip."""
    frames_root = recipe.frames if recipe.frames is not None else recipe.root
    for video in videos:
        for exp_id in meta[video]["expressions"]:
            for frame in meta[video]["frames"]:
                yield SubmissionEntry(f"Annotations/{video}/{exp_id}/{frame}.png",
                                      recipe.output / "Annotations" / video / exp_id / f"{frame}.png",
                                      frames_root / video / f"{frame}.jpg", video, exp_id)

