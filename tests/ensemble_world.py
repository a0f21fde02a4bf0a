"""A small synthetic world for the ensemble tests: a meta, I23 .pth stores, PNG trees and recipes, written to disk."""
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

from rvos.predict.writers import save_binary_png


def make_meta(root: Path, videos: int = 4, frames: int = 3, size=(12, 16)) -> Dict[str, dict]:
    """``root/meta.json`` with ``videos`` videos of ``frames`` frames and 1-3 expressions each."""
    meta = {"videos": {f"v{i:02d}": {"expressions": {str(e): {"exp": f"thing {e}"} for e in range(1 + i % 3)},
                                      "frames": [f"{5 * t:05d}" for t in range(frames)], "size": list(size)}
                       for i in range(videos)}}
    (root / "meta.json").write_text(json.dumps(meta))
    return meta["videos"]


def make_pth(path: Path, meta: Dict[str, dict], seed: int, videos: List[str] = None) -> None:
    """An I23 store of random logits and scores for ``videos`` (all by default)."""
    rng = np.random.default_rng(seed)
    store = {}
    for video in videos or sorted(meta):
        h, w = meta[video]["size"]
        t = len(meta[video]["frames"])
        store[video] = {e: {"mask_logits": torch.from_numpy(rng.normal(0, 2, (t, h, w)).astype(np.float32)),
                            "class_info": rng.random(t).astype(np.float32).tolist()}
                        for e in meta[video]["expressions"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(store, path)


def make_png_tree(root: Path, meta: Dict[str, dict], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for video, entry in meta.items():
        h, w = entry["size"]
        for exp_id in entry["expressions"]:
            folder = root / video / exp_id
            folder.mkdir(parents=True)
            for frame in entry["frames"]:
                save_binary_png(folder / f"{frame}.png", rng.random((h, w)) > 0.5)


def make_frames(root: Path, meta: Dict[str, dict], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for video, entry in meta.items():
        h, w = entry["size"]
        (root / video).mkdir(parents=True)
        for frame in entry["frames"]:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / video / f"{frame}.jpg")


def make_world(root: Path, videos: int = 4) -> Dict[str, dict]:
    """meta.json, frames/, stores a.pth, b.pth, c.pth and the PNG tree d/ under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    meta = make_meta(root, videos)
    for seed, name in enumerate("abc"):
        make_pth(root / f"{name}.pth", meta, seed)
    make_png_tree(root / "d", meta, 3)
    make_frames(root / "frames", meta, 4)
    return meta


RECIPE = """\
meta: meta.json
frames: frames
sources:
  a: {type: pth, path: a.pth}
  b: {type: pth, path: b.pth}
  c: {type: pth, path: c.pth}
  d: {type: png, path: d}
rounds:
  - name: first
    op: vote
    inputs: [a, b, c]
    grouping: consecutive_pairs
    min_votes: half
    key_frame: {rule: product, inputs: [a, b, c]}
  - name: second
    op: vote
    inputs: [first, d, a]
    min_votes: majority
"""
