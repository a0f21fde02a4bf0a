"""tools/evaluate.py: every protocol from the command line, results saved as JSON (reference metrics data)."""
import json
import shutil

import pytest

from conftest import REFERENCE_DIR
from rvos.tools.evaluate import main

METRICS = REFERENCE_DIR / "metrics"
TOLERANCE = 1e-12


def _load(path):
    with open(path) as handle:
        return json.load(handle)


def test_mevis_command_saves_official_scores(tmp_path):
    output = tmp_path / "mevis.json"
    main(["--protocol", "mevis", "--mevis-root", str(METRICS / "mevis" / "valid_u"),
          "--results", str(METRICS / "mevis" / "pred"), "--workers", "2", "--output", str(output)])
    saved, printed = _load(output), _load(METRICS / "mevis" / "expected.json")["results"]["main"]["printed"]
    assert saved["protocol"] == "mevis"
    for key in ("J", "F", "J&F"):
        assert saved[key] == pytest.approx(printed[key], rel=0, abs=TOLERANCE)


def test_refdavis_command_writes_official_csvs_and_mean(tmp_path):
    results = tmp_path / "valid"
    shutil.copytree(METRICS / "refdavis" / "results" / "valid", results)
    output = tmp_path / "refdavis.json"
    main(["--protocol", "refdavis", "--davis-root", str(METRICS / "refdavis" / "DAVIS"), "--results", str(results),
          "--csv", "--output", str(output)])
    expected = _load(METRICS / "refdavis" / "expected.json")
    for column, value in _load(output)["mean"].items():
        assert value == pytest.approx(expected["mean_over_4_annotators_exact"][column], rel=0, abs=TOLERANCE)
    for csv in (METRICS / "refdavis" / "official_csv").glob("*/*.csv"):
        assert (results / csv.parent.name / csv.name).read_text() == csv.read_text()


@pytest.mark.parametrize("protocol, case", [("a2d", "a2d_sentences"), ("jhmdb", "jhmdb_sentences")])
def test_a2d_and_jhmdb_commands_find_the_official_gt_file(tmp_path, protocol, case):
    output = tmp_path / f"{protocol}.json"
    main(["--protocol", protocol, "--gt", str(METRICS / "a2d" / case),
          "--predictions", str(METRICS / "a2d" / case / "predictions.json"), "--output", str(output)])
    saved = _load(output)
    for name, value in _load(METRICS / "a2d" / case / "expected.json")["eval_metrics"].items():
        assert saved[name] == pytest.approx(value, rel=0, abs=TOLERANCE)


def test_missing_protocol_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit):
        main(["--protocol", "davis", "--results", "somewhere"])
    assert "--davis-root" in capsys.readouterr().err
