"""The quality benchmark's recipe builder yields a recipe that the ensemble tool accepts and runs end to end."""
import io
import json

import numpy as np
import yaml
from PIL import Image

from ensemble_world import make_frames, make_meta
from rvos.datasets.synthetic import make_dataset
from rvos.ensemble.recipe import load_recipe
from rvos.ensemble.runner import run_recipe
from rvos.predict.writers import write_atomic
from rvos.tools.benchmark_ensemble_quality import build_recipe, frames_dir, held_out_meta, write_empty_masks


def write_npz_store(root, meta, seed):
    """A ``--save_logits`` store of random stride-4 probabilities for every video and expression of ``meta``."""
    rng = np.random.default_rng(seed)
    for video, entry in meta.items():
        h, w = entry["size"]
        t = len(entry["frames"])
        for exp_id in entry["expressions"]:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, mask_probs=rng.random((t, h // 4, w // 4)).astype(np.float16),
                                frame_scores=rng.random(t).astype(np.float32), frames=np.array(entry["frames"]),
                                orig_size=np.array([h, w]), input_size=np.array([h, w]), format_version=np.array(1))
            write_atomic(root / video / f"{exp_id}.npz", buffer.getvalue())


def test_built_recipe_is_accepted_and_runs(tmp_path):
    meta = make_meta(tmp_path, videos=3)
    make_frames(tmp_path / "frames", meta, 0)
    seeds = [1, 2, 3]
    for seed in seeds:
        write_npz_store(tmp_path / f"s{seed}", meta, seed)
    recipe = build_recipe(seeds, "meta.json", "frames", {s: f"s{s}" for s in seeds})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))

    loaded = load_recipe(path, output=tmp_path / "out")
    assert [r.name for r in loaded.rounds] == ["voted", "seed1_prop", "seed2_prop", "seed3_prop", "final"]
    assert loaded.final == "final"
    assert loaded.rounds[-1].inputs == ["seed1", "seed2", "seed3", "seed1_prop", "seed2_prop", "seed3_prop"]
    assert all(r.options["propagator"]["type"] == "optical_flow" for r in loaded.rounds if r.op == "propagate")

    report = run_recipe(loaded, progress=False)
    assert not report.failures
    for video, entry in meta.items():
        for exp_id in entry["expressions"]:
            for frame in entry["frames"]:
                with Image.open(tmp_path / "out" / "Annotations" / video / exp_id / f"{frame}.png") as image:
                    assert image.size == (entry["size"][1], entry["size"][0])
    assert (tmp_path / "out" / "submission.zip").is_file()


def test_mevis_held_out_split_is_valid_u(tmp_path):
    """On a synthetic MeViS the held-out meta, frames and empty baseline are those of ``valid_u``."""
    root = make_dataset("mevis", tmp_path / "mevis", seed=0, num_videos=4, num_frames=8)
    valid_u = json.loads((root / "valid_u" / "meta_expressions.json").read_text())["videos"]

    assert held_out_meta(root)["videos"] == valid_u
    assert frames_dir(root) == root / "valid_u" / "JPEGImages"
    empty = write_empty_masks(root, tmp_path / "empty")
    for video, entry in valid_u.items():
        with Image.open(root / "valid_u" / "JPEGImages" / video / f"{entry['frames'][0]}.jpg") as frame:
            size = frame.size
        for exp_id in entry["expressions"]:
            for name in entry["frames"]:
                with Image.open(empty / video / exp_id / f"{name}.png") as image:
                    assert image.size == size
                    assert not np.asarray(image).any()
