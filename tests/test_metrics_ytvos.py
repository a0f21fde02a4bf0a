"""Per-expression J&F against ground-truth PNG folders (synthetic Ref-YouTube-VOS held-out split)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from rvos.evaluation.mevis import PredictionError
from rvos.evaluation.ytvos import evaluate_expression_folders
from rvos.datasets.synthetic import make_dataset


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory):
    root = make_dataset("ytvos", tmp_path_factory.mktemp("ytvos") / "ytvos", seed=3, num_videos=1,
                        num_valid_videos=2, num_test_videos=1, num_frames=6)
    return root, root / "_synthetic_gt" / "valid" / "Annotations", root / "meta_expressions" / "valid" / "meta_expressions.json"


def test_ground_truth_scores_one(ytvos, tmp_path):
    root, gt, meta = ytvos
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    result = evaluate_expression_folders(meta, gt, pred)
    assert result["J&F"] == pytest.approx(1.0) and result["n_expressions"] >= 2


def test_empty_prediction_scores_the_empty_frames_only(ytvos, tmp_path):
    """An all-empty prediction scores J = 1 exactly on the frames where the target is absent, 0 elsewhere."""
    root, gt, meta = ytvos
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    expected = []
    for expression in sorted(p for p in gt.glob("*/*") if p.is_dir()):
        absent = [not np.array(Image.open(png)).any() for png in sorted(expression.glob("*.png"))]
        expected.append(np.mean(absent))
    for png in pred.rglob("*.png"):
        Image.fromarray(np.zeros_like(np.array(Image.open(png)))).save(png)
    result = evaluate_expression_folders(meta, gt, pred)
    assert result["J"] == pytest.approx(float(np.mean(expected)))
    assert result["J"] < 1.0


def test_missing_prediction_png_is_named(ytvos, tmp_path):
    root, gt, meta = ytvos
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    victim = sorted(pred.rglob("*.png"))[0]
    victim.unlink()
    with pytest.raises(PredictionError, match=victim.name):
        evaluate_expression_folders(meta, gt, pred)


def test_cli_protocol_ytvos(ytvos, tmp_path):
    from rvos.tools.evaluate import main
    root, gt, meta = ytvos
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    out = tmp_path / "results.json"
    results = main(["--protocol", "ytvos", "--meta", str(meta), "--gt", str(gt), "--results", str(pred),
                    "--output", str(out)])
    assert results["J&F"] == pytest.approx(1.0)
    assert out.is_file()


def test_cli_protocol_ytvos_passes_the_boundary_tolerance(ytvos, tmp_path):
    """Predictions shifted by 3 pixels: a wider --bound-th raises F, and the CLI's F equals the function's at that
    tolerance (the option used to be ignored for this protocol)."""
    from rvos.tools.evaluate import main
    root, gt, meta = ytvos
    pred = tmp_path / "pred"
    shutil.copytree(gt, pred)
    for png in pred.rglob("*.png"):
        with Image.open(png) as image:
            shifted = np.roll(np.array(image), 3, axis=1)
        Image.fromarray(shifted).save(png)
    default = main(["--protocol", "ytvos", "--meta", str(meta), "--gt", str(gt), "--results", str(pred)])
    wide = main(["--protocol", "ytvos", "--meta", str(meta), "--gt", str(gt), "--results", str(pred),
                 "--bound-th", "10"])
    assert wide["F"] > default["F"]
    assert wide["F"] == evaluate_expression_folders(meta, gt, pred, bound_th=10)["F"]
    assert default["F"] == evaluate_expression_folders(meta, gt, pred)["F"]
