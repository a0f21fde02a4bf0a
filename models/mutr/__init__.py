"""MUTR (Yan et al., AAAI 2024) and its MeViS-2024 fork: multi-scale temporal aggregation of the text (MTA) and
the multi-object temporal interaction module (MTI) on the ReferFormer core. ``model.py`` holds the model,
``mti.py`` the temporal interaction module."""
from ..variants import Variant


def add_arguments(parser) -> None:
    parser.add_argument('--mutr_fixed_inference', action='store_true',
                        help='MUTR: predict from the last decoder layer at inference (the original uses the first: a '
                             'quirk the published numbers depend on, reproduced by default)')
    parser.add_argument('--mutr_batch_time_mixing', default='train', choices=['train', 'always', 'never'],
                        help="MUTR: when the original's mixing of the frames of different videos of a batch inside "
                             "MTI happens ('train': in training only, as the public checkpoints were trained)")
    parser.add_argument('--mutr_ffn_dim', default=2048, type=int,
                        help='MUTR: MTA/MTI feed-forward width (hard-coded 2048)')


VARIANT = Variant(
    name="mutr",
    builder="rvos.models.mutr.model:build",
    option_defaults={"lr_backbone": 6e-6},
    add_arguments=add_arguments,
    architecture_options=("mutr_ffn_dim",),
    # Tapall, the MeViS-2024 fork of MUTR, adds sub_video_len / no_sampling to MUTR's options.
    legacy_options=("use_fp16", "model_ckpt", "test_num_ckpt", "sub_video_len", "no_sampling"),
    key_prefixes=("MTA.", "mti."),
    inference_short_side=432,
)
