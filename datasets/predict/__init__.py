"""Inference on the benchmarks and on one's own videos: per-benchmark readers and prediction writers
behind a registry, one inference engine, the runner (resume, ranks, failures) and submission zips.

``inference.py`` is the command line; ``build_benchmark(args)`` picks the benchmark from
``--video`` or ``--dataset_file``.
"""
from datasets.predict.a2d import A2DBenchmark
from datasets.predict.base import Benchmark
from datasets.predict.davis import DavisBenchmark
from datasets.predict.jhmdb import JHMDBBenchmark
from datasets.predict.mevis import MeViSBenchmark
from datasets.predict.video import VideoBenchmark
from datasets.predict.ytvos import YTVOSBenchmark

BENCHMARKS = {cls.name: cls for cls in (YTVOSBenchmark, MeViSBenchmark, DavisBenchmark, A2DBenchmark, JHMDBBenchmark,
                                        VideoBenchmark)}


def build_benchmark(args) -> Benchmark:
    """The benchmark of ``--video`` (a custom video) or ``--dataset_file``."""
    name = "video" if getattr(args, "video", None) else args.dataset_file
    if name not in BENCHMARKS:
        raise ValueError(f"inference supports --dataset_file {', '.join(n for n in BENCHMARKS if n != 'video')} "
                         f"(or --video FILE_OR_FOLDER), got {name!r}")
    return BENCHMARKS[name](args)


__all__ = ["BENCHMARKS", "Benchmark", "build_benchmark"]
