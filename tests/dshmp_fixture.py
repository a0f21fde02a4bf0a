"""Our DsHmp built as the ``dshmp_tiny`` fixture's model, and the fixture's inputs in our formats."""
import contextlib
import itertools
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

from rvos import opts
from rvos.models import build_model
from rvos.models.checkpoint import load_model_checkpoint
from rvos.models.dshmp import motion
from rvos.models.dshmp.text import PrecomputedTagger, TaggedWord
from rvos.predict.engine import normalize_frames
from rvos.util.misc import nested_tensor_from_videos_list

from conftest import REFERENCE_DIR
from fixture_models import text_encoder_folder, zero_dropout

FIXTURE = REFERENCE_DIR / "fixtures" / "dshmp_tiny"
# The fixture's detectron2 config keys -> our options (README "Configuration").
CONFIG_OPTIONS = {
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": "--hidden_dim", "MODEL.SEM_SEG_HEAD.MASK_DIM": "--mask_dim",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": "--enc_layers", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": "--num_queries",
    "MODEL.MASK_FORMER.NHEADS": "--nheads", "MODEL.MASK_FORMER.DIM_FEEDFORWARD": "--dim_feedforward",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS": "--dshmp_train_points", "MODEL.VITA.ENC_LAYERS": "--dshmp_video_enc_layers",
    "MODEL.VITA.DEC_LAYERS": "--dshmp_video_dec_layers", "MODEL.VITA.ENC_WINDOW_SIZE": "--dshmp_window",
    "MODEL.VITA.NUM_OBJECT_QUERIES": "--dshmp_video_queries", "MODEL.VITA.TEST_RUN_CHUNK_SIZE": "--dshmp_run_chunk",
    "MODEL.VITA.TEST_INTERPOLATE_CHUNK_SIZE": "--dshmp_interpolate_chunk",
}
SWIN_KEYS = {"MODEL.SWIN.EMBED_DIM": "embed_dim", "MODEL.SWIN.DEPTHS": "depths", "MODEL.SWIN.NUM_HEADS": "num_heads",
             "MODEL.SWIN.WINDOW_SIZE": "window_size", "MODEL.SWIN.DROP_PATH_RATE": "drop_path_rate"}


def fixture_argv(tmp_dir: Path) -> List[str]:
    """Our command line for the fixture's config (its ``config_opts`` and the memory-bank patch)."""
    meta = json.loads((FIXTURE / "meta.json").read_text())
    pairs = dict(zip(meta["config_opts"][0::2], meta["config_opts"][1::2]))
    swin = {ours: pairs[key] for key, ours in SWIN_KEYS.items()}
    argv = ["--model", "dshmp", "--backbone_config", json.dumps(swin), "--msda_impl", "pytorch", "--device", "cpu",
            "--text_encoder", str(text_encoder_folder(FIXTURE, tmp_dir / "text_encoder"))]
    for key, option in CONFIG_OPTIONS.items():
        argv += [option, str(pairs[key])]
    argv += ["--dec_layers", str(pairs["MODEL.MASK_FORMER.DEC_LAYERS"] - 1)]  # DEC_LAYERS counts the initial queries
    setup = torch.load(FIXTURE / "inputs.pt", weights_only=False)["memory_bank_setup"]
    argv += ["--dshmp_memory_slots", str(setup["num_samples"]),
             "--dshmp_contrastive_samples", str(setup["num_contrastive_batch"])]
    return argv


def recorded_tags(inputs: Dict) -> Dict[str, List[TaggedWord]]:
    """The part-of-speech tags the original spaCy pipeline gave each fixture sentence."""
    cases = inputs["decoupling"]["clips"] + [inputs["decoupling"]["train"]]
    return {c["sentence"]: [TaggedWord(i, t, p) for i, t, p in zip(c["spacy_idx"], c["spacy_tokens"], c["spacy_pos"])]
            for c in cases}


def build_tiny(tmp_dir: Path, extra=()):
    """(args, model, criterion) with the fixture's weights (strict load), no dropout, tagged by the recorded tags."""
    args = opts.parse_args(fixture_argv(tmp_dir) + list(extra))
    torch.manual_seed(123)
    model, criterion, _ = build_model(args)
    load_model_checkpoint(model, FIXTURE / "checkpoint.pth", model_config=vars(args))
    zero_dropout(model)
    model.tagger = PrecomputedTagger(recorded_tags(torch.load(FIXTURE / "inputs.pt", weights_only=False)))
    return args, model, criterion


def clip_frames(clip: Dict) -> torch.Tensor:
    """The mapper's uint8 frames normalised as our inference does: float [T, 3, h, w]."""
    return normalize_frames(torch.stack(clip["image"]))


def train_batch(inputs: Dict):
    """(samples, captions, targets) of the fixture's train dict in our training formats."""
    train = inputs["train"]
    frames = clip_frames(train)
    samples = nested_tensor_from_videos_list([frames], size_divisibility=32)
    instances = train["instances"]
    ids = torch.stack([i["fields"]["gt_ids"] for i in instances], 1)
    setup = inputs["memory_bank_setup"]
    refer = str(train["refer_id"])
    target = {"instance_masks": torch.stack([i["fields"]["gt_masks"] for i in instances], 1),
              "instance_ids": ids.max(1).values, "refer_id": train["refer_id"],
              "positives": torch.tensor(setup["idx2positive"][refer]),
              "negatives": torch.tensor(setup["idx2negative"][refer]), "num_expressions": setup["num_samples"],
              "size": torch.tensor(frames.shape[-2:])}
    return samples, [train["sentence"]], [target]


def seed_like_fixture() -> None:
    """The RNG state of the fixture's train step (torch seed + 2, numpy seed + 3 with seed 0)."""
    torch.manual_seed(2)
    np.random.seed(3)


# ---------------------------------------------------------------------------------------------- track-order ties
# Cost gap under which the best of two track-order assignments is decided by float32 rounding: the matched queries
# agree with the fixture's to ~2e-6, their cosine costs to ~1e-7 each, a sum of 6 to ~1e-6.
TIE_GAP = 1e-5


def assignment_gap(cost: np.ndarray) -> float:
    """Cost of the second-best minus the best assignment of a square cost matrix (every permutation; Q <= 8)."""
    size = cost.shape[0]
    if size > 8:
        return float("inf")
    permutations = np.array(list(itertools.permutations(range(size))))
    totals = np.sort(cost[np.arange(size), permutations].sum(axis=1))
    return float(totals[1] - totals[0]) if len(totals) > 1 else float("inf")


@contextlib.contextmanager
def recorded_track_gaps():
    """Within: every track-order matching of DsHmp (``motion.track_order``) records its ``assignment_gap``; yields
    the list of gaps."""
    gaps: List[float] = []
    real = motion.track_order

    def recording(frames, fixed):
        orders = real(frames, fixed)
        reference = frames[0]
        for t in range(1, frames.shape[0]):
            gaps.append(assignment_gap(motion.cosine_cost(reference, frames[t])))
            reference = frames[t][orders[t]]
        return orders

    motion.track_order = recording
    try:
        yield gaps
    finally:
        motion.track_order = real


@contextlib.contextmanager
def compared_unless_tied():
    """Run a comparison with the fixture; when it fails and a track-order matching of this run was a tie at float32
    precision (``TIE_GAP``), skip with the measured gap: which of the tied assignments wins then depends on how the
    CPU's kernels round (the original's run and ATen's scalar kernels pick one, AVX2 / AVX-512 the other), so the
    fixture's choice is not reproducible here. A failure without such a tie fails."""
    with recorded_track_gaps() as gaps:
        try:
            yield
        except AssertionError as error:
            smallest = min(gaps, default=float("inf"))
            if smallest >= TIE_GAP:
                raise
            pytest.skip(f"a DsHmp track-order matching is a float32 tie on this CPU (best and second-best "
                        f"assignments {smallest:.1e} apart): the fixture's choice is not reproducible here ({error})")
