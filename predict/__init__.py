"""Inference on the benchmarks and on one's own videos: one module per benchmark (``benchmarks/``: what to
predict, the windows, how predictions are written), one engine (``engine``: the model over a video's windows
for all its expressions), frame loading (``loading``), post-processing (``postprocess``), writers and the
logits store (``writers``), submission zips (``submission``), overlays (``overlay``), the model from a
checkpoint (``model``) and the runner (``runner``: resume, ranks, failures).

``inference.py`` is the command line; ``build_benchmark(args)`` picks the benchmark from
``--video`` or ``--dataset_file``.
"""
import logging

from rvos.predict.benchmarks.a2d import A2DBenchmark
from rvos.predict.base import Benchmark
from rvos.predict.benchmarks.davis import DavisBenchmark
from rvos.predict.benchmarks.jhmdb import JHMDBBenchmark
from rvos.predict.benchmarks.mevis import MeViSBenchmark
from rvos.predict.benchmarks.video import VideoBenchmark
from rvos.predict.benchmarks.ytvos import YTVOSBenchmark

BENCHMARKS = {cls.name: cls for cls in (YTVOSBenchmark, MeViSBenchmark, DavisBenchmark, A2DBenchmark, JHMDBBenchmark,
                                        VideoBenchmark)}
logger = logging.getLogger(__name__)


def build_benchmark(args) -> Benchmark:
    """The benchmark of ``--video`` (a custom video) or ``--dataset_file``."""
    name = "video" if getattr(args, "video", None) else args.dataset_file
    if name not in BENCHMARKS:
        raise ValueError(f"inference supports --dataset_file {', '.join(n for n in BENCHMARKS if n != 'video')} "
                         f"(or --video FILE_OR_FOLDER), got {name!r}")
    if getattr(args, "legacy_mevis2024_subclips", False) and name != MeViSBenchmark.name:
        logger.warning("--legacy_mevis2024_subclips reproduces the MeViS-2024 MeViS inference only; %s inference "
                       "uses the plain --sub_video_len windows", name)
    return BENCHMARKS[name](args)


__all__ = ["BENCHMARKS", "Benchmark", "build_benchmark"]
