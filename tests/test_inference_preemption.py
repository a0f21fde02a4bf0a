"""inference.py sent SIGTERM while a video is computed: that video is finished and kept, no other starts, the run
exits with the requeue code, and a rerun computes only the rest (the same masks as an uninterrupted run)."""
import os
import signal

import numpy as np

from rvos.predict.engine import InferenceEngine
from rvos.util.preemption import REQUEUE_EXIT_CODE
from test_bad_files_inference import finished, mtimes, world, ytvos_argv  # noqa: F401 (fixtures)
from test_inference_fixtures import read_pngs, run_inference


def test_sigterm_finishes_the_video_in_flight_and_a_rerun_continues(world, finished, tmp_path,  # noqa: F811
                                                                     monkeypatch):
    out = tmp_path / "out"
    real_run = InferenceEngine.run
    computed = []

    def signalled_during_first_video(self, job, *args, **kwargs):
        computed.append(job.name)
        if len(computed) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered while this video is computed
        return real_run(self, job, *args, **kwargs)

    monkeypatch.setattr(InferenceEngine, "run", signalled_during_first_video)
    assert run_inference(ytvos_argv(world, out)) == REQUEUE_EXIT_CODE
    assert len(computed) == 1, "no video may start after the signal"
    expected = read_pngs(finished / "valid")
    first = {k: v for k, v in read_pngs(out / "valid").items() if k.startswith(computed[0] + "/")}
    assert first and all(np.array_equal(first[k], expected[k]) for k in first)
    assert set(read_pngs(out / "valid")) == set(first), "only the video in flight is written"
    assert not list(out.glob("*.zip")), "no submission zip for an interrupted run"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    kept = mtimes(out / "valid")
    monkeypatch.setattr(InferenceEngine, "run", real_run)
    assert run_inference(ytvos_argv(world, out)) == 0
    got = read_pngs(out / "valid")
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "the finished video was computed again"
    assert list(out.glob("*.zip")), "the completed rerun writes the zip"
