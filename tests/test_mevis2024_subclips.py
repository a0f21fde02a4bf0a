"""--legacy_mevis2024_subclips: the sub-clips of the original MeViS-2024 ``inference_mevis.py``, whose
``sub_video_len`` is overwritten by each expression's last sub-clip length and carries over to later expressions
and videos of the same process; the default (corrected) windows are unchanged."""
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from rvos.datasets.synthetic import make_dataset
from rvos.predict.base import legacy_mevis2024_lengths, sub_video_windows
from rvos.predict.benchmarks.mevis import MeViSBenchmark
from rvos.predict.benchmarks.ytvos import read_meta_videos
from test_inference_fixtures import assets_fixture, base_args, read_pngs, run_inference  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def oracle_subclips(videos, sub_video_len, no_sampling, ngpu=1):
    """The original's loop written out from its rule (MODEL_FAMILY.md §2.3), independently of our code:
    per process (sorted videos split in ``ngpu`` blocks, the last taking the rest), per video, per expression,
    the frame-index lists of its sub-clips; S becomes the last sub-clip's length."""
    names = sorted(videos)
    block = len(names) // ngpu
    shares = [names[i * block:(i + 1) * block] if i < ngpu - 1 else names[i * block:] for i in range(ngpu)]
    clips, used = {}, {}
    for share in shares:
        s = sub_video_len
        for name in share:
            frames = list(range(len(videos[name]["frames"])))
            for exp_id in videos[name]["expressions"]:
                used[(name, exp_id)] = s
                n = int(len(frames) / s)
                if n == 0:
                    n = 1
                if len(frames) % s != 0 and len(frames) > s:
                    n += 1
                if no_sampling:
                    subs = [frames[slice(i * s, min((i + 1) * s, len(frames)), 1)] for i in range(n)]
                else:
                    subs = [frames[slice(i, len(frames), n)] for i in range(n)]
                for sub in subs:
                    s = len(sub)
                clips[(name, exp_id)] = subs
    return clips, used


def windows_per_expression(benchmark, job):
    plan = benchmark.plan(job, job.num_frames)
    return {e.exp_id: [list(w.positions) for w in plan.windows if i in w.expressions]
            for i, e in enumerate(job.expressions)}, plan


def test_documented_example_ten_frames():
    """MODEL_FAMILY.md §2.3: with S = 4 a 10-frame video is split into 3, then 4, then 5 sub-clips."""
    lengths = legacy_mevis2024_lengths([(10, 4)], 4, interleaved=True)[0]
    assert [len(sub_video_windows(10, s, interleaved=True)) for s in lengths] == [3, 4, 5, 5]
    assert legacy_mevis2024_lengths([(10, 3)], 4, interleaved=False) == [[4, 2, 2]]


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mevis2024") / "mevis"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic_data.py"), "--dataset", "mevis", "--root",
                    str(root), "--num_valid_u_videos", "4", "--num_valid_videos", "1", "--num_train_videos", "1",
                    "--num_frames", "11", "--min_frames", "7", "--height", "16", "--width", "16"], check=True,
                   capture_output=True)
    return root


@pytest.mark.parametrize("no_sampling", [False, True], ids=["interleaved", "contiguous"])
@pytest.mark.parametrize("ngpu", [1, 3])
def test_legacy_subclips_follow_the_original_rule(mevis_root, no_sampling, ngpu):
    videos = read_meta_videos(mevis_root / "valid_u" / "meta_expressions.json")
    assert any(len(v["frames"]) > 3 for v in videos.values())
    assert all(len(v["expressions"]) >= 2 for v in videos.values())
    expected, _ = oracle_subclips(videos, 3, no_sampling, ngpu)
    args = Namespace(mevis_path=str(mevis_root), split="valid_u", output_dir="unused", sub_video_len=3,
                     no_sampling=no_sampling, legacy_mevis2024_subclips=True, legacy_mevis2024_processes=ngpu)
    benchmark = MeViSBenchmark(args)
    counts, expected_counts = [], []
    for job in benchmark.jobs():
        got, plan = windows_per_expression(benchmark, job)
        assert plan.video_query == no_sampling
        for exp_id, windows in got.items():
            assert windows == expected[(job.name, exp_id)], (job.name, exp_id)
            counts.append(len(windows))
            expected_counts.append(len(expected[(job.name, exp_id)]))
    assert counts == expected_counts
    assert len(set(counts)) > 1  # the overwrite changed the count along the run


def test_default_windows_unchanged(mevis_root):
    """Without the option every expression of a video uses the same --sub_video_len windows."""
    args = Namespace(mevis_path=str(mevis_root), split="valid_u", output_dir="unused", sub_video_len=3,
                     no_sampling=False)
    benchmark = MeViSBenchmark(args)
    for job in benchmark.jobs():
        got, plan = windows_per_expression(benchmark, job)
        for windows in got.values():
            assert windows == sub_video_windows(job.num_frames, 3, interleaved=True)


def test_legacy_run_masks_equal_a_default_run_at_the_replayed_length(assets, tmp_path):
    """End to end (inference.py, tiny model, one 7-frame video): an expression after the first runs, under the
    option, with the length the original had reached (S = 3 -> 2), so its masks equal those of a default run
    with that --sub_video_len."""
    root = make_dataset("mevis", tmp_path / "mevis", seed=1, num_frames=7, min_frames=7, num_valid_u_videos=1,
                        num_valid_videos=1, num_train_videos=1, height=32, width=32)
    videos = read_meta_videos(root / "valid_u" / "meta_expressions.json")
    _, used = oracle_subclips(videos, 3, no_sampling=False)
    (video, first), (_, second) = list(used)[:2]
    assert used[(video, first)] == 3 and used[(video, second)] == 2

    def run(name, *extra):
        out = tmp_path / name
        assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out) + [
            "--dataset_file", "mevis", "--mevis_path", str(root), "--split", "valid_u", "--test_short_side", "32",
            *extra]) == 0
        return read_pngs(out / "valid_u" / "Annotations")

    legacy = run("legacy", "--sub_video_len", "3", "--legacy_mevis2024_subclips")
    default = run("default", "--sub_video_len", "2")
    names = [k for k in default if k.startswith(f"{video}/{second}/")]
    assert len(names) == 7 and all(np.array_equal(legacy[k], default[k]) for k in names)
    assert set(legacy) == set(default)


def test_legacy_needs_a_positive_length():
    with pytest.raises(ValueError, match="sub_video_len"):
        legacy_mevis2024_lengths([(10, 2)], 0, interleaved=True)
