"""The bottom layer: helpers that know nothing of models, data or benchmarks. Padded batches and tensor helpers
(``misc``), boxes (``box_ops``), COCO RLE (``rle``), frames and videos on disk (``video_io``), torch.distributed
(``dist``), logging (``logger``), random state (``rng``), the optimiser and schedule (``optim``), training
checkpoints' contents (``train_state``) and run provenance (``env_info``). Imports nothing of the project.
"""
