"""SAM 2 as a mask-prompted propagator: the ``sam2`` package's video predictor (optional dependency).

The key frame's mask (binarised at 0.5, as SAM 2 takes it) is the prompt; the predictor tracks it forward to the
last frame, then, with its tracking state reset and the prompt added again, backward to frame 0 (a fresh engine
per direction, as the ICCV-2023 AOT refinement does, so neither direction sees the other's frames). The output is
the sigmoid of SAM 2's mask logits at the frame size.

The model is built from a SAM 2 config (a YAML file, or the name of one shipped in the package such as
``configs/sam2.1/sam2.1_hiera_t.yaml``) with the overrides of ``sam2.build_sam.build_sam2_video_predictor``, and
its weights from a checkpoint (``{"model": state_dict}``, the released ``.pt`` files), on first use.
"""
import importlib.resources
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from rvos.ensemble.propagate.base import Propagator

INSTALL_HINT = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 (see requirements-extras.txt)"
JPEG_QUALITY = 95


def _import_sam2():
    try:
        import sam2.sam2_video_predictor  # noqa: F401
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except ImportError as error:
        raise ImportError(f"the 'sam2' propagator needs the sam2 package ({error}): {INSTALL_HINT}") from error
    return instantiate, OmegaConf


def _video_predictor_overrides(fill_hole_area: int):
    """The dotlist ``build_sam2_video_predictor`` applies (apply_postprocessing=True), fill_hole_area ours."""
    return [
        "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "model.binarize_mask_from_pts_for_mem_enc=true",
        f"model.fill_hole_area={fill_hole_area}",
    ]


class Sam2Propagator(Propagator):
    """Spec ``{"type": "sam2", "config": YAML file or packaged config name, "checkpoint": .pt file,
    "device": "auto" | "cpu" | "cuda" | "cuda:N", "fill_hole_area": int}``.

    ``fill_hole_area`` (default 8, as ``build_sam2_video_predictor``) needs the sam2 CUDA extension; without it
    sam2 warns and skips the hole filling. ``device`` "auto": CUDA when available.
    """

    name = "sam2"
    supports_tta = True

    def __init__(self, config: str, checkpoint: str, device: str = "auto", fill_hole_area: int = 8):
        _import_sam2()
        self.config = self._config_path(config)
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ValueError(f"sam2: checkpoint {self.checkpoint} does not exist")
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, int) or fill_hole_area < 0:
            raise ValueError(f"sam2: fill_hole_area must be an int >= 0, got {fill_hole_area!r}")
        self.device = device
        self.fill_hole_area = fill_hole_area
        self._predictor = None

    @staticmethod
    def _config_path(config: str) -> Path:
        path = Path(config)
        if path.is_file():
            return path
        packaged = Path(str(importlib.resources.files("sam2"))) / config
        if packaged.is_file():
            return packaged
        raise ValueError(f"sam2: config {config!r} is neither a file nor a config of the sam2 package "
                         f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml)")

    def _torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def predictor(self):
        """The SAM2VideoPredictor (eval mode), built and loaded on first call."""
        if self._predictor is None:
            import torch

            instantiate, OmegaConf = _import_sam2()
            config = OmegaConf.merge(OmegaConf.load(self.config),
                                     OmegaConf.from_dotlist(_video_predictor_overrides(self.fill_hole_area)))
            OmegaConf.resolve(config)
            model = instantiate(config.model, _recursive_=True)
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "model" not in state:
                raise ValueError(f"sam2: checkpoint {self.checkpoint} has no 'model' state dict")
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as err:
                raise ValueError(f"sam2: checkpoint {self.checkpoint} does not fit config {self.config}: {err}") from err
            self._predictor = model.to(self._torch_device()).eval()
        return self._predictor

    def __getstate__(self):
        """Pickled (for worker processes) without the model; each process loads its own."""
        return {**self.__dict__, "_predictor": None}

    def _propagate(self, frames: np.ndarray, key_index: int, key_mask: np.ndarray, text: Optional[str]) -> np.ndarray:
        import torch

        predictor = self.predictor()
        out = np.zeros(frames.shape[:3], dtype=np.float32)
        with tempfile.TemporaryDirectory(prefix="rvos_sam2_") as folder, torch.inference_mode():
            for index, frame in enumerate(frames):
                Image.fromarray(frame).save(Path(folder) / f"{index:05d}.jpg", quality=JPEG_QUALITY)
            state = predictor.init_state(folder)
            for reverse in (False, True):
                predictor.reset_state(state)
                predictor.add_new_mask(state, frame_idx=key_index, obj_id=1, mask=key_mask > 0.5)
                for index, _, logits in predictor.propagate_in_video(state, start_frame_idx=key_index,
                                                                     reverse=reverse):
                    out[index] = torch.sigmoid(logits[0, 0].float()).cpu().numpy()
        return out
