"""An evaluation report to look at: one self-contained folder holding ``index.html`` and its images.

The page shows the score table, the J&F distribution over expressions (a matplotlib histogram, stacked by
expression kind when the kinds are known), J&F / J / F per expression kind, the worst expressions as GIFs
(prediction beside ground truth over the frames) and every expression's scores. Every link is relative, so the
folder can be copied or served as it is.
"""
import html
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from rvos.evaluation.expression_masks import FolderExpressionMasks
from rvos.evaluation.expressions import ExpressionScore, scores_by_kind, summarise_scores
from rvos.evaluation.report import percent
from rvos.util.video_io import OverlayWriter, blend_masks, draw_legend, outline_mask

logger = logging.getLogger(__name__)

REPORT_PAGE = "index.html"
IMAGES_DIR = "images"
DEFAULT_WORST = 8
GIF_FPS = 4
GIF_MIN_HEIGHT, GIF_MAX_HEIGHT = 144, 180
GIF_MAX_FRAMES = 24
_PANEL_GAP = 4
_BLANK_GREY = 64
_SCORE_COLUMNS = ("J&F", "J", "F")

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.worst { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: 0.5em; }
figcaption { font-size: 0.9em; max-width: 30em; }
.note { color: #666; font-size: 0.9em; }
"""


def write_report(out_dir: Path, title: str, scores: Sequence[ExpressionScore],
                 masks: Optional[FolderExpressionMasks] = None, worst: int = DEFAULT_WORST,
                 details: Optional[Mapping[str, str]] = None) -> Path:
    """Write the report folder ``out_dir`` (its page and ``images/``; files of an earlier report are overwritten,
    nothing else is touched) and return its page.

    scores: every scored expression; masks: where the worst ``worst`` expressions' frames and masks come from
    (no GIFs without it); details: lines shown under the title (e.g. the prediction folder).
    """
    if not scores:
        raise ValueError("no scored expression to report")
    out_dir = Path(out_dir)
    images = out_dir / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    summary = summarise_scores(scores)
    by_kind = scores_by_kind(scores)
    plot = write_distribution_plot(scores, images / "jf_distribution.png")
    worst_scores = sorted(scores, key=lambda score: (score.jf, score.key))[:max(worst, 0)]
    gifs: Dict[str, str] = {}
    if masks is not None:
        for rank, score in enumerate(worst_scores):
            gif = write_comparison_gif(masks, score, images / f"worst_{rank:02d}.gif")
            gifs[score.key] = gif.relative_to(out_dir).as_posix()
    page = out_dir / REPORT_PAGE
    page.write_text(_page(title, details or {}, summary, by_kind, plot.relative_to(out_dir).as_posix(),
                          worst_scores, gifs, scores, masks is not None), encoding="utf-8")
    logger.info("report written to %s", page)
    return page


def write_distribution_plot(scores: Sequence[ExpressionScore], path: Path) -> Path:
    """Histogram of per-expression J&F (percent), stacked by kind when kinds are known, with the mean marked."""
    figure = Figure(figsize=(6.4, 3.4), dpi=100)  # the Agg canvas: no pyplot state, no display
    axes = figure.add_subplot()
    bins = np.linspace(0, 100, 21)
    kinds = list(scores_by_kind(scores))
    if kinds:
        groups = [[100 * s.jf for s in scores if s.kind == kind] for kind in kinds]
        unknown = [100 * s.jf for s in scores if s.kind is None]
        labels = kinds + (["unknown kind"] if unknown else [])
        axes.hist(groups + ([unknown] if unknown else []), bins=bins, stacked=True, label=labels)
        axes.legend(fontsize="small")
    else:
        axes.hist([100 * s.jf for s in scores], bins=bins)
    mean = 100 * summarise_scores(scores)["J&F"]
    axes.axvline(mean, color="black", linestyle="--", linewidth=1)
    axes.text(mean, axes.get_ylim()[1] * 0.95, f" mean {mean:.1f}", va="top", fontsize="small")
    axes.set_xlabel("J&F per expression (%)")
    axes.set_ylabel("expressions")
    axes.set_xlim(0, 100)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_comparison_gif(masks: FolderExpressionMasks, score: ExpressionScore, path: Path) -> Path:
    """GIF of one expression: the prediction (left) beside the ground truth (right) over its frames.

    Frames are spread evenly over the video (at most ``GIF_MAX_FRAMES``) and scaled to a height between
    ``GIF_MIN_HEIGHT`` and ``GIF_MAX_HEIGHT``; without frames on disk the masks are drawn on grey.
    """
    pred, gt = masks.masks(score.video, score.exp_id)
    frames = masks.frames(score.video)
    keep = np.unique(np.linspace(0, len(gt) - 1, min(len(gt), GIF_MAX_FRAMES)).round().astype(int))
    with OverlayWriter(path, GIF_FPS) as writer:
        for index in keep:
            frame = frames[index] if frames is not None else np.full((*gt.shape[1:], 3), _BLANK_GREY, np.uint8)
            panels = [_panel(frame, pred[index], "prediction"), _panel(frame, gt[index], "ground truth")]
            gap = np.full((panels[0].shape[0], _PANEL_GAP, 3), 255, np.uint8)
            writer.write(np.concatenate([panels[0], gap, panels[1]], axis=1))
    return path


def _panel(frame: np.ndarray, mask: np.ndarray, caption: str) -> np.ndarray:
    """frame [H, W, 3] scaled into the GIF's height range, ``mask`` [H, W] painted and outlined, ``caption``
    written."""
    height, width = mask.shape
    target = min(max(height, GIF_MIN_HEIGHT), GIF_MAX_HEIGHT)
    if target != height:
        size = (max(1, round(width * target / height)), target)
        frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    painted = outline_mask(blend_masks(frame, [mask]), mask)
    return draw_legend(painted, [caption], numbered=False)


# ------------------------------------------------------------------------------------------------ page

def _page(title: str, details: Mapping[str, str], summary: Mapping[str, float], by_kind: Mapping[str, Mapping],
          plot: str, worst: Sequence[ExpressionScore], gifs: Mapping[str, str],
          scores: Sequence[ExpressionScore], has_masks: bool) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{esc(title)}</title>\n"
             f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>"]
    if details:
        parts.append("<p class=\"note\">" + "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in details.items()) + "</p>")
    parts.append("<h2>Scores</h2>")
    parts.append(_summary_table("scores", {"all": summary}))
    parts.append("<h2>J&amp;F over expressions</h2>")
    parts.append(f"<img id=\"distribution\" src=\"{esc(plot)}\" alt=\"histogram of J&amp;F per expression\">")
    if by_kind:
        parts.append("<h2>By expression kind</h2>")
        parts.append(_summary_table("by-kind", by_kind))
    parts.append(f"<h2>Worst {len(worst)} expressions</h2>")
    if not has_masks:
        parts.append("<p class=\"note\">No masks given: no GIFs.</p>")
    parts.append("<div class=\"worst\">")
    for score in worst:
        gif = gifs.get(score.key)
        image = (f"<img src=\"{esc(gif)}\" alt=\"prediction and ground truth of {esc(score.key)}\">"
                 if gif else "")
        parts.append(f"<figure>{image}<figcaption><b>{esc(score.text)}</b><br>{esc(score.key)}"
                     f"{_kind_note(score)}<br>J&amp;F {percent(score.jf)}, J {percent(score.jaccard)}, "
                     f"F {percent(score.boundary)}</figcaption></figure>")
    parts.append("</div>")
    parts.append(f"<details><summary>All {len(scores)} expressions, worst first</summary>")
    parts.append(_expression_table(sorted(scores, key=lambda score: (score.jf, score.key))))
    parts.append("</details>\n</body>\n</html>\n")
    return "\n".join(parts)


def _kind_note(score: ExpressionScore) -> str:
    return f" ({html.escape(score.kind)})" if score.kind else ""


def _summary_table(table_id: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    header = "".join(f"<th>{html.escape(column)}</th>" for column in _SCORE_COLUMNS)
    lines = [f"<table id=\"{table_id}\">", f"<tr><th></th>{header}<th>expressions</th></tr>"]
    for label, values in rows.items():
        cells = "".join(f"<td>{percent(values[column])}</td>" for column in _SCORE_COLUMNS)
        lines.append(f"<tr><td>{html.escape(label)}</td>{cells}<td>{values['n_expressions']}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _expression_table(scores: List[ExpressionScore]) -> str:
    lines = ["<table id=\"expressions\">", "<tr><th>expression</th><th>text</th><th>kind</th><th>J&amp;F</th>"
             "<th>J</th><th>F</th></tr>"]
    for score in scores:
        lines.append(f"<tr><td>{html.escape(score.key)}</td><td>{html.escape(score.text)}</td>"
                     f"<td>{html.escape(score.kind or '')}</td><td>{percent(score.jf)}</td>"
                     f"<td>{percent(score.jaccard)}</td><td>{percent(score.boundary)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)
