"""JHMDB-Sentences inference (DATASETS.md §5.2): the A2D protocol on the samples of
``jhmdb_sentences_samples_metadata.json`` (3 frames per video, 1-based PNG frames).

Each sample runs on the ``--num_frames`` window centred on its frame, clamped to the video's first
``video_total_frames`` frames; results go to ``<output_dir>/test/predictions.json`` for
``tools/evaluate.py --protocol jhmdb --gt <jhmdb_path> --predictions <output_dir>/test/predictions.json``.
"""
from pathlib import Path
from typing import Dict, List

from rvos.datasets.base import normalize_caption
from rvos.datasets.jhmdb import METADATA_FILE, jhmdb_image_id, read_samples_metadata, resolve_metadata_path
from rvos.predict.benchmarks.a2d import CocoResultsBenchmark, centred_windows
from rvos.predict.base import Expression, VideoJob, WindowPlan

FIRST_FRAME = 1


class JHMDBBenchmark(CocoResultsBenchmark):
    name = "jhmdb"

    @property
    def root(self) -> Path:
        return Path(self.args.jhmdb_path)

    def jobs(self) -> List[VideoJob]:
        samples = read_samples_metadata(self.root / METADATA_FILE)
        grouped: Dict[str, List[tuple]] = {}
        for video_id, frame_path, _mask_path, total_frames, query in samples:
            grouped.setdefault(video_id, []).append((resolve_metadata_path(self.root, frame_path), total_frames,
                                                     query))
        jobs = []
        for video_id in sorted(grouped):
            entries = grouped[video_id]
            folder, total = entries[0][0].parent, min(total for _, total, _ in entries)
            files = [folder / f"{n:05d}.png" for n in range(FIRST_FRAME, FIRST_FRAME + total)]
            expressions = [Expression(jhmdb_image_id(video_id, int(path.stem)), normalize_caption(query))
                           for path, _, query in entries]
            jobs.append(VideoJob(video_id, expressions, frame_files=files,
                                 info={"centres": [int(path.stem) for path, _, _ in entries]}))
        return jobs

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        return centred_windows(job, num_frames, self.args.num_frames, first=FIRST_FRAME)
