"""A full disk while saving a checkpoint or writing the submission zip: the error names the file, the cause and
the room left, and what was there before (the previous checkpoint, the predictions) is intact (inference whose
zip meets a full disk: ``test_bad_files_inference``).

The writes run in a child process whose writes really fail at the file-system layer: under a file-size limit
(``RLIMIT_FSIZE``: the kernel refuses the bytes past it, EFBIG, the path torch reports as "unexpected pos"), and,
where this user may mount one (root), on a 256 KiB tmpfs that fills up (ENOSPC).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


REPO_ROOT = Path(__file__).resolve().parents[1]
TMPFS_SIZE = "256k"

CHILD = r"""
import json, resource, signal, sys
from pathlib import Path

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of a kill
job, folder, limit, extra = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
import torch
from rvos.predict.submission import SubmissionEntry, write_zip
from rvos.models.checkpoint import atomic_save
from rvos.util.write_failure import OutputWriteError
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
if job == "inference":  # the whole command: its error ends the process as a user sees it
    from rvos import inference
    sys.exit(inference.main(extra))
errors = {}
try:
    atomic_save({"model": {"w": torch.arange(300_000, dtype=torch.float32)}, "epoch": 1}, folder / "checkpoint.pth")
except OutputWriteError as error:
    errors["checkpoint"] = str(error)
entries = [SubmissionEntry(f"Annotations/v/0/{Path(p).name}", Path(p), Path(p), "v", "0") for p in extra]
try:
    write_zip(entries, folder / "submission.zip")
except OutputWriteError as error:
    errors["zip"] = str(error)
print(json.dumps(errors))
"""


def run_child(job: str, folder: Path, limit: int, extra) -> subprocess.CompletedProcess:
    """Run CHILD: ``job`` "writes" (a checkpoint into ``folder`` and a zip of the files ``extra`` there) or
    "inference" (``inference.main(extra)``), under an RLIMIT_FSIZE of ``limit`` bytes (0: none)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", CHILD, job, str(folder), str(limit), json.dumps(extra)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(params=["file-size limit", "full tmpfs"])
def limited(request, tmp_path):
    """(folder where writes fail past a small size, the RLIMIT_FSIZE the child sets: 0 for none)."""
    folder = tmp_path / "limited"
    folder.mkdir()
    if request.param == "file-size limit":
        yield folder, 64 * 1024
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the file-size limit variant covers this machine")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder, 0
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _outcome(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_full_disk_names_the_checkpoint_and_the_zip_and_keeps_what_was_there(limited, tmp_path):
    folder, limit = limited
    previous = {"model": {"w": torch.ones(3)}, "epoch": 0}
    torch.save(previous, folder / "checkpoint.pth")
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    rng = np.random.default_rng(0)
    for index in range(24):  # noise does not compress: the zip (about 400 KiB) outgrows the room left
        Image.fromarray(rng.integers(0, 256, (128, 128), dtype=np.uint8), mode="L").save(predictions / f"{index}.png")
    before = {p: p.read_bytes() for p in predictions.iterdir()}
    errors = _outcome(run_child("writes", folder, limit, [str(p) for p in sorted(before)]))

    checkpoint = folder / "checkpoint.pth"
    assert errors["checkpoint"].startswith(f"cannot write the checkpoint {checkpoint}: no room for it")
    assert "MiB free there" in errors["checkpoint"] and "The previous checkpoint.pth is unchanged." in errors["checkpoint"]
    kept = torch.load(checkpoint, weights_only=True)
    assert kept["epoch"] == 0 and torch.equal(kept["model"]["w"], previous["model"]["w"])

    assert errors["zip"].startswith(f"cannot write the submission zip {folder / 'submission.zip'}: no room for it")
    assert "rerun the same command (it only writes the zip)" in errors["zip"]
    assert {p: p.read_bytes() for p in predictions.iterdir()} == before
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pth"]  # no temporary or partial file is left
