"""Sources normalised on load: I23 .pth (logits / probabilities, chunks), our --save_logits npz, PNG trees; missing
videos / expressions / frames are named errors."""
import io

import numpy as np
import pytest
import torch

from ensemble_world import make_meta, make_pth
from rvos.ensemble.sources import (MissingPrediction, NpzSource, PngSource, PthSource, SourceError,
                                   upsample_probabilities)
from rvos.predict.postprocess import ExpressionOutput
from rvos.predict.writers import save_binary_png, write_atomic


def test_pth_logits_and_probabilities(tmp_path):
    meta = make_meta(tmp_path, videos=1)
    make_pth(tmp_path / "s.pth", meta, 0)
    raw = torch.load(tmp_path / "s.pth", weights_only=True)["v00"]["0"]
    logits = PthSource("s", tmp_path / "s.pth", "logits").load_video("v00", meta["v00"])["0"]
    np.testing.assert_array_equal(logits.probs, raw["mask_logits"].sigmoid().numpy())
    np.testing.assert_array_equal(logits.scores, np.array(raw["class_info"]))
    probs = PthSource("s", tmp_path / "s.pth", "probabilities").load_video("v00", meta["v00"])["0"]
    np.testing.assert_array_equal(probs.probs, raw["mask_logits"].numpy())
    assert (logits.kind, probs.kind) == ("logits", "probabilities")


def test_pth_chunks_any_order_and_missing_video(tmp_path):
    meta = make_meta(tmp_path, videos=4)
    make_pth(tmp_path / "whole.pth", meta, 0)
    whole = torch.load(tmp_path / "whole.pth", weights_only=True)
    (tmp_path / "chunks").mkdir()
    torch.save({v: whole[v] for v in ["v03", "v00"]}, tmp_path / "chunks/s0.pth")
    torch.save({v: whole[v] for v in ["v02"]}, tmp_path / "chunks/s1.pth")
    chunked = PthSource("s", tmp_path / "chunks", "logits")
    for video in ["v00", "v02", "v03"]:
        got = chunked.load_video(video, meta[video])
        assert sorted(got) == sorted(meta[video]["expressions"])
        for exp_id, entry in got.items():
            np.testing.assert_array_equal(entry.probs, whole[video][exp_id]["mask_logits"].sigmoid().numpy())
    with pytest.raises(MissingPrediction, match="source s .*has no video v01"):
        chunked.load_video("v01", meta["v01"])


def test_pth_frame_count_mismatch_and_pickled_object_are_named(tmp_path):
    meta = make_meta(tmp_path, videos=1, frames=3)
    torch.save({"v00": {"0": {"mask_logits": torch.zeros(2, 12, 16), "class_info": [0.1, 0.2]}}}, tmp_path / "s.pth")
    with pytest.raises(MissingPrediction, match="2 frames, the meta lists 3"):
        PthSource("s", tmp_path / "s.pth", "logits").load_video("v00", meta["v00"])
    torch.save({"v00": {"0": {"mask_logits": torch.zeros(3, 12, 16), "class_info": object}}}, tmp_path / "bad.pth")
    with pytest.raises(SourceError, match="bad.pth"):
        PthSource("s", tmp_path / "bad.pth", "logits").index()


def test_npz_store_upsampled_as_post_processing_does(tmp_path):
    """Up to the float16 rounding of the store: logits within +-6, which float16 probabilities still resolve."""
    torch.manual_seed(0)
    masks = (torch.randn(3, 5, 6, 8) * 3).clamp(-6, 6)
    output = ExpressionOutput(logits=torch.randn(3, 5, 1), masks=masks, input_size=(24, 32),
                              padded_size=(24, 32), orig_size=(45, 61))
    meta = {"frames": ["a", "b", "c"], "expressions": {"0": {}}}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask_probs=output.soft_masks().to(torch.float16).numpy(),
                        frame_scores=output.frame_scores().numpy(), frames=np.array(["a", "b", "c"]),
                        orig_size=np.array([45, 61]), input_size=np.array([24, 32]), format_version=np.array(1))
    write_atomic(tmp_path / "store/vid/0.npz", buffer.getvalue())
    got = NpzSource("n", tmp_path / "store").load_video("vid", meta)["0"]
    assert got.probs.shape == (3, 45, 61)
    np.testing.assert_allclose(got.probs, output.probabilities().numpy(), atol=1e-2)  # float16 store
    np.testing.assert_allclose(got.scores, output.frame_scores().numpy(), rtol=1e-6)


def test_upsample_keeps_size_and_range():
    up = upsample_probabilities(np.array([[[0.0, 1.0], [0.5, 0.25]]], dtype=np.float16), (4, 4))
    assert up.shape == (1, 4, 4) and up.dtype == np.float32 and up.min() >= 0 and up.max() <= 1


def test_png_tree_255_rule_and_missing_frame(tmp_path):
    meta = {"frames": ["00000", "00005"], "expressions": {"0": {}}}
    folder = tmp_path / "tree/vid/0"
    folder.mkdir(parents=True)
    save_binary_png(folder / "00000.png", np.eye(4, dtype=bool))
    from PIL import Image
    Image.fromarray(np.full((4, 4), 254, dtype=np.uint8), mode="L").save(folder / "00005.png")
    got = PngSource("p", tmp_path / "tree").load_video("vid", meta)["0"]
    np.testing.assert_array_equal(got.probs[0], np.eye(4, dtype=np.float32))
    assert got.probs[1].sum() == 0 and got.scores is None
    (folder / "00005.png").unlink()
    with pytest.raises(MissingPrediction, match="00005.png"):
        PngSource("p", tmp_path / "tree").load_video("vid", meta)


def test_pth_legacy_format_is_read_whole(tmp_path):
    """A store saved in torch's legacy (non-zip) format cannot be memory-mapped; it is read whole, same values."""
    meta = make_meta(tmp_path, videos=2)
    make_pth(tmp_path / "new.pth", meta, 0)
    torch.save(torch.load(tmp_path / "new.pth", weights_only=True), tmp_path / "old.pth",
               _use_new_zipfile_serialization=False)
    new, old = PthSource("n", tmp_path / "new.pth", "logits"), PthSource("o", tmp_path / "old.pth", "logits")
    for video in meta:
        for exp_id, entry in old.load_video(video, meta[video]).items():
            np.testing.assert_array_equal(entry.probs, new.load_video(video, meta[video])[exp_id].probs)


def write_npz(path, probs, scores, frames, orig_size=(8, 8)):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask_probs=probs, frame_scores=scores, frames=np.array(frames),
                        orig_size=np.array(orig_size), input_size=np.array(probs.shape[1:]), format_version=np.array(1))
    write_atomic(path, buffer.getvalue())


def test_damaged_or_inconsistent_npz_is_a_source_error_naming_the_file(tmp_path):
    meta = {"frames": ["a", "b"], "expressions": {"0": {}}}
    path = tmp_path / "store/vid/0.npz"
    write_npz(path, np.full((2, 4, 4), 0.75, np.float16), np.ones(2, np.float32), ["a", "b"])
    assert NpzSource("n", tmp_path / "store").load_video("vid", meta)["0"].probs.shape == (2, 8, 8)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SourceError, match=f"cannot read {path}"):
        NpzSource("n", tmp_path / "store").load_video("vid", meta)
    write_npz(path, np.full((1, 4, 4), 0.75, np.float16), np.ones(2, np.float32), ["a", "b"])
    with pytest.raises(SourceError, match=rf"{path} is inconsistent: mask_probs \[1, 4, 4\]"):
        NpzSource("n", tmp_path / "store").load_video("vid", meta)


def test_png_frame_of_another_size_is_named(tmp_path):
    meta = {"frames": ["00000", "00005"], "expressions": {"0": {}}}
    folder = tmp_path / "tree/vid/0"
    folder.mkdir(parents=True)
    save_binary_png(folder / "00000.png", np.eye(4, dtype=bool))
    save_binary_png(folder / "00005.png", np.eye(6, dtype=bool))
    with pytest.raises(SourceError, match=f"{folder / '00005.png'} is 6x6, the first frame of {folder} is 4x4"):
        PngSource("p", tmp_path / "tree").load_video("vid", meta)
