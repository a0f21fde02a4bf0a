"""Paper-style result tables (percent, one decimal) and JSON files for evaluation results."""
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

TABLE_COLUMNS = {
    "davis": ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"),
    "refdavis": ("J&F-Mean", "J-Mean", "F-Mean"),
    "mevis": ("J&F", "J", "F"),
    "a2d": ("P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "overall_iou", "mean_iou", "mAP 0.5:0.95"),
}
_HEADERS = {"J&F-Mean": "J&F", "J-Mean": "J", "F-Mean": "F", "overall_iou": "oIoU", "mean_iou": "mIoU",
            "mAP 0.5:0.95": "mAP"}


def format_table(title: str, rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Rows ``{label: {column: fraction}}`` -> a text table of percentages with one decimal, under ``title``."""
    label_width = max([len(label) for label in rows] + [1])
    headers = [_HEADERS.get(column, column) for column in columns]
    widths = [max(len(header), 6) for header in headers]
    lines = [title, " " * label_width + "".join(f"  {h:>{w}}" for h, w in zip(headers, widths))]
    for label, values in rows.items():
        cells = "".join(f"  {percent(values[column]):>{w}}" for column, w in zip(columns, widths))
        lines.append(f"{label:<{label_width}}{cells}")
    return "\n".join(lines)


def save_json(results: Mapping, path: Path) -> Path:
    """Write results as standard JSON (NaN becomes null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(_without_nan(results), handle, indent=1)
    return path


def percent(value: float) -> str:
    """A fraction as a percentage with one decimal (``nan`` for None / NaN)."""
    return "nan" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _without_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    return value
