"""DAVIS-2017 statistics and the Ref-DAVIS17 protocol against the official runs (reference davis_jf and refdavis)."""
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REFERENCE_DIR
from rvos.evaluation.davis import evaluate_davis, sequence_statistics, write_davis_csvs
from rvos.evaluation.refdavis import ANNOTATOR_SLOTS, evaluate_refdavis
from rvos.evaluation.metrics import region_and_boundary

DAVIS_JF = REFERENCE_DIR / "metrics" / "davis_jf"
REFDAVIS = REFERENCE_DIR / "metrics" / "refdavis"
TOLERANCE = 1e-12  # statistics are means: allow summation-order ulps, nothing more


def _load(path):
    with open(path) as handle:
        return json.load(handle)


def _value(value):
    return math.nan if value == "NaN" else value


def assert_close(actual, expected):
    expected = _value(expected)
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected, rel=0, abs=TOLERANCE)


STATISTICS = {case["id"]: case for case in _load(DAVIS_JF / "statistics.json")["cases"]}
SEQUENCES = {case["id"]: case for case in _load(DAVIS_JF / "sequences.json")["cases"]}
EXPECTED = _load(REFDAVIS / "expected.json")


@pytest.mark.parametrize("case_id", sorted(STATISTICS))
def test_sequence_statistics_match_db_statistics(case_id):
    """Includes NaN frames (a miss for recall) and the uint8 wrap-around of the decay bins above 255 frames."""
    case = STATISTICS[case_id]
    stats = sequence_statistics([_value(v) for v in case["values"]])
    assert_close(stats.mean, case["mean"])
    assert_close(stats.recall, case["recall"])
    assert_close(stats.decay, case["decay"])


@pytest.mark.parametrize("case_id", sorted(SEQUENCES))
def test_sequence_statistics_of_mask_sequences(case_id):
    case = SEQUENCES[case_id]
    arrays = np.load(DAVIS_JF / "sequences.npz")
    shape = tuple(int(n) for n in arrays[f"{case_id}__shape"])
    gt, pred = (np.unpackbits(arrays[f"{case_id}__{part}"], count=int(np.prod(shape))).reshape(shape).astype(bool)
                for part in ("gt", "pred"))
    jaccard, f_measure = region_and_boundary(gt, pred)
    for values, expected in ((jaccard, case["J"]), (f_measure, case["F"])):
        stats = sequence_statistics(values)
        assert_close(stats.mean, expected["mean"])
        assert_close(stats.recall, expected["recall"])
        assert_close(stats.decay, expected["decay"])
    assert_close((jaccard.mean() + f_measure.mean()) / 2, case["JF_mean"])


@pytest.fixture(scope="module")
def refdavis_results():
    return evaluate_refdavis(REFDAVIS / "DAVIS", REFDAVIS / "results" / "valid")


@pytest.mark.parametrize("slot", ANNOTATOR_SLOTS)
def test_annotator_runs_match_official(refdavis_results, slot):
    run, expected = refdavis_results["runs"][slot], EXPECTED["runs"][slot]["exact"]
    for column, value in run["global"].items():
        assert_close(value, expected[column])
    rows = list(run["per_object"].values())
    for key, column in (("J_M", "J-Mean"), ("J_R", "J-Recall"), ("J_D", "J-Decay"),
                        ("F_M", "F-Mean"), ("F_R", "F-Recall"), ("F_D", "F-Decay")):
        assert len(rows) == len(expected["per_object_lists_in_order"][key])
        for row, value in zip(rows, expected["per_object_lists_in_order"][key]):
            assert_close(row[column], value)
    assert list(run["per_object"]) == list(expected["per_object"])


@pytest.mark.parametrize("slot", ANNOTATOR_SLOTS)
def test_csv_files_equal_official(refdavis_results, slot, tmp_path):
    paths = write_davis_csvs(refdavis_results["runs"][slot], tmp_path)
    for path in paths:
        assert path.read_text() == (REFDAVIS / "official_csv" / slot / path.name).read_text()


def test_mean_over_annotators(refdavis_results):
    for column, value in EXPECTED["mean_over_4_annotators_exact"].items():
        assert_close(refdavis_results["mean"][column], value)


def test_swapped_ids_are_rematched(refdavis_results):
    """anno_1 swaps the predicted ids of seq-one: rows follow proposal order but keep their true GT object."""
    original, swapped = (refdavis_results["runs"][slot]["per_object"] for slot in ("anno_0", "anno_1"))
    by_object = {row["gt_object"]: row for name, row in original.items() if row["sequence"] == "seq-one"}
    seq_one = [row for row in swapped.values() if row["sequence"] == "seq-one"]
    assert sorted(row["gt_object"] for row in seq_one) == sorted(by_object)
    assert [row["gt_object"] for row in seq_one] != [row["proposal"] for row in seq_one]
    for row in seq_one:
        assert row["J-Mean"] == by_object[row["gt_object"]]["J-Mean"]
        assert row["F-Mean"] == by_object[row["gt_object"]]["F-Mean"]


@pytest.fixture()
def results_copy(tmp_path):
    target = tmp_path / "anno_0"
    shutil.copytree(REFDAVIS / "results" / "valid" / "anno_0", target)
    return target


def test_missing_prediction_png_names_the_file(results_copy):
    missing = results_copy / "seq-two" / "00003.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing)):
        evaluate_davis(REFDAVIS / "DAVIS", results_copy)


def test_binary_0_255_pngs_exceed_the_proposal_limit(results_copy):
    for path in (results_copy / "seq-one").glob("*.png"):
        labels = np.array(Image.open(path))
        Image.fromarray(((labels > 0) * 255).astype(np.uint8), mode="L").save(path)
    with pytest.raises(ValueError, match="seq-one.*20"):
        evaluate_davis(REFDAVIS / "DAVIS", results_copy)


def test_wrong_size_prediction_names_the_file(results_copy):
    path = results_copy / "seq-three" / "00002.png"
    labels = np.array(Image.open(path))
    Image.fromarray(labels[:-1], mode="L").save(path)
    with pytest.raises(ValueError, match=str(path)):
        evaluate_davis(REFDAVIS / "DAVIS", results_copy)


def test_semi_supervised_drops_first_and_last_frames(tmp_path):
    """GT ids as predictions, except that the first and last frames are blank: perfect on the frames the
    semi-supervised task evaluates, imperfect for the unsupervised task that scores every frame."""
    davis_root = tmp_path / "DAVIS"
    shutil.copytree(REFDAVIS / "DAVIS", davis_root)
    shutil.copytree(davis_root / "Annotations_unsupervised", davis_root / "Annotations")
    results = tmp_path / "results"
    for sequence_dir in sorted((davis_root / "Annotations" / "480p").iterdir()):
        frames = sorted(sequence_dir.glob("*.png"))
        first = np.array(Image.open(frames[0]))
        n_objects = int(first[first != 255].max())
        (results / sequence_dir.name).mkdir(parents=True)
        for index, path in enumerate(frames):
            labels = np.array(Image.open(path))
            labels[labels > n_objects] = 0  # void and objects absent from the first frame
            if index in (0, len(frames) - 1):
                labels[:] = 0
            Image.fromarray(labels, mode="L").save(results / sequence_dir.name / path.name)
    semi = evaluate_davis(davis_root, results, task="semi-supervised")
    assert all(row["J-Mean"] == 1.0 and row["F-Mean"] == 1.0 for row in semi["per_object"].values())
    assert semi["global"]["J&F-Mean"] == 1.0
    unsupervised = evaluate_davis(davis_root, results, task="unsupervised")
    assert unsupervised["global"]["J&F-Mean"] < 1.0
