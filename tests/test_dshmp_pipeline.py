"""DsHmp through the shared scripts on the synthetic MeViS world: 2-process DDP training (gloo, memory bank
all-gathered), then inference.py writing zero, one or several objects per expression, scored by tools/evaluate.py."""
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rvos import opts
from rvos.datasets.synthetic import make_dataset
from rvos.predict import build_benchmark
from rvos.predict.engine import InferenceEngine
from rvos.predict.loading import load_video
from rvos.predict.model import build_inference_model

from train_support import REPO_ROOT, run_checked

CONFIG = REPO_ROOT / "configs" / "tiny" / "dshmp_tiny_synthetic.yaml"
HEIGHT, WIDTH = 96, 128
ABSENT_EXP_ID = "99"
GATHER_SCRIPT = '''
import sys, torch, torch.distributed as dist
from rvos.models.dshmp.criterion import MemoryBank
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
bank = MemoryBank(num_features=4, num_slots=6, num_samples=3)
bank.update(torch.tensor([rank * 2, rank * 2 + 1]), torch.full((2, 4), float(rank + 1)))
torch.save(bank.features, sys.argv[1] + f"/bank{rank}.pt")
dist.destroy_process_group()
'''


@pytest.fixture(scope="module", autouse=True)
def spacy_tagger():
    """DsHmp tags the sentences with spaCy, an optional extra (installed in CI): without it these tests skip."""
    from rvos.models.dshmp.text import SpacyTagger, TaggerUnavailable
    try:
        SpacyTagger()("a dog")
    except TaggerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("dshmp_world")
    run_checked([sys.executable, "tools/make_tiny_text_encoder.py", "--out", str(base / "text_encoder")])
    root = make_dataset("mevis", base / "mevis", seed=1, num_videos=2, num_valid_u_videos=1, num_valid_videos=1,
                        num_frames=6, min_frames=5, height=HEIGHT, width=WIDTH)
    meta_path = root / "valid_u" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    video = next(iter(meta["videos"].values()))
    video["expressions"][ABSENT_EXP_ID] = {"exp": "the purple giraffe", "obj_id": [], "anno_id": []}
    meta_path.write_text(json.dumps(meta))
    return {"text_encoder": base / "text_encoder", "mevis": root}


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("dshmp_train")
    run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main.py",
                 "--config", str(CONFIG), "--text_encoder", str(world["text_encoder"]), "--mevis_path",
                 str(world["mevis"]), "--num_workers", "0", "--epochs", "1", "--max_iters_per_epoch", "2",
                 "--msda_impl", "pytorch", "--output_dir", str(out)], timeout=400)
    assert (out / "checkpoint.pth").is_file()
    log = (out / "log.txt").read_text()
    assert '"train_loss_con_sim_unscaled"' in log
    return out / "checkpoint.pth"


def test_memory_bank_update_is_gathered_across_processes(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 str(script), str(tmp_path)], timeout=200)
    torch.manual_seed(0)
    initial = torch.randn(6, 4)
    banks = [torch.load(tmp_path / f"bank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(banks[0], banks[1])
    for rank in range(2):
        rows = [rank * 2, rank * 2 + 1]
        assert torch.allclose(banks[0][rows], 0.1 * initial[rows] + 0.9 * (rank + 1))
    assert torch.equal(banks[0][4:], initial[4:])


def inference_args(checkpoint: Path, world, out: Path, *extra: str):
    return ["--resume", str(checkpoint), "--text_encoder", str(world["text_encoder"]), "--device", "cpu",
            "--msda_impl", "pytorch", "--num_workers", "0", "--dataset_file", "mevis", "--mevis_path",
            str(world["mevis"]), "--split", "valid_u", "--test_short_side", str(HEIGHT), "--output_dir", str(out),
            *extra]


def engine_outputs(checkpoint: Path, world, tmp_path: Path):
    """In-process: {exp_id: [(window, ExpressionOutput), ...]} with every video query kept, as inference.py runs."""
    from inference import build_parser  # the entry point's parser (with the inference options)

    args = opts.parse_args(inference_args(checkpoint, world, tmp_path, "--dshmp_output_threshold", "-1"),
                           build_parser())
    model, _ = build_inference_model(args)
    benchmark = build_benchmark(args)
    job = benchmark.jobs()[0]
    with ThreadPoolExecutor(1) as pool:
        video = load_video(job, benchmark, HEIGHT, None, pool)
    collected = {}
    engine = InferenceEngine(model, torch.device("cpu"), multi_object=True)
    engine.run(job, video, set(range(len(job.expressions))),
               lambda window, exp, output: collected.setdefault(job.expressions[exp].exp_id, []).append(
                   (window, output)))
    return job, video, collected


def query_masks(parts, queries) -> np.ndarray:
    """[T, H0, W0] OR of the given queries' masks (each thresholded at the original size)."""
    import dataclasses
    frames = max(max(w.positions) for w, _ in parts) + 1
    out = None
    for window, output in parts:
        masks = (dataclasses.replace(output, union=tuple(queries)).probabilities() > 0.5).numpy()
        if out is None:
            out = np.zeros((frames, *masks.shape[1:]), dtype=bool)
        out[list(window.positions)] = masks
    return out


def read_pngs(folder: Path, names) -> np.ndarray:
    return np.stack([np.array(Image.open(folder / f"{n}.png")) > 0 for n in names])


def test_mevis_inference_zero_one_or_several_objects_and_evaluation(checkpoint, world, tmp_path):
    """inference.py runs with this process's thread count: the in-process masks it must equal come from the same
    float32 arithmetic (another thread count rounds differently and can flip DsHmp's near-tied track order)."""
    job, video, outputs = engine_outputs(checkpoint, world, tmp_path / "engine")
    meta = json.loads((world["mevis"] / "valid_u" / "meta_expressions.json").read_text())["videos"][job.name]
    two = next(e for e, x in meta["expressions"].items() if len(x["obj_id"]) == 2)
    parts = outputs[two]
    scores = torch.sigmoid(parts[0][1].logits[0, :, 0])
    order = scores.argsort(descending=True).tolist()
    expected_pair = query_masks(parts, order[:2])
    singles = [query_masks(parts, [q]) for q in order[:2]]
    assert expected_pair.any() and not all(np.array_equal(expected_pair, s) for s in singles)
    threshold = float((scores[order[1]] + scores[order[2]]) / 2)

    names = video.frame_names
    runs = {"none": tmp_path / "none", "pair": tmp_path / "pair"}
    run_checked([sys.executable, "inference.py", *inference_args(checkpoint, world, runs["none"],
                                                                 "--dshmp_output_threshold", "1.0")],
                timeout=300, threads=torch.get_num_threads())
    run_checked([sys.executable, "inference.py", *inference_args(checkpoint, world, runs["pair"],
                                                                 "--dshmp_output_threshold", f"{threshold:.9f}")],
                timeout=300, threads=torch.get_num_threads())
    annotations = {k: v / "valid_u" / "Annotations" / job.name for k, v in runs.items()}
    for exp_id in meta["expressions"]:
        assert not read_pngs(annotations["none"] / exp_id, names).any(), exp_id
    assert np.array_equal(read_pngs(annotations["pair"] / two, names), expected_pair)

    results = {}
    for key, run in runs.items():
        out = tmp_path / f"{key}.json"
        run_checked([sys.executable, "tools/evaluate.py", "--protocol", "mevis", "--mevis-root",
                     str(world["mevis"] / "valid_u"), "--results", str(run / "valid_u" / "Annotations"), "--output",
                     str(out)])
        results[key] = json.loads(out.read_text())
    none = results["none"]["per_expression"]
    assert none[f"{job.name}_{ABSENT_EXP_ID}"] == [1.0, 1.0]  # nothing to find, nothing found
    assert none[f"{job.name}_{two}"][0] == 0.0
    assert results["none"]["n_expressions"] == len(meta["expressions"])
    j, f = results["pair"]["per_expression"][f"{job.name}_{two}"]
    assert 0.0 <= j <= 1.0 and 0.0 <= f <= 1.0
