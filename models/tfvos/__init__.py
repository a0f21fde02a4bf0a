"""TFVOS (Yan et al., ACM MM 2024, "Tracking-forced Referring Video Object Segmentation"; code: jsjei/TF2): the
ReferFormer core conditioned on a prompt, the previous frame's image masked by its mask, read by a second
cross-attention in every decoder layer. It adds no parameter: its checkpoints have exactly ReferFormer's keys.
``model.py`` holds the model; the prompt frames of training are made by ``datasets.prompt_frames`` and the
key-frame inference by ``predict.keyframe``."""
from ..variants import Variant

# Target keys of a training batch that carry each sample's prompt clip, padded by ``datasets.collate`` (frames
# [T, 3, H, W] and padding mask [T, H, W]).
PROMPT_FRAMES_KEY = "prompt_frames"
PROMPT_MASK_KEY = "prompt_mask"


def add_arguments(parser) -> None:
    parser.add_argument('--tfvos_own_prompt_valid_ratios', action='store_true',
                        help="TFVOS: scale the decoder's reference points over the prompt memory by the prompt's own "
                             "valid ratios (the original uses the frames': a quirk, reproduced by default, that only "
                             "matters when prompts are padded differently from their frames)")
    parser.add_argument('--tfvos_independent_prompt_transform', action='store_true',
                        help="TFVOS training: draw the prompt frames' random flip / resize / crop independently of "
                             "their clip, as the original dataset (default: the clip's own transform)")


VARIANT = Variant(
    name="tfvos",
    builder="rvos.models.tfvos.model:build",
    add_arguments=add_arguments,
    parameter_layout="referformer",
    prompt_frames=True,
)
