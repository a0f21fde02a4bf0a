"""Convert a checkpoint (public ``.pth`` or one of ours) into a folder that loads without unpickling anything.

    python tools/convert_checkpoint.py ytvos_swin_tiny.pth ytvos_swin_tiny/

The folder has the Hugging Face layout: ``config.json`` (the model options: this project's config, or the public
checkpoint's pickled ``args`` as plain JSON; the variant as ``model_type``) and ``model.safetensors`` (the
weights, bit for bit). ``main.py --resume / --pretrained_weights``, ``inference.py --resume``,
``Predictor.from_pretrained`` and ``tools/zoo.py identify`` take the folder wherever they take the ``.pth``.
Training state (optimiser, scheduler, sampler) is not converted: continue a training run from the ``.pth``.

The folder is read back and compared with the input, tensor by tensor and bit by bit, before the command succeeds
(``--no-verify`` skips it).
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rvos.models.checkpoint import (CONFIG_FILE, WEIGHTS_FILE, CheckpointError, read_checkpoint,  # noqa: E402
                                    write_checkpoint_folder)

logger = logging.getLogger("convert_checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="the .pth checkpoint to convert")
    parser.add_argument("output", type=Path, help="the folder to write (config.json, model.safetensors)")
    parser.add_argument("--force", action="store_true", help="replace a converted checkpoint already in the folder")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="do not read the folder back to compare it with the input")
    return parser


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors have the same dtype, shape and bytes (NaNs included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def differences(original: dict, converted: dict) -> list:
    """What differs between two state dicts (names, dtypes, shapes or bits)."""
    problems = [f"missing {k}" for k in original if k not in converted]
    problems += [f"unexpected {k}" for k in converted if k not in original]
    problems += [f"{k}: {original[k].dtype} {tuple(original[k].shape)} -> {converted[k].dtype} "
                 f"{tuple(converted[k].shape)} (bits differ)"
                 for k in original if k in converted and not same_bits(original[k], converted[k])]
    return problems


def convert(checkpoint: Path, output: Path, force: bool = False, verify: bool = True) -> Path:
    """Write the folder of ``checkpoint`` at ``output`` and return it; CheckpointError when it cannot."""
    if (output / CONFIG_FILE).exists() or (output / WEIGHTS_FILE).exists():
        if not force:
            raise CheckpointError(f"{output} already holds a converted checkpoint; pass --force to replace it")
    if output.exists() and not output.is_dir():
        raise CheckpointError(f"{output} exists and is not a folder")
    ckpt = read_checkpoint(checkpoint)
    write_checkpoint_folder(ckpt, output, source=str(checkpoint))
    if verify:
        problems = differences(ckpt["model"], read_checkpoint(output)["model"])
        if problems:
            raise CheckpointError(f"{output} does not read back as {checkpoint}: " + "; ".join(problems[:10]))
    dropped = sorted(k for k in ckpt if k not in ("model", "config", "args", "epoch"))
    logger.info("wrote %s (%d tensors%s)%s", output, len(ckpt["model"]), ", verified bit for bit" if verify else "",
                f"; not converted (training state): {', '.join(dropped)}" if dropped else "")
    return output


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.checkpoint, args.output, force=args.force, verify=args.verify)
    except CheckpointError as err:
        logger.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
