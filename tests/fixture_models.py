"""Build the tiny models of ../shared/reference/fixtures with our code, from the fixture's own files."""
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from rvos import opts
from rvos.models import build_model
from rvos.models.checkpoint import load_model_checkpoint

from conftest import assert_matches_stats, is_stats_only


def text_encoder_folder(fixture: Path, dest: Path) -> Path:
    """A local text-encoder folder (config.json + the fixture's tokenizer files), as a user would make one."""
    meta = json.loads((fixture / "meta.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for f in (fixture / "tokenizer").iterdir():
        shutil.copy(f, dest / f.name)
    config = dict(meta["text_encoder_config"], model_type="roberta")
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def fixture_args(fixture: Path, tmp_dir: Path, extra=()):
    """Parse the fixture's original argv with our parser + the tiny backbone and text encoder."""
    meta = json.loads((fixture / "meta.json").read_text())
    argv = list(meta["argv"]) + ["--backbone_config", json.dumps(meta["backbone_config_override"]),
                                 "--text_encoder", str(text_encoder_folder(fixture, tmp_dir / "text_encoder")),
                                 "--msda_impl", "pytorch"] + list(extra)
    return opts.parse_args(argv)


def zero_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0, as the fixtures' train runs did."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
        if hasattr(m, "drop_prob"):
            m.drop_prob = 0.0


def build_fixture_model(fixture: Path, tmp_dir: Path, extra=()):
    args = fixture_args(fixture, tmp_dir, extra)
    torch.manual_seed(123)
    model, criterion, post = build_model(args)
    load_model_checkpoint(model, fixture / "checkpoint.pth", model_config=vars(args))
    zero_dropout(model)
    return args, model, criterion, post


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


def assert_close(ours: torch.Tensor, ref: torch.Tensor, name: str, tol: float = 1e-4):
    """Within tol absolute plus tol relative (mask logits reach |x| ~ 75 after many layers)."""
    assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
    assert torch.allclose(ours.double(), ref.double(), atol=tol, rtol=tol), (name, max_abs_diff(ours, ref))


def assert_record(ours, ref, name: str):
    """A forward-hook output against the fixture's record (full tensor or statistics)."""
    if isinstance(ref, (tuple, list)):
        assert len(ours) == len(ref), name
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_record(a, b, f"{name}[{i}]")
    elif is_stats_only(ref):
        assert_matches_stats(ours, ref, atol=1e-4 * max(1.0, abs(ref["min"]), abs(ref["max"])))
    else:
        assert_close(ours, ref, name)


def run_single_video(model: nn.Module, fixture: Path) -> dict:
    """Eval outputs for the fixture's single-video call, made as inference_ytvos.py does:
    ``model([video], [caption], [{'size': ...}])`` (the model pads the video itself)."""
    model.eval()
    single = torch.load(fixture / "inputs_single.pt", weights_only=True)
    video = torch.load(fixture / "inputs.pt", weights_only=True)["videos"][single["video_index"]]
    with torch.no_grad():
        return model([video], single["captions"], single["targets"])


def run_recorded(model: nn.Module, names, *args, **kwargs):
    """Eval outputs of ``model(*args, **kwargs)`` and every call of the modules ``names``:
    {name: [(args, output), ...]} in call order."""
    model.eval()
    modules = dict(model.named_modules())
    records = {name: [] for name in names}
    handles = [modules[name].register_forward_hook(lambda m, a, out, name=name: records[name].append((a, out)))
               for name in names]
    try:
        with torch.no_grad():
            out = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return out, records


def assert_outputs(out: dict, ref: dict, keys, aux: bool = False) -> None:
    """Eval outputs against a fixture's: the same keys, ``keys`` within tolerance (and the aux outputs')."""
    assert set(out) == set(ref)
    for key in keys:
        assert_close(out[key], ref[key], key)
    if aux:
        assert len(out["aux_outputs"]) == len(ref["aux_outputs"])
        for ours, theirs in zip(out["aux_outputs"], ref["aux_outputs"]):
            for key in ("pred_logits", "pred_boxes", "pred_masks"):
                assert_close(ours[key], theirs[key], f"aux {key}")


def assert_losses(losses: dict, criterion, ref: dict) -> torch.Tensor:
    """Every loss of a fixture's ``loss.pt`` within 1e-5 and the weighted total within 1e-4; returns the total."""
    assert set(losses) == set(ref["loss_dict"])
    for key, value in ref["loss_dict"].items():
        assert abs(losses[key].item() - value.item()) <= 1e-5, key
    total = sum(losses[k] * criterion.weight_dict[k] for k in losses)
    assert abs(total.item() - ref["total_weighted"].item()) <= 1e-4
    return total


def assert_gradients(model: nn.Module, ref: dict) -> None:
    """The gradients a fixture recorded, within 1e-4 of their scale."""
    params = dict(model.named_parameters())
    for name, grad in ref["grads"].items():
        assert params[name].grad is not None, name
        scale = max(1.0, grad.abs().max().item())
        assert max_abs_diff(params[name].grad, grad) <= 1e-4 * scale, name


def assert_train_step(model: nn.Module, criterion, out: dict, targets, ref: dict) -> None:
    """A train step against a fixture's ``loss.pt``: the losses, the criterion's matching exactly, then (after
    backward) the recorded gradients."""
    total = assert_losses(criterion(out, targets), criterion, ref)
    assert len(criterion.last_indices) == len(ref["matcher_calls_in_criterion"])
    for ours, theirs in zip(criterion.last_indices, ref["matcher_calls_in_criterion"]):
        for (q, t), (rq, rt) in zip(ours, theirs):
            assert torch.equal(q, rq) and torch.equal(t, rt)
    total.backward()
    assert_gradients(model, ref)
