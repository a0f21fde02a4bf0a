"""SgMg (Miao et al., ICCV 2023): spectrum-guided fusion and multi-granularity mask refinement on the ReferFormer
core. ``model.py`` holds the model, ``modules.py`` its blocks, ``criterion.py`` its low-resolution mask losses."""
from ..variants import Variant


def add_arguments(parser) -> None:
    parser.add_argument('--text_backbone', default='Roberta', type=str, help='SgMg name; only Roberta exists')


VARIANT = Variant(
    name="sgmg",
    builder="rvos.models.sgmg.model:build",
    option_defaults={"controller_layers": 2, "dynamic_mask_channels": 16},
    add_arguments=add_arguments,
    legacy_options=("text_backbone", "output_levels", "amp", "exp_name", "current_epoch", "set_cost_boundary",
                    "boundary_loss_coef"),
    key_prefixes=("input_fft.", "input_fft_post.", "mask_refine.", "text_encoder.text_backbone.", "text_proj.",
                  "sentence_proj."),
)
