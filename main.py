"""Training and ``--eval`` for every model variant and dataset, under any launcher.

Replaces ReferFormer's ``main.py``, ``main_joint.py`` (``--dataset_file joint``) and ``main_pretrain.py``
(``--dataset_file all`` / ``refcoco`` / ``refcoco+`` / ``refcocog``)::

    torchrun --nproc_per_node 8 main.py --config configs/referformer/video_swin_t_p4w7_ytvos.yaml \\
        --pretrained_weights pretrained_weights/video_swin_tiny_pretrained.pth --output_dir out/vswin_t
    python -m torch.distributed.launch --nproc_per_node 8 --use_env main.py ...   # legacy launcher
    srun python main.py ...                                                        # SLURM, one task per GPU
    python main.py --config configs/tiny/referformer_tiny_synthetic.yaml ...       # one process

Writes to ``--output_dir``: ``checkpoint.pth`` (every epoch, and every ``--save_every_iters`` iterations),
``checkpoint{epoch:04d}.pth`` (before each LR drop and at the end), ``log.txt`` (a JSON line per epoch),
``train.log`` (the human log), ``train.lock`` (pid and host of the run, while it runs), ``config.yaml`` (the
resolved options; ``--config`` accepts it), ``env.json`` (software, hardware, MultiScaleDeformableAttention build)
and TensorBoard scalars in ``tb/<exp_name>``.
``--resume auto`` continues from ``<output_dir>/checkpoint.pth`` when it exists. SIGTERM / SIGUSR1 save and exit with
``util.preemption.REQUEUE_EXIT_CODE`` (124). docs/TRAINING.md has the recipes.
"""
import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Collection, Dict, List, Optional

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader

from rvos.datasets.collate import collate_fn
from rvos.datasets.registry import build_dataset
from rvos.datasets.samplers import ResumableDistributedSampler
from rvos.engine import TrainOptions, evaluate, train_one_epoch
from rvos.models import build_model, load_text_encoder_weights
from rvos.models.backbones import load_backbone_pretrained
from rvos.models.checkpoint import (CheckpointMismatchError, atomic_save, checkpoint_config, checkpoint_exists,
                                   compare_state_dict, load_model_checkpoint, load_pretrained_weights,
                                   mismatch_report, model_name_from_config, model_name_from_keys, normalise_state_dict,
                                   read_checkpoint)
from rvos.models.ops import msda_status
from rvos.opts import apply_variant_defaults, args_to_config, get_args_parser, option_sources, parse_args_or_exit
from rvos.predict.model import same_parameters
from rvos.util.dist import (DistContext, all_gather_object, any_rank, barrier, destroy_process_group,
                            init_distributed_mode, is_main_process)
from rvos.util.env_info import collect_env, format_env
from rvos.util.logger import (JSON_LOG_NAME, Meters, ScalarWriter, append_json_line, drop_epoch_rows,
                              setup_logging)
from rvos.util.optim import build_optimizer, check_global_batch
from rvos.util.preemption import (REQUEUE_EXIT_CODE, PreemptionSignal, ignore_preemption_signals,
                                  preemption_signals_ignored)
from rvos.evaluation.referring import (EVAL_DURING_TRAINING, EVAL_SPLITS, PredictionMaker, ground_truth_file,
                                 score_predictions, supports_eval)
from rvos.util.run_lock import RunLock, RunLockError
from rvos.util.rng import SeededDataset, SeededSampler, capture_rng_state, restore_rng_state, seed_everything
from rvos.util.train_state import (Position, build_checkpoint, checkpoint_milestone_epochs, restore_training_state,
                                   resumed_meter_states, scaler_for)

logger = logging.getLogger("main")

CHECKPOINT_NAME = "checkpoint.pth"
RESUME_AUTO = "auto"
# Options that describe this process rather than the run; left out of config.yaml.
RUNTIME_OPTIONS = ("config", "help", "local_rank")


def resolve_resume(args, output_dir: Optional[Path]) -> Optional[Path]:
    """The checkpoint ``--resume`` names (``auto``: ``<output_dir>/checkpoint.pth`` if present). Starting a new
    training run over an output folder that already holds a checkpoint is refused, so nothing is overwritten."""
    if args.resume == RESUME_AUTO:
        if output_dir is None:
            raise ValueError("--resume auto needs --output_dir")
        candidate = output_dir / CHECKPOINT_NAME
        return candidate if candidate.is_file() else None
    if args.resume:
        path = Path(args.resume)
        if not checkpoint_exists(path):
            raise FileNotFoundError(f"--resume {path}: no such checkpoint file or converted checkpoint folder")
        return path
    if not args.eval and output_dir is not None and (output_dir / CHECKPOINT_NAME).is_file():
        raise FileExistsError(
            f"{output_dir / CHECKPOINT_NAME} already exists from an earlier run; pass --resume auto (or --resume "
            f"{output_dir / CHECKPOINT_NAME}) to continue it, or choose another --output_dir")
    return None


def config_to_save(args) -> Dict:
    """The run's options (every parser option except runtime ones) plus the recipe keys, for config.yaml."""
    names = [a.dest for a in get_args_parser()._actions if a.dest not in RUNTIME_OPTIONS]
    values = args_to_config(args)
    return {**getattr(args, "recipe", {}), **{name: values[name] for name in names if name in values}}


def record_run(args, ctx: DistContext, output_dir: Optional[Path]) -> None:
    """Log (and on rank 0 save) the environment and resolved options."""
    env = collect_env(msda_status())
    logger.info("launcher %s: rank %d of %d (local rank %d), backend %s", ctx.launcher, ctx.rank, ctx.world_size,
                ctx.local_rank, ctx.backend)
    logger.info("environment:\n%s", format_env(env))
    config = config_to_save(args)
    logger.info("options:\n%s", yaml.safe_dump(config, sort_keys=True).rstrip())
    if output_dir is None:
        logger.warning("--output_dir is empty: no checkpoint, log or TensorBoard file will be written")
        return
    if is_main_process():
        write_keeping_previous(output_dir / "config.yaml", yaml.safe_dump(config, sort_keys=True))
        write_keeping_previous(output_dir / "env.json", json.dumps(env, indent=2))


def write_keeping_previous(path: Path, text: str) -> None:
    """Write ``text`` to ``path``; a different earlier version (from the run being resumed) is kept as
    ``<stem>.<its time><suffix>``."""
    if path.is_file() and path.read_text() != text:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        path.rename(path.with_name(f"{path.stem}.{stamp}{path.suffix}"))
    path.write_text(text)


def process_device(args, ctx: DistContext) -> torch.device:
    """``cuda:<local rank>`` for CUDA runs (an explicit ``--device cuda:N`` is kept in a single process)."""
    device = torch.device(args.device)
    if device.type == "cuda" and (ctx.distributed or device.index is None):
        return torch.device("cuda", ctx.local_rank)
    return device


def initialise_weights(model, args, resume: Optional[Path]) -> Optional[dict]:
    """Load weights: ``--resume`` (returned, for its training state), else ``--pretrained_weights`` (fine-tuning,
    class heads fresh), else the text encoder from ``--text_encoder`` and the backbone from
    ``--backbone_pretrained`` when given."""
    config = args_to_config(args)
    if resume is not None:
        if args.pretrained_weights:
            logger.warning("--pretrained_weights %s is ignored: --resume %s supplies the weights",
                           args.pretrained_weights, resume)
        return load_model_checkpoint(model, resume, model_config=config)
    if args.eval:
        raise ValueError("--eval needs the weights to evaluate: pass --resume CHECKPOINT")
    if args.pretrained_weights:
        fresh = load_pretrained_weights(model, args.pretrained_weights, model_config=config,
                                        keep_class_head=args.pretrained_keep_class_head)
        if any(k.startswith("text_encoder.") for k in fresh):  # e.g. DsHmp from a Mask2Former checkpoint
            load_text_encoder_weights(model)
        if args.backbone_pretrained:
            logger.warning("--backbone_pretrained %s is ignored: --pretrained_weights supplies the backbone",
                           args.backbone_pretrained)
        return None
    load_text_encoder_weights(model)
    if args.backbone_pretrained:
        load_backbone_pretrained(model.backbone, args.backbone_pretrained)
    else:
        logger.warning("no --resume, --pretrained_weights or --backbone_pretrained: the visual backbone starts "
                       "from random weights")
    return None


def adopt_checkpoint_variant(args, source, given: Collection[str] = ()) -> None:
    """Build the model variant of the checkpoint ``source`` (``--resume`` / ``--pretrained_weights``), as
    ``inference.py`` does: with no ``--model`` on the command line or in ``--config``, the variant its config (or,
    without one, its keys) names, with that variant's defaults for the options not ``given``
    (``opts.option_sources``; when empty, a set ``--model`` counts as given). A ``--model`` with other parameters
    is refused with the table of differences. A checkpoint that names no variant (a Mask2Former file) changes
    nothing."""
    ckpt = read_checkpoint(source)
    config = checkpoint_config(ckpt)
    theirs = model_name_from_config(config) or model_name_from_keys(ckpt.get("model", {}))
    if theirs is None:
        return
    chosen = "model" in given if given else args.model is not None
    if not chosen:
        if theirs != "referformer":
            logger.info("%s holds a %s model: building --model %s", source, theirs, theirs)
        args.model = theirs
        apply_variant_defaults(args, theirs, given)
        return
    if same_parameters(args.model, theirs):
        return
    model = build_model(args)[0]
    table = mismatch_report(str(source), *compare_state_dict(model, normalise_state_dict(ckpt["model"])),
                            ckpt_config=config, model_config=args_to_config(args))
    raise CheckpointMismatchError(f"--model {args.model} contradicts {source}, a {theirs} checkpoint: pass --model "
                                  f"{theirs} or leave --model out to build what it holds\n{table}")


def check_dataset_mode(args, resume: Optional[Path]) -> None:
    """The original scripts' guards, as clear errors."""
    if args.eval and not supports_eval(args.dataset_file):
        raise ValueError(f"--eval scores {', '.join(sorted(EVAL_SPLITS))}; predictions for "
                         f"--dataset_file {args.dataset_file} are made and scored with inference.py")
    if args.dataset_file == "jhmdb" and not args.eval:
        raise ValueError("JHMDB-Sentences is evaluated only (with the A2D-Sentences model): pass --eval --resume "
                         "A2D_CHECKPOINT")
    if args.dataset_file == "davis" and not args.eval and not (args.pretrained_weights or resume):
        raise ValueError("Ref-DAVIS17 is fine-tuned from a Ref-YouTube-VOS model: pass --pretrained_weights")


def evaluation_loaders(args, ctx: DistContext) -> List[tuple]:
    """(name, ground-truth file, loader over this rank's share) for every evaluated split of the dataset."""
    loaders = []
    for name, image_set in EVAL_SPLITS[args.dataset_file]:
        dataset = build_dataset(image_set, args, dataset_file=name)
        shard = list(range(ctx.rank, len(dataset), ctx.world_size))
        loader = DataLoader(dataset, args.batch_size, sampler=shard, collate_fn=collate_fn,
                            num_workers=args.num_workers, pin_memory=str(args.device).startswith("cuda"))
        loaders.append((name, ground_truth_file(name, image_set, args), loader))
    return loaders


def run_evaluation(model, postprocessors, loaders: List[tuple], args, device) -> Dict[str, float]:
    """Score every split of ``loaders``; metrics are named ``<dataset>_<metric>`` (computed on rank 0)."""
    metrics: Dict[str, float] = {}
    make_predictions = PredictionMaker(postprocessors)
    for name, gt_path, loader in loaders:
        predictions = evaluate(model, loader, device, make_predictions, amp=args.amp, desc=f"eval {name}")
        if is_main_process():
            metrics.update({f"{name}_{k}": v for k, v in score_predictions(gt_path, predictions).items()})
    return metrics


class Trainer:
    """Holds the training state of one run and writes its checkpoints and logs; ``preemption``: the active
    ``PreemptionSignal`` of the run, polled at every optimiser step."""

    def __init__(self, args, ctx: DistContext, device: torch.device, model, criterion, postprocessors,
                 resume: Optional[Path], ckpt: Optional[dict], output_dir: Optional[Path],
                 preemption: PreemptionSignal):
        self.args, self.ctx, self.device, self.output_dir = args, ctx, device, output_dir
        self.model_without_ddp, self.criterion, self.postprocessors = model, criterion, postprocessors
        self.n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("trainable parameters: %d", self.n_parameters)

        lr_scale = check_global_batch(args, ctx.world_size)
        self.optimizer, self.lr_scheduler = build_optimizer(model, args, lr_scale)
        self.scaler = scaler_for(args.amp, device)

        dataset = build_dataset("train", args)
        logger.info("training set %s: %d samples", args.dataset_file, len(dataset))
        self.sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=args.seed)
        batches = BatchSampler(SeededSampler(self.sampler, args.seed), args.batch_size, drop_last=True)
        if len(batches) == 0:
            raise ValueError(f"the training set has {len(dataset)} samples, fewer than one global batch of "
                             f"{ctx.world_size} x {args.batch_size}")
        self.loader = DataLoader(SeededDataset(dataset), batch_sampler=batches, collate_fn=collate_fn,
                                 num_workers=args.num_workers, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(args.seed),
                                 worker_init_fn=ignore_preemption_signals)
        self.iterations_per_epoch = len(batches)
        if args.max_iters_per_epoch:
            self.iterations_per_epoch = min(self.iterations_per_epoch, args.max_iters_per_epoch)

        self.position, self.rng_state, self.resumed_meters = Position(args.start_epoch), None, []
        if ckpt is not None and not args.eval:
            self.position, self.rng_state = restore_training_state(
                ckpt, str(resume), self.optimizer, self.lr_scheduler, self.scaler, self.sampler, ctx.rank,
                ctx.world_size, args.lr_drop, args.batch_size)
            self.resumed_meters = resumed_meter_states(ckpt, ctx.rank)

        self.model = model
        if ctx.distributed:
            self.model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=getattr(model, "ddp_find_unused_parameters", False),
                broadcast_buffers=getattr(model, "ddp_broadcast_buffers", True))
        self.options = TrainOptions(max_norm=args.clip_max_norm, amp=args.amp, accumulate=args.accumulate)
        self.eval_loaders = evaluation_loaders(args, ctx) if args.dataset_file in EVAL_DURING_TRAINING else []
        self.save_every = args.save_every_iters
        self.epoch, self.num_iterations, self.last_saved, self.done = 0, 0, 0, 0
        self.stop_at: Optional[float] = None
        self.preemption = preemption
        self.preempted = False
        self.meters = Meters()
        self.writer = None

    def save(self, epoch: int, iteration: int, finished: bool, latest: bool = True, numbered: bool = False) -> None:
        """Write ``checkpoint.pth`` (when ``latest``) and ``checkpoint{epoch:04d}.pth`` (when ``numbered``)
        atomically; every rank must call it (the RNG states and loss sums of all ranks are gathered)."""
        gathered = all_gather_object((capture_rng_state(), self.meters.state_dict()))
        if self.output_dir is None or not is_main_process():
            return
        started = time.time()
        state = build_checkpoint(self.model_without_ddp, self.optimizer, self.lr_scheduler, self.scaler,
                                 self.sampler, epoch, iteration, finished, [rng for rng, _ in gathered],
                                 args_to_config(self.args), meters=[sums for _, sums in gathered])
        paths = ([self.output_dir / f"checkpoint{epoch:04d}.pth"] if numbered else []) + \
                ([self.output_dir / CHECKPOINT_NAME] if latest else [])
        for path in paths:
            atomic_save(state, path)
        logger.info("saved %s (epoch %d, iteration %d%s) in %.1fs", ", ".join(str(p) for p in paths), epoch,
                    iteration, ", end of epoch" if finished else "", time.time() - started)

    def set_step(self, epoch: int, done: int) -> None:
        """Tell a criterion with a step-dependent schedule (``set_step``, e.g. DsHmp's contrastive ramp) the number
        of optimiser steps taken so far."""
        set_step = getattr(self.criterion, "set_step", None)
        if set_step is not None:
            set_step((epoch * self.iterations_per_epoch + done) // max(1, self.args.accumulate))

    def after_iteration(self, done: int, stepped: bool) -> bool:
        """Per-batch bookkeeping: sampler progress, the periodic mid-epoch checkpoint, and the stop time.
        Returns True to end the epoch here (``stop_at`` passed, at an optimiser step)."""
        self.done = done
        self.set_step(self.epoch, done)
        self.sampler.advance(self.args.batch_size)
        if (self.save_every > 0 and stepped and done < self.num_iterations
                and done - self.last_saved >= self.save_every):
            self.save(self.epoch, done, finished=False)
            self.last_saved = done
        return stepped and self.should_stop()

    def should_stop(self) -> bool:
        """Whether any rank was sent a preemption signal or reached ``stop_at`` (every rank must call it, at the
        same iteration, so that all ranks stop together)."""
        if any_rank(self.preemption.requested, self.device):
            self.preempted = True
            return True
        return self.stop_at is not None and any_rank(time.time() >= self.stop_at, self.device)

    def fit(self, stop_at: Optional[float] = None) -> int:
        """Train to ``--epochs``; with ``stop_at`` (a ``time.time()`` value) stop at the first optimiser step after
        it, with a checkpoint to resume from. SIGTERM or SIGUSR1 (on any rank) stop every rank at the same
        optimiser step, with that checkpoint. Returns the exit status: 0, or ``REQUEUE_EXIT_CODE`` when a
        preemption signal stopped the run before ``--epochs``."""
        complete = self.train_epochs(stop_at)
        if self.preempted and not complete:
            barrier()  # rank 0 has written the checkpoint before any rank exits (SLURM ends a step at the first)
            logger.warning("preempted (%s): state saved, exiting with code %d; continue with --resume auto",
                           ", ".join(self.preemption.received) or "another rank", REQUEUE_EXIT_CODE)
            return REQUEUE_EXIT_CODE
        return 0

    def train_epochs(self, stop_at: Optional[float]) -> bool:
        """The training loop of ``fit``; returns whether the run reached ``--epochs``."""
        args, start = self.args, self.position
        self.stop_at = stop_at
        if start.epoch >= args.epochs:
            logger.warning("nothing to train: the run is at epoch %d and --epochs is %d (to fine-tune from these "
                           "weights, pass them as --pretrained_weights)", start.epoch, args.epochs)
            return True
        milestones = checkpoint_milestone_epochs(args.lr_drop, args.epochs)
        if self.output_dir is not None and is_main_process():
            self.writer = ScalarWriter(self.output_dir / "tb" / args.exp_name,
                                       purge_step=start.epoch * self.iterations_per_epoch + start.iteration)
            dropped = drop_epoch_rows(self.output_dir / JSON_LOG_NAME, start.epoch)
            if dropped:
                logger.warning("%s: removed %d row(s) of epoch %d or later, written before the checkpoint marked "
                               "them finished; they are written again", self.output_dir / JSON_LOG_NAME, dropped,
                               start.epoch)
        if self.rng_state is not None:
            restore_rng_state(self.rng_state)
        logger.info("training epochs %d..%d from iteration %d", start.epoch, args.epochs - 1, start.iteration)
        started, complete = time.time(), False
        for epoch in range(start.epoch, args.epochs):
            first = start.iteration if epoch == start.epoch else 0
            self.sampler.set_epoch(epoch)
            self.epoch, self.last_saved, self.done = epoch, first, first
            self.meters = Meters()
            for sums in (self.resumed_meters if epoch == start.epoch else []):
                self.meters.add_state(sums)
            self.set_step(epoch, first)
            self.num_iterations = min(first + len(self.loader), self.iterations_per_epoch)
            stats = train_one_epoch(self.model, self.criterion, self.loader, self.optimizer, self.device, epoch,
                                    self.options, self.num_iterations, first, self.scaler, self.writer,
                                    self.after_iteration, self.meters)
            if self.done < self.num_iterations:
                self.save(epoch, self.done, finished=False)
                logger.info("stopped in epoch %d after %d of %d iterations; continue with --resume", epoch,
                            self.done, self.num_iterations)
                break
            # The epoch is marked finished (checkpoint.pth) only after its numbered checkpoint, evaluation and log
            # row are written: a kill before that resumes inside the epoch and writes them again.
            self.lr_scheduler.step()
            if epoch in milestones:
                self.save(epoch, self.num_iterations, finished=True, latest=False, numbered=True)
            test_stats = run_evaluation(self.model_without_ddp, self.postprocessors, self.eval_loaders, args,
                                        self.device) if self.eval_loaders else {}
            self.log_epoch(epoch, stats, test_stats)
            self.save(epoch, self.num_iterations, finished=True)
            complete = epoch + 1 >= args.epochs
            if not complete and self.should_stop():
                logger.info("stopped after epoch %d", epoch)
                break
        logger.info("training took %s", time.strftime("%H:%M:%S", time.gmtime(time.time() - started)))
        if self.writer is not None:
            self.writer.close()
        return complete

    def log_epoch(self, epoch: int, stats: Dict[str, float], test_stats: Dict[str, float]) -> None:
        record = {**{f"train_{k}": v for k, v in stats.items()}, **{f"test_{k}": v for k, v in test_stats.items()},
                  "epoch": epoch, "n_parameters": self.n_parameters}
        logger.info("epoch %d done: %s", epoch, json.dumps(record))
        if self.output_dir is not None and is_main_process():
            append_json_line(self.output_dir / JSON_LOG_NAME, record)
        if self.writer is not None:
            self.writer.scalars(stats, epoch, prefix="train/")
            self.writer.scalars(test_stats, epoch, prefix="test/")
            self.writer.flush()


def run(args, ctx: DistContext, stop_at: Optional[float] = None, given: Collection[str] = ()) -> int:
    """Train (or ``--eval``) with parsed options; ``stop_at``: see ``Trainer.fit``; ``given``: the options set on
    the command line or in ``--config`` (``opts.option_sources``)."""
    output_dir = Path(args.output_dir) if args.output_dir else None
    resume = resolve_resume(args, output_dir)
    lock = RunLock(output_dir) if output_dir is not None and not args.eval else None
    take_lock(lock)
    preemption = PreemptionSignal()
    try:
        # training records SIGTERM/SIGUSR1 from its start: one sent during start-up stops it after its first step
        # (launchers may start the workers with both ignored, scripts/train.sh); --eval keeps their default action
        with preemption if not args.eval else contextlib.nullcontext():
            return train_or_evaluate(args, ctx, output_dir, resume, stop_at, given, preemption)
    finally:
        if lock is not None:
            lock.release()


def take_lock(lock: Optional[RunLock]) -> None:
    """Rank 0 takes the output folder's lock; every rank raises its RunLockError (none waits for the others)."""
    error = None
    if lock is not None and is_main_process():
        try:
            lock.acquire()
        except RunLockError as err:
            error = str(err)
    errors = [e for e in all_gather_object(error) if e]
    if errors:
        raise RunLockError(errors[0])


def train_or_evaluate(args, ctx: DistContext, output_dir: Optional[Path], resume: Optional[Path],
                      stop_at: Optional[float], given: Collection[str], preemption: PreemptionSignal) -> int:
    """``run`` once the output folder is this run's; ``preemption``: the signals recorded since the start."""
    setup_logging(output_dir, ctx.rank)
    if resume is not None or args.pretrained_weights:
        adopt_checkpoint_variant(args, resume if resume is not None else args.pretrained_weights, given)
    record_run(args, ctx, output_dir)
    check_dataset_mode(args, resume)
    seed_everything(args.seed + ctx.rank)
    device = process_device(args, ctx)

    model, criterion, postprocessors = build_model(args)
    model.to(device)
    criterion.to(device)
    ckpt = initialise_weights(model, args, resume)

    if args.eval:
        metrics = run_evaluation(model, postprocessors, evaluation_loaders(args, ctx), args, device)
        if is_main_process():
            logger.info("evaluation of %s: %s", resume, json.dumps(metrics, indent=1))
            if output_dir is not None:
                append_json_line(output_dir / JSON_LOG_NAME, {**{f"test_{k}": v for k, v in metrics.items()},
                                                              "checkpoint": str(resume)})
        return 0

    trainer = Trainer(args, ctx, device, model, criterion, postprocessors, resume, ckpt, output_dir, preemption)
    del ckpt
    return trainer.fit(stop_at)


def launch(args, stop_at: Optional[float] = None, given: Collection[str] = ()) -> int:
    """Run parsed options in this process (joining the process group of its launcher); ``given``: see ``run``."""
    ctx = init_distributed_mode(args)
    code = None
    try:
        code = run(args, ctx, stop_at, given)
        return code
    finally:
        with preemption_signals_ignored() if code == REQUEUE_EXIT_CODE else contextlib.nullcontext():
            destroy_process_group()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    return launch(parse_args_or_exit(argv, parser), given=option_sources(argv, parser))


if __name__ == "__main__":
    status = main()
    if status == REQUEUE_EXIT_CODE:  # saved: torchrun's SIGTERM, sent once another rank has exited, must not kill it
        ignore_preemption_signals()
    sys.exit(status)
