"""DsHmp (He and Ding, CVPR 2024): decoupled static and hierarchical motion perception, a Mask2Former / VITA model
rebuilt on our parts without detectron2. ``model.py`` holds the model, ``text.py`` the sentence decoupling,
``backbone.py`` the language-fused Swin, ``pixel_decoder.py`` / ``frame_decoder.py`` / ``motion.py`` the decoders,
``criterion.py`` / ``loss.py`` the losses and ``checkpoint.py`` the released checkpoints' loading rules."""
from ..variants import Variant


def add_arguments(parser) -> None:
    parser.add_argument('--dshmp_video_queries', default=10, type=int, help='DsHmp: video queries (VITA)')
    parser.add_argument('--dshmp_video_enc_layers', default=6, type=int,
                        help='DsHmp: hierarchical motion perception layers')
    parser.add_argument('--dshmp_video_dec_layers', default=3, type=int, help='DsHmp: video decoder layers')
    parser.add_argument('--dshmp_window', default=8, type=int, help='DsHmp: frames per motion window')
    parser.add_argument('--dshmp_frame_query_layers', default=3, type=int,
                        help='DsHmp: frame-decoder layers whose queries train the video module (LAST_LAYER_NUM)')
    parser.add_argument('--dshmp_text_tokens', default=40, type=int, help='DsHmp: token slots per sentence')
    parser.add_argument('--dshmp_run_chunk', default=18, type=int,
                        help='DsHmp inference: frames per backbone / frame-decoder chunk (TEST_RUN_CHUNK_SIZE)')
    parser.add_argument('--dshmp_interpolate_chunk', default=5, type=int,
                        help='DsHmp inference: frames per mask upsampling chunk (TEST_INTERPOLATE_CHUNK_SIZE)')
    parser.add_argument('--dshmp_output_threshold', default=0.5, type=float,
                        help='DsHmp inference on MeViS: keep every video query whose foreground probability exceeds '
                             'this (TEST_OUTPUT_THRESHOLD; the released yaml: 0.5)')
    parser.add_argument('--dshmp_mask_features', default='keep', choices=['keep', 'recompute'],
                        help="DsHmp inference: 'keep' the mask features of every frame until the video decoder ran "
                             "(the original; on the CPU beyond 36 frames) or 'recompute' them per chunk afterwards "
                             "(memory bounded by the chunk, the backbone runs twice)")
    parser.add_argument('--dshmp_train_points', default=12544, type=int, help='DsHmp: points per mask in the losses')
    parser.add_argument('--dshmp_oversample_ratio', default=3.0, type=float)
    parser.add_argument('--dshmp_importance_sample_ratio', default=0.75, type=float)
    parser.add_argument('--dshmp_no_object_weight', default=0.1, type=float)
    parser.add_argument('--dshmp_sim_weight', default=1.0, type=float, help='DsHmp: VITA similarity loss weight')
    parser.add_argument('--dshmp_contrastive_weight', default=0.3, type=float)
    parser.add_argument('--dshmp_contrastive_warmup', default=2000, type=int,
                        help='DsHmp: optimiser steps over which the contrastive weight rises linearly from 0')
    parser.add_argument('--dshmp_contrastive_samples', default=100, type=int,
                        help='DsHmp: memory-bank rows per contrastive loss (positives + negatives)')
    parser.add_argument('--dshmp_memory_slots', default=23051, type=int,
                        help='DsHmp: contrastive memory-bank rows, one per training expression (MeViS v1 train: '
                             '23051, the released checkpoint)')
    parser.add_argument('--dshmp_frame_range', default=10, type=int,
                        help='DsHmp training: frames are drawn within this distance of a reference frame '
                             '(SAMPLING_FRAME_RANGE)')
    parser.add_argument('--dshmp_flip_swaps_caption', action='store_true',
                        help="DsHmp training: swap left/right in the sentence of a flipped clip (the original flips "
                             "the frames only: reproduced by default)")
    parser.add_argument('--dshmp_exact_refer_groups', action='store_true',
                        help='DsHmp training: group expressions by their object sets (the original concatenates the '
                             'object ids as text, so [1, 12] and [11, 2] collide: reproduced by default)')
    parser.add_argument('--dshmp_spacy_model', default='en_core_web_sm',
                        help='DsHmp: spaCy pipeline giving the part-of-speech tags')
    parser.add_argument('--dshmp_fixed_track_order', action='store_true',
                        help='DsHmp: order motion tracks with the aligning permutation (the original applies its '
                             'inverse: a quirk the released numbers depend on, reproduced by default)')
    parser.add_argument('--dshmp_pad_with_pad_token', action='store_true',
                        help="DsHmp: pad token ids with <pad> (the original pads with 0 = <s>; reproduced by default)")
    parser.add_argument('--dshmp_fixed_pixel_std', action='store_true',
                        help='DsHmp: normalise with the ImageNet std (the released config divides blue by 57.37, not '
                             '57.375; reproduced by default)')


VARIANT = Variant(
    name="dshmp",
    builder="rvos.models.dshmp.model:build",
    # The original's optimiser: the backbone at 0.1 x the LR except its language-fusion modules (PWAM).
    option_defaults={"lr_backbone_names": ["backbone.patch_embed", "backbone.norm", ".blocks.", ".downsample.",
                                           "backbone.layers.0.res_gate", "backbone.layers.1.res_gate",
                                           "backbone.layers.2.res_gate"],
                     "backbone": "swin_t_p4w7", "backbone_config": {"drop_path_rate": 0.3}, "num_queries": 20,
                     "dec_layers": 9, "enc_layers": 6, "dropout": 0.0, "set_cost_mask": 5.0, "mask_loss_coef": 5.0,
                     "freeze_text_encoder": True, "num_frames": 8, "max_size": 768, "lr": 5e-5, "lr_backbone": 5e-6,
                     "weight_decay": 0.05, "clip_max_norm": 0.01, "sub_video_len": 0},
    add_arguments=add_arguments,
    architecture_options=("dshmp_video_queries", "dshmp_video_enc_layers", "dshmp_video_dec_layers",
                          "dshmp_memory_slots"),
    key_prefixes=("sem_seg_head.", "vita_module.", "vita_criterion."),
    inference_short_side=448,
    uses_referformer_core=False,
)
