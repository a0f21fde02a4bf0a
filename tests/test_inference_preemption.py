"""inference.py sent a real SIGTERM while an expression is computed: that expression is finished and committed, no
other starts (in the same video or after it), the run exits with the requeue code without a zip, and a rerun computes
only the rest, giving the masks of an uninterrupted run. Shared and per-expression modes on Ref-YouTube-VOS (one
window per video), MeViS sub-clips (several windows: the expression in flight is carried through the remaining
windows alone; interleaved and contiguous), Ref-DAVIS17 (the annotator's sequence in flight is finished). TFVOS
key-frame inference: test_tfvos_pipeline."""
import json
import os
import signal
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest

from rvos.datasets.synthetic import make_dataset
from rvos.predict.benchmarks.davis import DavisOutput
from rvos.predict.writers import BinaryMaskOutput
from rvos.util.preemption import REQUEUE_EXIT_CODE
from test_bad_files_inference import finished, mtimes, world, ytvos_argv  # noqa: F401 (fixtures)
from test_inference_fixtures import TINY_CONFIG, base_args, read_pngs, run_inference


def signal_at_first_output(monkeypatch, output_class) -> List[Tuple[str, str]]:
    """Make the first output of the run that reaches ``output_class.add`` send this process a real SIGTERM (the
    expression is then in flight); returns the (video, exp_id) of every output added (video None and the expression's
    index for a class without a ``job``)."""
    real_add = output_class.add
    added: List[Tuple[Optional[str], object]] = []

    def add(self, window, exp, output):
        job = getattr(self, "job", None)
        added.append((job.name, job.expressions[exp].exp_id) if job is not None else (None, exp))
        if len(added) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_add(self, window, exp, output)

    monkeypatch.setattr(output_class, "add", add)
    return added


def unit_folders(pngs: dict, depth: int = 2) -> set:
    """The folders (first ``depth`` parts of the relative paths) that hold PNGs."""
    return {"/".join(Path(name).parts[:depth]) for name in pngs}


def assert_interrupted_then_resumed(argv, out: Path, results: Path, expected: dict, kept_units: set, monkeypatch,
                                    output_class=BinaryMaskOutput, depth: int = 2,
                                    after_interruption=lambda: None) -> List[Tuple[str, str]]:
    """Run ``argv`` with a SIGTERM at its first output: exit 124, exactly ``kept_units`` written (equal to
    ``expected``), nothing partial left, no zip (then ``after_interruption`` looks at the outputs); then the rerun
    completes without touching them."""
    added = signal_at_first_output(monkeypatch, output_class)
    assert run_inference(argv) == REQUEUE_EXIT_CODE
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    written = read_pngs(results)
    assert unit_folders(written, depth) == kept_units
    assert {k for k in expected if "/".join(Path(k).parts[:depth]) in kept_units} == set(written)
    assert [k for k in written if not np.array_equal(written[k], expected[k])] == []
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")], "partial outputs left behind"
    assert not list(out.glob("*.zip")), "no submission zip for an interrupted run"
    after_interruption()

    kept = mtimes(results)
    monkeypatch.undo()
    assert run_inference(argv) == 0
    got = read_pngs(results)
    assert got.keys() == expected.keys()
    assert [k for k in got if not np.array_equal(got[k], expected[k])] == []
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "a finished unit was computed again"
    return added


@pytest.mark.parametrize("mode", [[], ["--per_expression"]], ids=["shared", "per_expression"])
def test_sigterm_finishes_the_expression_in_flight_and_a_rerun_continues(world, finished, tmp_path,  # noqa: F811
                                                                         monkeypatch, mode):
    out = tmp_path / "out"
    expected = read_pngs(finished / "valid")
    videos = sorted(unit_folders(expected, 1))
    first_video = videos[0]
    first_units = sorted(u for u in unit_folders(expected) if u.startswith(first_video + "/"))
    assert len(first_units) >= 3, "the test needs a video with several expressions"
    argv = ytvos_argv(world, out) + ["--save_logits", *mode]
    logits = out / "valid" / "logits"
    saved_while_interrupted = []

    def record_logits():
        saved_while_interrupted.extend(sorted(p.relative_to(logits).as_posix() for p in logits.rglob("*.npz")))

    added = assert_interrupted_then_resumed(argv, out, out / "valid", expected, {first_units[0]}, monkeypatch,
                                            after_interruption=record_logits)
    assert added[0] == tuple(first_units[0].split("/"))
    assert saved_while_interrupted == [f"{first_units[0]}.npz"], "--save_logits of the finished expression only"
    assert sorted(p.relative_to(logits).as_posix() for p in logits.rglob("*.npz")) == [f"{u}.npz" for u in
                                                                                        sorted(unit_folders(expected))]


@pytest.fixture(scope="module")
def mevis(world):  # noqa: F811
    root = make_dataset("mevis", world["root"] / "mevis", seed=3, num_frames=9, min_frames=9, num_valid_u_videos=1,
                        num_valid_videos=1, num_train_videos=1)
    return root


@pytest.mark.parametrize("sampling", [[], ["--no_sampling"]], ids=["interleaved", "contiguous"])
def test_sigterm_in_the_first_sub_clip_carries_that_expression_through_the_video(world, mevis, tmp_path,  # noqa: F811
                                                                                 monkeypatch, sampling):
    def argv(out):
        return base_args(world["checkpoint"], world["text_encoder"], out) + [
            "--dataset_file", "mevis", "--mevis_path", str(mevis), "--split", "valid_u", "--sub_video_len", "3",
            "--num_workers", "1", *sampling]

    assert run_inference(argv(tmp_path / "uninterrupted")) == 0
    expected = read_pngs(tmp_path / "uninterrupted" / "valid_u" / "Annotations")
    units = sorted(unit_folders(expected))
    assert len(units) >= 3
    out = tmp_path / "out"
    added = assert_interrupted_then_resumed(argv(out), out, out / "valid_u" / "Annotations", expected, {units[0]},
                                            monkeypatch)
    assert added[0] == tuple(units[0].split("/"))


def test_sigterm_on_davis_finishes_the_annotator_sequence_in_flight(world, tmp_path, monkeypatch):  # noqa: F811
    root = make_dataset("davis", tmp_path / "davis", seed=0, num_frames=6, num_valid_videos=1, num_train_videos=1)

    def argv(out):
        return base_args(world["checkpoint"], world["text_encoder"], out) + [
            "--dataset_file", "davis", "--davis_path", str(root), "--davis_clip_len", "4", "--num_workers", "1"]

    assert run_inference(argv(tmp_path / "uninterrupted")) == 0
    expected = read_pngs(tmp_path / "uninterrupted" / "valid")
    video = sorted(unit_folders(expected))[0].split("/")[1]
    out = tmp_path / "out"
    assert_interrupted_then_resumed(argv(out), out, out / "valid", expected, {f"anno_0/{video}"}, monkeypatch,
                                    output_class=DavisOutput)


def test_stop_latency_benchmark_tool(tmp_path):
    from rvos.tools.benchmark_stop_latency import main as benchmark

    result = benchmark(["--config", str(TINY_CONFIG), "--frames", "6", "--sub_video_len", "3", "--short_side", "64",
                        "--height", "96", "--width", "128", "--modes", "shared", "--json", str(tmp_path / "stop.json")])
    (row,) = result["rows"]
    assert (row["rest_exit_code"], row["stop_exit_code"]) == (0, REQUEUE_EXIT_CODE)
    assert (row["rest_committed"], row["stop_committed"]) == (row["expressions"], 1)
    assert row["rest_s"] > 0 and row["stop_s"] > 0
    assert row["stop_over_rest"] == pytest.approx(row["stop_s"] / row["rest_s"], abs=1e-3)
    assert json.loads((tmp_path / "stop.json").read_text())["rows"] == result["rows"]
