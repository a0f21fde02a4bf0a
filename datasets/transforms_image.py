"""The RefCOCO image pipelines (pretraining with T = 1, DATASETS.md §6.3), built from the clip transforms.

An image is a one-frame clip, so the same transforms apply; only the scales differ from the video
pipeline and there is no photometric distortion.
"""
from rvos.datasets.transforms_video import (CROP_MAX, CROP_MIN, CROP_PRE_SCALES, VAL_MAX_SIZE, VAL_SHORT_SIDE, Check,
                                       Compose, RandomHorizontalFlip, RandomResize, RandomSelect, RandomSizeCrop,
                                       ToNormalizedTensor)

IMAGE_SCALES = tuple(range(480, 769, 32))
IMAGE_MAX_SIZE = 800
CROP_FINAL_SCALES = (296, 328, 360, 392, 416, 448, 480, 512)
CROP_FINAL_MAX_SIZE = 640


def make_image_transforms(image_set: str, legacy_caption_flip: bool = False) -> Compose:
    """train: flip -> RandomSelect(resize 480..768 max 800 | resize 400-600, crop 384-600, resize 296..512
    max 640) -> Check -> tensor [1, 3, H, W]. Any other split: resize 360 (max 640) -> tensor.

    ``Check`` marks the object invalid when a crop removes its box (the original drops the box and the
    dataset then resamples, which is the same outcome).
    """
    if image_set != "train":
        return Compose([RandomResize([VAL_SHORT_SIDE], max_size=VAL_MAX_SIZE), ToNormalizedTensor()])
    return Compose([
        RandomHorizontalFlip(legacy_caption_flip=legacy_caption_flip),
        RandomSelect(
            Compose([RandomResize(IMAGE_SCALES, max_size=IMAGE_MAX_SIZE), Check()]),
            Compose([
                RandomResize(CROP_PRE_SCALES),
                RandomSizeCrop(CROP_MIN, CROP_MAX),
                RandomResize(CROP_FINAL_SCALES, max_size=CROP_FINAL_MAX_SIZE),
                Check(),
            ]),
        ),
        ToNormalizedTensor(),
    ])
