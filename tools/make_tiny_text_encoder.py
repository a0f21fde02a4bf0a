"""Write a tiny, randomly initialised RoBERTa text encoder folder (config, tokenizer, weights).

Real RoBERTa weights cannot be downloaded everywhere; the tiny configs (tests, quickstart,
CPU benchmarks) use this instead: a byte-level BPE tokenizer trained on a built-in list of
referring-expression words (any text still tokenizes, byte by byte) and a small RoBERTa with
random weights, deterministic by seed.

    python tools/make_tiny_text_encoder.py --out data/tiny_text_encoder
"""
import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("make_tiny_text_encoder")

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
WORDS = {
    "articles": "a an the this that these those one two three four five six",
    "shapes": "circle circles square squares triangle triangles diamond diamonds star stars ring rings "
              "rectangle rectangles ellipse ellipses cross crosses hexagon hexagons shape shapes object objects",
    "colours": "red green blue yellow orange purple pink white black gray grey brown cyan magenta",
    "sizes": "small big large tiny little huge medium smaller bigger larger smallest biggest largest",
    "motion": "moving moves move going goes static still stationary standing fast slowly quickly slow "
              "up down left right upward downward leftward rightward towards away entering leaving",
    "position": "on in at of to from the left right top bottom middle center centre side corner near far "
                "above below behind front next between other first last",
    "people": "man woman person people dog cat car bike horse bird player shirt riding running walking "
              "jumping sitting holding wearing",
}


def corpus():
    words = " ".join(WORDS.values()).split()
    for size, colour, shape in itertools.product(WORDS["sizes"].split()[:4], WORDS["colours"].split(),
                                                  WORDS["shapes"].split()[:12]):
        yield f"the {size} {colour} {shape} moving left on the right"
    yield " ".join(words)


def write_tiny_text_encoder(out: Path, hidden: int = 48, layers: int = 2, heads: int = 4, ffn: int = 96,
                            max_positions: int = 64, vocab_size: int = 512, seed: int = 0) -> Path:
    """Create ``out`` with vocab.json, merges.txt, config.json and model.safetensors."""
    from safetensors.torch import save_file
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(corpus(), vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                                  show_progress=False)
    tokenizer.save_model(str(out))
    config = RobertaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=max_positions,
                           type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    config_dict = json.loads(config.to_json_string())
    (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True))
    torch.manual_seed(seed)
    model = RobertaModel(config, add_pooling_layer=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    logger.info("wrote tiny text encoder (hidden %d, %d layers, vocab %d) to %s", hidden, layers,
                config.vocab_size, out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=96)
    parser.add_argument("--max_positions", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_tiny_text_encoder(args.out, args.hidden, args.layers, args.heads, args.ffn, args.max_positions, seed=args.seed)


if __name__ == "__main__":
    main()
