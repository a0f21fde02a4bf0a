"""Our models built from each public configuration have exactly the public checkpoints' keys and shapes.

Built on the meta device (no memory, no weights), from the manifest's own option values; the
text encoder architecture comes from the project's carried roberta-base config (offline).
"""
import json

import pytest
import torch

from rvos import opts
from rvos.models import build_model
from rvos.models.checkpoint import normalise_state_dict

from conftest import REFERFORMER_LAYOUT_FAMILIES, checkpoint_manifests, skip_unless_variant_exists


def build_from_manifest(manifest: dict, variant: str):
    args = opts.parse_args(["--device", "cpu"])
    known = vars(args)
    for key, value in manifest["config"].items():
        if key in known:
            setattr(args, key, value)
    args.model = variant
    with torch.device("meta"):
        model, _, _ = build_model(args)
    return model


@pytest.mark.parametrize("path,family", checkpoint_manifests(REFERFORMER_LAYOUT_FAMILIES),
                         ids=lambda v: getattr(v, "stem", v))
def test_state_dict_matches_manifest(path, family):
    variant = skip_unless_variant_exists(family)
    manifest = json.loads(path.read_text())
    model = build_from_manifest(manifest, variant)
    ours = {k: tuple(v.shape) for k, v in normalise_state_dict(model.state_dict()).items()}
    theirs = {k: tuple(v) for k, v in manifest["keys"].items()}
    missing = sorted(set(theirs) - set(ours))
    unexpected = sorted(set(ours) - set(theirs))
    assert not missing, f"{len(missing)} keys of the public checkpoint missing, e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} keys not in the public checkpoint, e.g. {unexpected[:5]}"
    wrong = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not wrong, f"wrong shapes: {list(wrong.items())[:5]}"
    buffers = {name for name, _ in model.named_buffers()} & set(theirs)
    assert buffers == set(manifest["buffers"])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    prefixes = tuple(manifest["requires_grad_false_prefixes"])
    assert all(name.startswith(prefixes) for name in frozen) if prefixes else not frozen
    for prefix in prefixes:
        assert any(name.startswith(prefix) for name in frozen), prefix
