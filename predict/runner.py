"""Inference over a benchmark split: resume, work split across ranks, failure isolation, progress.

- Resume: a video is skipped when all its output units are complete; otherwise only the
  expressions of its incomplete units are computed (partial units never look complete, see
  ``predict.writers``).
- Ranks (``torchrun``, SLURM): rank 0 lists the pending work and broadcasts it; videos are assigned
  by greedy longest-processing-time on frames x (1 + expressions), so ranks finish together.
- A video that fails (missing or corrupt frame, bad annotation, out of memory, a write error) is
  logged and skipped; the others complete; ``<output_root>/failures.json`` lists the failures and
  the run exits non-zero. Rerunning after fixing the input computes only what is missing. An engine may
  also report expressions that failed on their own (``run`` returns ``{expression: message}``, e.g. a
  missing key frame): only their outputs are left out.
- Preemption: SIGTERM or SIGUSR1 lets the expression in flight finish (with the full model per expression; in shared
  mode the decode chunk in flight, carried through the video's remaining windows; for DAVIS the annotator's sequence
  in flight) and commits it with the video's other finished units; the rest of the video and the videos after it
  are left, no zip is written and ``REQUEUE_EXIT_CODE`` is returned; rerunning the same command computes the rest.
- One progress bar on rank 0 counts the masks (frames x expressions) of all ranks, summed over a
  gloo side group by a background thread every ``PROGRESS_INTERVAL`` seconds.
"""
import heapq
import json
import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.distributed as dist
from tqdm import tqdm

from rvos.predict.base import Benchmark, Unit, VideoJob, window_cost
from rvos.predict.engine import InferenceEngine
from rvos.predict.loading import Prefetcher, load_video
from rvos.predict.run_record import OutputFolderMismatch, check_or_write_record
from rvos.predict.submission import write_zip
from rvos.predict.writers import VideoOutput
from rvos.util.preemption import REQUEUE_EXIT_CODE, PreemptionSignal

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5
MAX_PENDING_VIDEOS = 2
FAILURES_FILE = "failures.json"


@dataclass
class PendingVideo:
    """A video with incomplete outputs: its units to write and the expressions they need."""

    job: VideoJob
    units: List[Unit]
    expressions: List[int]

    @property
    def cost(self) -> int:
        return window_cost(self.job.num_frames, len(self.expressions))


def balance(costs: Sequence[int], world_size: int) -> List[List[int]]:
    """Greedy longest-processing-time: item indices per rank, each rank's list in ascending index order."""
    heap = [(0, rank) for rank in range(world_size)]
    assigned: List[List[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(heap)
        assigned[rank].append(index)
        heapq.heappush(heap, (load + costs[index], rank))
    return [sorted(items) for items in assigned]


class ProgressSync:
    """A progress bar on rank 0 of the work done by every rank.

    Alone, ``update`` moves the bar directly. Distributed, a thread on every rank all-reduces
    [done, finished] over ``group`` every ``interval`` seconds; all ranks leave the loop in the same
    round, once every rank called ``finish`` (so ``finish`` is also a barrier that never times out while
    another rank still computes).
    """

    def __init__(self, total: int, group=None, interval: float = PROGRESS_INTERVAL):
        self.group = group
        self.interval = interval
        rank = dist.get_rank() if group is not None else 0
        self.bar = tqdm(total=total, unit="mask", desc="inference", disable=rank != 0, dynamic_ncols=True)
        self.done = 0
        self.finished = False
        self.lock = threading.Lock()
        self.thread = None
        if group is not None:
            self.thread = threading.Thread(target=self._sync, name="progress", daemon=True)
            self.thread.start()

    def update(self, count: int) -> None:
        with self.lock:
            self.done += count
        if self.group is None:
            self.bar.update(count)

    def _sync(self) -> None:
        world = dist.get_world_size(self.group)
        while True:
            with self.lock:
                state = torch.tensor([float(self.done), 1.0 if self.finished else 0.0], dtype=torch.float64)
            dist.all_reduce(state, group=self.group)
            self.bar.update(int(state[0]) - self.bar.n)
            if int(state[1]) == world:
                return
            time.sleep(self.interval)

    def finish(self) -> None:
        with self.lock:
            self.finished = True
        if self.thread is not None:
            self.thread.join()
        self.bar.close()


class WorkCounter:
    """Forwards work counts to ``update`` and remembers their sum."""

    def __init__(self, update):
        self.update = update
        self.count = 0

    def __call__(self, count: int) -> None:
        self.count += count
        self.update(count)


class InferenceRunner:
    """Runs ``engine`` over ``benchmark`` on this rank's share of the pending videos.

    short_side / max_size: the resize of the frames; num_workers: threads decoding frames and
    writing files; zip: write the submission zip at the end (None: the benchmark's default); record: the options
    that decide the masks (``predict.run_record``, given on rank 0), checked against the output folder's before any
    work.
    """

    def __init__(self, benchmark: Benchmark, engine: InferenceEngine, short_side: int, max_size: Optional[int],
                 num_workers: int = 4, zip: Optional[bool] = None, record: Optional[Dict[str, Any]] = None):
        self.benchmark = benchmark
        self.record = record
        self.engine = engine
        self.short_side = short_side
        self.max_size = max_size
        self.num_workers = max(1, num_workers)
        self.zip = benchmark.zip_by_default if zip is None else zip
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.objects_group = dist.new_group(backend="gloo") if self.distributed else None
        self.progress_group = dist.new_group(backend="gloo") if self.distributed else None
        self.failures: List[dict] = []

    # ----------------------------------------------------------------------------- planning
    def pending_videos(self, writer) -> Tuple[List[VideoJob], List[PendingVideo]]:
        """All jobs of the split and those with incomplete units (listed on rank 0, broadcast)."""
        payload = [None, None, None]
        if self.rank == 0:
            try:
                jobs = self.benchmark.jobs()
                if self.record is not None:
                    check_or_write_record(self.benchmark.output_root, self.record)
                pending = []
                for job in jobs:
                    if job.info.get("invalid"):
                        self.failures.append({"video": job.name, "source": str(job.source),
                                              "error": job.info["invalid"]})
                        logger.error("video %s is skipped: %s", job.name, job.info["invalid"])
                        continue
                    units = [unit for unit in writer.units(job) if not writer.unit_complete(job, unit)]
                    if units:
                        expressions = sorted({e for unit in units for e in unit.expressions})
                        pending.append(PendingVideo(job, units, expressions))
                payload = [jobs, pending, None]
            except Exception as err:  # reported on every rank instead of leaving the others waiting
                if not self.distributed:
                    raise
                payload = [None, None, (type(err).__name__, str(err))]
        if self.distributed:
            dist.broadcast_object_list(payload, src=0, group=self.objects_group)
        jobs, pending, error = payload
        if error is not None:
            kind, message = error
            if kind == OutputFolderMismatch.__name__:
                raise OutputFolderMismatch(message)
            raise RuntimeError(f"listing the {self.benchmark.name} videos failed on rank 0: {kind}: {message}")
        return jobs, pending

    # ----------------------------------------------------------------------------- running
    def run(self) -> int:
        """Infer, finish (merge, zip) and return the exit code: 0 when every video succeeded."""
        start = time.time()
        write_pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="write")
        frame_pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="frames")
        finalizer = ThreadPoolExecutor(1, thread_name_prefix="finalize")
        writer = self.benchmark.make_writer(write_pool)
        jobs, pending = self.pending_videos(writer)
        complete = len(jobs) - len(pending)
        if self.rank == 0:
            logger.info("%s %s: %d videos, %d already complete, %d to do on %d rank(s)", self.benchmark.name,
                        self.benchmark.split, len(jobs), complete, len(pending), self.world_size)
        mine = [pending[i] for i in balance([p.cost for p in pending], self.world_size)[self.rank]]
        total = sum(self.benchmark.work(p.job, p.expressions) for p in pending)
        progress = ProgressSync(total, self.progress_group)
        load = partial(load_video, benchmark=self.benchmark, short_side=self.short_side, max_size=self.max_size,
                       pool=frame_pool, keep_original=getattr(self.engine, "needs_original_frames", False))
        preemption = PreemptionSignal()
        try:
            with preemption:
                self._infer(mine, load, writer, finalizer, progress, preemption)
        finally:
            finalizer.shutdown(wait=True)
            write_pool.shutdown(wait=True)
            frame_pool.shutdown(wait=True)
            progress.finish()
        failures = self._gather_failures()
        stopped = self._any_rank(preemption.requested)
        if stopped:
            logger.warning("preempted: finished outputs are kept; rerun the same command to compute the rest "
                           "(exit code %d)", REQUEUE_EXIT_CODE)
            return REQUEUE_EXIT_CODE
        if self.rank == 0:
            self._finish(jobs, failures, time.time() - start)
        return 1 if failures else 0

    def _any_rank(self, flag: bool) -> bool:
        if not self.distributed:
            return flag
        flags: List[Optional[bool]] = [None] * self.world_size
        dist.all_gather_object(flags, flag, group=self.objects_group)
        return any(flags)

    def _infer(self, mine: List[PendingVideo], load, writer, finalizer, progress,
               preemption: PreemptionSignal) -> None:
        """Infer this rank's videos (until a preemption signal) and wait for their files."""
        by_name = {p.job.name: p for p in mine}
        finalizing: List[Tuple[VideoJob, Future]] = []
        for job, loaded in Prefetcher([p.job for p in mine], load):
            if preemption.requested:
                logger.warning("preemption signal: video %s and later ones are left for the next run", job.name)
                break
            item = by_name[job.name]
            output = None
            counter = WorkCounter(progress.update)
            try:
                video = loaded.result()
                output = writer.open(job, item.units, video.frame_names)
                outcome = self.engine.run(job, video, set(item.expressions), output.add,
                                          order=partial(writer.order, job), progress=counter,
                                          stop=partial(stop_between_units, preemption, item.units))
                if outcome.failed:
                    self._record_expressions(job, outcome.failed)
                    output.drop(outcome.failed)
                if outcome.unfinished:
                    left = sorted(job.expressions[e].exp_id for e in outcome.unfinished)
                    logger.warning("preemption signal: video %s stopped after its expressions in flight; %d left for "
                                   "the next run: %s", job.name, len(left), ", ".join(left))
                    output.drop(outcome.unfinished)
                finalizing.append((job, finalizer.submit(finalize_video, output)))
            except Exception as err:  # one broken video must not stop the others
                self._record(job, err)
                progress.update(max(0, self.benchmark.work(job, item.expressions) - counter.count))
                if output is not None:
                    finalizer.submit(discard_video, output)
                if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
            finalizing = self._collect(finalizing, MAX_PENDING_VIDEOS)
        self._collect(finalizing, 0)

    def _record(self, job: VideoJob, err: BaseException) -> None:
        logger.error("video %s failed and is skipped: %s: %s", job.name, type(err).__name__, err)
        logger.debug("".join(traceback.format_exception(err)))
        self.failures.append({"video": job.name, "source": str(job.source), "error": f"{type(err).__name__}: {err}"})

    def _record_expressions(self, job: VideoJob, failed: Dict[int, str]) -> None:
        """Expressions of a video that failed on their own (the engine computed the others)."""
        for exp, message in sorted(failed.items()):
            exp_id = job.expressions[exp].exp_id
            logger.error("expression %s of video %s failed and is skipped: %s", exp_id, job.name, message)
            self.failures.append({"video": job.name, "expression": exp_id, "source": str(job.source),
                                  "error": message})

    def _collect(self, finalizing: List[Tuple[VideoJob, Future]], keep: int) -> List[Tuple[VideoJob, Future]]:
        """Wait until at most ``keep`` videos are still being written; record write failures."""
        while len(finalizing) > keep:
            job, future = finalizing.pop(0)
            try:
                future.result()
            except Exception as err:
                self._record(job, err)
        return finalizing

    def _gather_failures(self) -> List[dict]:
        if not self.distributed:
            return list(self.failures)
        gathered: List[Optional[List[dict]]] = [None] * self.world_size
        dist.all_gather_object(gathered, self.failures, group=self.objects_group)
        return [failure for rank_failures in gathered for failure in rank_failures]

    # ----------------------------------------------------------------------------- after all videos
    def _finish(self, jobs: List[VideoJob], failures: List[dict], seconds: float) -> None:
        failures_path = self.benchmark.output_root / FAILURES_FILE
        if failures:
            failures_path.parent.mkdir(parents=True, exist_ok=True)
            failures_path.write_text(json.dumps(failures, indent=1))
            logger.error("%d video(s) or expression(s) failed (listed in %s); completed outputs are kept, rerun after fixing them to "
                         "compute only what is missing:\n%s", len(failures), failures_path,
                         "\n".join(f"  {describe_failure(f)}" for f in failures))
            if self.zip:
                logger.error("submission zip not written: it would be incomplete")
            return
        if failures_path.exists():
            failures_path.unlink()
        self.benchmark.finish(jobs)
        if self.zip and self.benchmark.zip_path() is None:
            logger.warning("%s has no submission zip; --zip ignored", self.benchmark.name)
        elif self.zip:
            zip_path = write_zip(self.benchmark.submission_entries(jobs), self.benchmark.zip_path())
            logger.info("submission: %s (check it with tools/check_submission.py)", zip_path)
        logger.info("inference finished in %.1f s", seconds)


def stop_between_units(preemption: PreemptionSignal, units: Sequence[Unit], finished: Set[int],
                       in_flight: Set[int]) -> Optional[Set[int]]:
    """The engine's ``stop`` during a video: None until a preemption signal, then the expressions to finish first:
    those in flight and the rest of every output unit they or the finished ones belong to (a DAVIS annotator's
    sequence needs all its expressions; the other benchmarks' units are single expressions)."""
    if not preemption.requested:
        return None
    started = finished | in_flight
    return in_flight.union(*(unit.expressions for unit in units if started & set(unit.expressions)))


def describe_failure(failure: dict) -> str:
    """``video: error`` or ``video expression exp_id: error`` of a failures.json entry."""
    where = failure["video"] + (f" expression {failure['expression']}" if "expression" in failure else "")
    return f"{where}: {failure['error']}"


def finalize_video(output: VideoOutput) -> None:
    """Wait for a video's file writes, then move its units into place (raises the first write error)."""
    wait(output.futures)
    for future in output.futures:
        if future.exception() is not None:
            output.discard()
            raise future.exception()
    output.commit()


def discard_video(output: VideoOutput) -> None:
    wait(output.futures)
    output.discard()

