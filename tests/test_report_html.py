"""tools/evaluate.py --report: the HTML evaluation report of a synthetic split, looked at in a real headless
Chromium served by a real HTTP server on 127.0.0.1."""
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import broken_images, browser_page, serve_directory
from rvos.datasets.synthetic import make_dataset
from rvos.evaluation.report import percent
from rvos.tools.evaluate import main as evaluate

WORST = 3


def _shift_predictions(pred: Path, empty_video: str = None) -> None:
    """Degrade a copy of the ground truth: expression i shifted right by 5 * (i % 4) pixels; every expression of
    ``empty_video`` predicted empty."""
    for index, folder in enumerate(sorted(p for p in pred.glob("*/*") if p.is_dir())):
        for png in folder.glob("*.png"):
            mask = np.array(Image.open(png))
            mask = np.zeros_like(mask) if folder.parent.name == empty_video else np.roll(mask, 5 * (index % 4), axis=1)
            Image.fromarray(mask).save(png)


@pytest.fixture(scope="module")
def ytvos_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    root = make_dataset("ytvos", tmp / "ytvos", seed=5, num_videos=1, num_valid_videos=2, num_test_videos=1,
                        num_frames=6)
    gt = root / "_synthetic_gt" / "valid" / "Annotations"
    meta = root / "meta_expressions" / "valid" / "meta_expressions.json"
    pred = tmp / "pred"
    shutil.copytree(gt, pred)
    _shift_predictions(pred, empty_video=sorted(p.name for p in pred.iterdir())[0])
    report = tmp / "report"
    results = evaluate(["--protocol", "ytvos", "--meta", str(meta), "--gt", str(gt), "--results", str(pred),
                        "--report", str(report), "--report-worst", str(WORST)])
    return root, results, report


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href")]


def test_report_folder_is_self_contained(ytvos_report):
    root, results, report = ytvos_report
    parser = _Links()
    parser.feed((report / "index.html").read_text())
    assert len(parser.links) == 1 + WORST  # the plot and the worst expressions' GIFs
    for link in parser.links:
        assert not re.match(r"^([a-z]+:|/)", link), f"not a relative link: {link}"
        assert (report / link).is_file(), link


def test_worst_gifs_show_prediction_beside_ground_truth(ytvos_report):
    """The worst GIF has one frame per video frame; its left half paints the (empty) prediction, so it differs from
    the right half (the ground truth) only where the ground truth is."""
    root, results, report = ytvos_report
    scores = {key: (j + f) / 2 for key, (j, f) in results["per_expression"].items()}
    worst = min(scores, key=lambda key: (scores[key], key))
    video, exp_id = worst.split("/")
    frames = json.loads((root / "meta_expressions" / "valid" / "meta_expressions.json").read_text())
    frame_names = frames["videos"][video]["frames"]
    gt = np.stack([np.array(Image.open(root / "_synthetic_gt" / "valid" / "Annotations" / video / exp_id /
                                       f"{name}.png")) > 0 for name in frame_names])
    with Image.open(report / "images" / "worst_00.gif") as gif:
        assert gif.n_frames == len(frame_names)
        painted_frame = int(np.argmax(gt.reshape(len(gt), -1).sum(1)))
        gif.seek(painted_frame)
        picture = np.asarray(gif.convert("RGB")).astype(int)
    half = (picture.shape[1] - 4) // 2
    left, right = picture[:, :half], picture[:, -half:]
    differs = np.abs(left - right).sum(-1) > 30
    differs[:16] = False  # the captions differ
    assert differs.any(), "prediction and ground truth panels look the same although the prediction is empty"
    scale = picture.shape[0] / gt.shape[1]
    rows, cols = np.nonzero(differs)
    gt_rows, gt_cols = np.nonzero(gt[painted_frame])
    assert rows.min() >= gt_rows.min() * scale - 3 and rows.max() <= (gt_rows.max() + 1) * scale + 3
    assert cols.min() >= gt_cols.min() * scale - 3 and cols.max() <= (gt_cols.max() + 1) * scale + 3


def test_report_page_in_chromium(ytvos_report):
    """The page loads over HTTP without a failed request or a broken image and shows the evaluator's numbers: the
    score table, the table by expression kind (from the synthetic sidecar) and the worst expressions in order."""
    root, results, report = ytvos_report
    sidecar = json.loads((root / "synthetic_meta.json").read_text())
    kinds = {f"{e['video']}/{e['exp_id']}": e["kind"] for e in sidecar["expressions"] if e["split"] == "valid"}
    expected_by_kind = {}
    for key, (jaccard, boundary) in results["per_expression"].items():
        expected_by_kind.setdefault(kinds[key], []).append((jaccard + boundary) / 2)
    worst = sorted(results["per_expression"], key=lambda key: (sum(results["per_expression"][key]) / 2, key))[:WORST]

    with serve_directory(report) as url, browser_page() as page:
        page.goto(url + "index.html", wait_until="load")
        page.wait_for_function("() => Array.from(document.images).every(img => img.complete)")
        assert page.rvos_failures == []
        assert broken_images(page) == []
        assert page.locator("img").count() == 1 + WORST
        score_cells = page.locator("#scores tr").nth(1).locator("td").all_inner_texts()
        assert score_cells == ["all", percent(results["J&F"]), percent(results["J"]), percent(results["F"]),
                               str(results["n_expressions"])]
        kind_rows = {cells[0]: cells for cells in (row.locator("td").all_inner_texts()
                                                   for row in page.locator("#by-kind tr").all()[1:])}
        assert set(kind_rows) == set(expected_by_kind)
        for kind, values in expected_by_kind.items():
            assert kind_rows[kind][1] == percent(float(np.mean(values)))
            assert kind_rows[kind][4] == str(len(values))
        captions = page.locator(".worst figcaption").all_inner_texts()
        assert [next(key for key in results["per_expression"] if key in caption) for caption in captions] == worst


def test_mevis_report_with_a_missing_video(tmp_path):
    """MeViS protocol: a video missing from the predictions scores 0 (official) and its expressions are the worst,
    shown with an empty prediction; frames are found beside the split."""
    root = make_dataset("mevis", tmp_path / "mevis", seed=2, num_videos=1, num_valid_u_videos=1,
                        num_valid_videos=2, num_frames=8)
    held_out = root / "_synthetic_gt" / "valid"
    pred = tmp_path / "pred"
    shutil.copytree(held_out / "Annotations", pred)
    missing = sorted(p.name for p in pred.iterdir())[0]
    shutil.rmtree(pred / missing)
    report = tmp_path / "report"
    results = evaluate(["--protocol", "mevis", "--mevis-root", str(held_out), "--results", str(pred),
                        "--workers", "1", "--report", str(report)])
    assert results["missing_videos"] == [missing]
    page = (report / "index.html").read_text()
    first_worst = re.search(r"<figcaption><b>[^<]*</b><br>([^<]*)<", page).group(1)
    assert first_worst.startswith(f"{missing}/")
    assert "frames: " + str(root / "valid" / "JPEGImages") in page
    with Image.open(report / "images" / "worst_00.gif") as gif:
        assert gif.n_frames == len(list((root / "valid" / "JPEGImages" / missing).glob("*.jpg")))


def test_report_needs_per_expression_scores(tmp_path):
    with pytest.raises(SystemExit):
        evaluate(["--protocol", "davis", "--davis-root", str(tmp_path), "--results", str(tmp_path),
                  "--report", str(tmp_path / "report")])


def test_expression_kinds_file_is_checked(tmp_path):
    from rvos.evaluation.expressions import load_expression_kinds

    bad = tmp_path / "kinds.json"
    bad.write_text(json.dumps({"expressions": [{"video": "v", "exp_id": "0"}]}))
    with pytest.raises(ValueError, match="kinds.json"):
        load_expression_kinds(bad)
    bad.write_text(json.dumps({"expressions": [{"video": "v", "exp_id": 0, "kind": "motion"}]}))
    assert load_expression_kinds(bad) == {("v", "0"): "motion"}
