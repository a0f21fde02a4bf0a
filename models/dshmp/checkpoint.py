"""Loading rules of DsHmp's initialisation: the COCO Mask2Former Swin-T checkpoint (``model_final_86143f.pkl``).

The original prepares it with ``tools/process_ckpt.py`` (a separate step): the frame queries ``query_embed`` and
``static_query`` are cut to their first 20 rows; its decoder's ``_load_from_state_dict`` renames ``static_query`` to
``query_feat`` for checkpoints of the old Mask2Former layout; detectron2 then skips, with a warning, whatever does
not fit (the 81-class heads) and leaves DsHmp's own modules at their initialisation. Here the same happens at load
time, with a log line, and the modules left fresh are the documented ones only (anything else is a mismatch).
"""
import logging
from typing import Dict, Iterable, Tuple

import torch

logger = logging.getLogger(__name__)

QUERY_KEYS = ("sem_seg_head.predictor.query_feat.weight", "sem_seg_head.predictor.query_embed.weight")
OLD_QUERY_NAME = ("static_query", "query_feat")
# Keys of the COCO checkpoint that do not fit DsHmp (81 classes) and are left at their initialisation.
COCO_ONLY = ("sem_seg_head.predictor.class_embed.", "criterion.empty_weight")
# What DsHmp adds to Mask2Former: fresh when starting from a Mask2Former checkpoint (the text encoder is loaded
# from --text_encoder afterwards).
DSHMP_MODULES = ("text_encoder.", "resizer.", "vita_module.", "vita_criterion.", "criterion.empty_weight",
                 "sem_seg_head.predictor.class_embed.", "sem_seg_head.predictor.cross_static.",
                 "sem_seg_head.predictor.cross_test.", "sem_seg_head.predictor.fusion_layers.")
STAGE_MODULES = (".fusion.", ".res_gate.")


def is_mask2former_layout(state: Dict[str, torch.Tensor]) -> bool:
    """A Mask2Former checkpoint (COCO initialisation) rather than a DsHmp one."""
    return not any(k.startswith("vita_module.") for k in state)


def added_modules(model_keys: Iterable[str]) -> Tuple[str, ...]:
    """The key prefixes of DsHmp's own modules in ``model_keys`` (PWAM and gates of every backbone stage included)."""
    stages = sorted({k.split(module)[0] + module for k in model_keys if k.startswith("backbone.layers.")
                     for module in STAGE_MODULES if module in k})
    return DSHMP_MODULES + tuple(stages)


def adapt_mask2former_state(state: Dict[str, torch.Tensor], num_queries: int, model_keys: Iterable[str]
                            ) -> Tuple[Dict[str, torch.Tensor], Tuple[str, ...]]:
    """(state for DsHmp, key prefixes left at their initialisation) of a Mask2Former checkpoint."""
    renamed = {}
    for key, value in state.items():
        if OLD_QUERY_NAME[0] in key:
            logger.info("renamed %s -> %s (old Mask2Former layout)", key, key.replace(*OLD_QUERY_NAME))
            key = key.replace(*OLD_QUERY_NAME)
        if key.startswith(COCO_ONLY):
            logger.info("skipped %s %s: the COCO class head does not fit DsHmp", key, list(value.shape))
            continue
        renamed[key] = value
    for key in QUERY_KEYS:
        if key in renamed and renamed[key].shape[0] > num_queries:
            logger.info("truncated %s from %d to its first %d rows (the frame queries; the original's "
                        "tools/process_ckpt.py)", key, renamed[key].shape[0], num_queries)
            renamed[key] = renamed[key][:num_queries].clone()
    return renamed, added_modules(model_keys)
