"""Category vocabularies of the benchmarks whose training labels are object categories.

Both lists are in alphabetical order and a category's label is its position in the list
(Ref-YouTube-VOS: 65 classes, Ref-DAVIS17: 78 classes, as in the ReferFormer family).
MeViS, A2D-Sentences and JHMDB-Sentences use the single label 0; RefCOCO uses COCO ids.
"""
from typing import Dict, Mapping

YTVOS_CATEGORIES = (
    "airplane", "ape", "bear", "bike", "bird", "boat", "bucket", "bus", "camel", "cat", "cow", "crocodile",
    "deer", "dog", "dolphin", "duck", "eagle", "earless_seal", "elephant", "fish", "fox", "frisbee", "frog",
    "giant_panda", "giraffe", "hand", "hat", "hedgehog", "horse", "knife", "leopard", "lion", "lizard",
    "monkey", "motorbike", "mouse", "others", "owl", "paddle", "parachute", "parrot", "penguin", "person",
    "plant", "rabbit", "raccoon", "sedan", "shark", "sheep", "sign", "skateboard", "snail", "snake", "snowboard",
    "squirrel", "surfboard", "tennis_racket", "tiger", "toilet", "train", "truck", "turtle", "umbrella", "whale",
    "zebra",
)

DAVIS_CATEGORIES = (
    "airplane", "backpack", "ball", "bear", "bicycle", "bird", "boat", "bottle", "box", "bus", "camel", "car",
    "carriage", "cat", "cellphone", "chamaleon", "cow", "deer", "dog", "dolphin", "drone", "elephant",
    "excavator", "fish", "goat", "golf cart", "golf club", "grass", "guitar", "gun", "helicopter", "horse",
    "hoverboard", "kart", "key", "kite", "koala", "leash", "lion", "lock", "mask", "microphone", "monkey",
    "motorcycle", "oar", "paper", "paraglide", "person", "pig", "pole", "potted plant", "puck", "rack", "rhino",
    "rope", "sail", "scale", "scooter", "selfie stick", "sheep", "skateboard", "ski", "ski poles", "snake",
    "snowboard", "stick", "stroller", "surfboard", "swing", "tennis racket", "tractor", "trailer", "train",
    "truck", "turtle", "varanus", "violin", "wheelchair",
)

ytvos_category_dict: Dict[str, int] = {name: i for i, name in enumerate(YTVOS_CATEGORIES)}
davis_category_dict: Dict[str, int] = {name: i for i, name in enumerate(DAVIS_CATEGORIES)}


def category_label(vocabulary: Mapping[str, int], name: str, source: str) -> int:
    """The label of category ``name``; ``source`` (file and video) is named in the error if it is unknown."""
    try:
        return vocabulary[name]
    except KeyError:
        raise ValueError(f"{source}: unknown category {name!r}; expected one of {sorted(vocabulary)}") from None
