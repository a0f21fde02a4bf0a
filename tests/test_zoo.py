"""The model zoo (configs/zoo.yaml, tools/zoo.py): the file is valid and agrees with the recipes; ``identify`` names
every public architecture from a real checkpoint file holding its manifest's names and shapes (TFVOS and ReferFormer
told apart by their recorded options), says what differs for the fixture checkpoints, and recognises our own;
``reproduce`` runs inference and evaluation on the synthetic world from a temporary zoo of tiny checkpoints."""
import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml

from rvos import opts
from rvos.datasets.synthetic import make_dataset
from rvos.predict.zoo import ZooError, identify, load_zoo
from rvos.tools.evaluate import main as evaluate_main
from rvos.tools.zoo import main as zoo_main
from conftest import REFERENCE_DIR, checkpoint_manifests
from test_inference_fixtures import SHORT_SIDE, TINY_CONFIG, write_checkpoint, write_text_encoder

FAMILY_VARIANT = {"referformer": "referformer", "sgmg": "sgmg", "mutr": "mutr", "tapall": "mutr", "tfvos": "tfvos",
                  "dshmp": "dshmp"}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "int64": torch.int64,
          "int32": torch.int32, "uint8": torch.uint8, "bool": torch.bool}


@pytest.fixture(scope="module")
def zoo():
    return load_zoo()


def test_zoo_file_is_valid_and_listed(zoo, capsys):
    assert zoo.entries and len({e.id for e in zoo.entries}) == len(zoo.entries)
    assert {"referformer", "sgmg", "mutr"} <= {e.variant for e in zoo.entries}
    assert any(e.recorded_options.get("sub_video_len") == 30 for e in zoo.entries)  # the MeViS-2024 checkpoint
    assert zoo_main(["list"]) == 0
    printed = capsys.readouterr().out
    assert all(entry.id in printed for entry in zoo.entries)
    assert zoo_main(["list", "--json"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [e.id for e in zoo.entries]


def test_paper_numbers_agree_with_the_recipes(zoo):
    """Every number of an entry that is exactly a recipe (no option overrides) is the recipe's, and every recipe the
    zoo names with paper numbers has an entry reporting all of them."""
    compared, recipes = 0, {}
    for entry in zoo.entries:
        if entry.config is None or entry.options:
            continue
        recipe = opts.load_config(str(entry.config_path)).get("paper") or {}
        reported = {(b, m): v for b, metrics in entry.paper.items() if metrics for m, v in metrics.items()}
        wanted = {(b, m): v for b, metrics in recipe.items() for m, v in metrics.items()}
        for key in reported.keys() & wanted.keys():
            assert reported[key] == pytest.approx(wanted[key]), (entry.id, key)
            compared += 1
        recipes.setdefault(entry.config, []).append(wanted.keys() <= reported.keys())
    assert compared > 20
    assert all(any(complete) for complete in recipes.values()), [c for c, v in recipes.items() if not any(v)]


def test_malformed_zoo_is_named(tmp_path):
    good = yaml.safe_load((Path(load_zoo().path)).read_text())
    broken = dict(good, checkpoints=[dict(good["checkpoints"][0], paper={"ref_youtube_vos_valid": {"jnf": 1.0}})])
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ZooError, match=r"checkpoints\[0\].*unknown metric"):
        load_zoo(path)
    path.write_text(yaml.safe_dump(dict(good, checkpoints=[dict(good["checkpoints"][0], variant="nope")])))
    with pytest.raises(ZooError, match="variant 'nope'"):
        load_zoo(path)


def manifest_checkpoint(manifest: dict, path: Path) -> Path:
    """A real .pth with the manifest's names, shapes and dtypes (each tensor a broadcast view of one element, so
    the file is tiny) and, for the ReferFormer-layout families, the recorded options as a pickled Namespace."""
    state = {name: torch.zeros(1, dtype=DTYPES[manifest.get("dtypes", {}).get(name, "float32")]).expand(*shape)
             if shape else torch.zeros((), dtype=DTYPES[manifest.get("dtypes", {}).get(name, "float32")])
             for name, shape in manifest["keys"].items()}
    ckpt = {"model": state}
    if manifest["family"] != "dshmp":
        ckpt["args"] = argparse.Namespace(**manifest["config"])
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("path,family", checkpoint_manifests(), ids=lambda v: getattr(v, "stem", v))
def test_identify_names_every_public_architecture(zoo, tmp_path, path, family):
    manifest = json.loads(path.read_text())
    checkpoint = manifest_checkpoint(manifest, tmp_path / f"{path.stem}.pth")
    assert checkpoint.stat().st_size < 2_000_000
    ident = identify(checkpoint, zoo)
    variant = FAMILY_VARIANT[family]
    assert ident.fits, f"{path.stem} fits nothing"
    assert ident.variant == variant
    best = ident.fits[0]
    if family == "dshmp":
        assert best.entry is not None and best.entry.id == "dshmp_swin_t_mevis"
        return
    assert all(fit.exact for fit in ident.fits)
    backbone = manifest["config"]["backbone"]
    assert all(e.backbone == backbone for e in ident.entries)
    ruled_out = {fit.variant for fit in ident.ruled_out}
    if family == "referformer":
        assert {e.variant for e in ident.entries} == {"referformer"} and ruled_out == {"tfvos"}
    elif family == "tfvos":
        assert {fit.variant for fit in ident.fits} == {"tfvos"} and ruled_out == {"referformer"}
    elif family == "tapall":
        assert [e.id for e in ident.entries] == ["mevis2024_mutr_swin_l"]
        assert {fit.entry.id for fit in ident.ruled_out} == {"mutr_swin_l_joint"}
    elif family == "mutr":
        assert best.entry.id.startswith("mutr_") and {e.variant for e in ident.entries} == {"mutr"}
    else:
        assert {e.variant for e in ident.entries} == {variant}
    assert ident.architecture_args() is not None or family == "tfvos"


def test_identify_cli_names_both_referformer_and_tfvos(tmp_path, capsys):
    manifest = json.loads((REFERENCE_DIR / "manifests" / "tfvos_video_swin_b_p4w7.json").read_text())
    checkpoint = manifest_checkpoint(manifest, tmp_path / "tfvos.pth")
    assert zoo_main(["identify", str(checkpoint)]) == 0
    text = capsys.readouterr().out
    assert "TFVOS" in text and "referformer_video_swin_b_ytvos" in text and "ngpu recorded as 3" in text
    assert zoo_main(["identify", str(checkpoint), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["variant"] == "tfvos" and {f["variant"] for f in result["ruled_out"]} == {"referformer"}


FIXTURE_VARIANTS = {"referformer_tiny": "referformer", "tfvos_tiny": "tfvos", "sgmg_tiny": "sgmg", "mutr_tiny": "mutr",
                    "dshmp_tiny": "dshmp"}


@pytest.mark.parametrize("fixture", sorted(FIXTURE_VARIANTS))
def test_identify_fixture_checkpoints(zoo, fixture, capsys):
    """The tiny fixtures fit no public checkpoint: identify names their variant and the closest architecture with
    what differs (their tiny backbone and text encoder are not recorded in their args)."""
    checkpoint = REFERENCE_DIR / "fixtures" / fixture / "checkpoint.pth"
    ident = identify(checkpoint, zoo)
    assert ident.variant == FIXTURE_VARIANTS[fixture]
    status = zoo_main(["identify", str(checkpoint)])
    text = capsys.readouterr().out
    assert status == 1 and not ident.fits and ident.closest is not None
    assert "fits no zoo entry" in text and "the backbone differs" in text
    assert "another model variant" not in text
    if fixture == "dshmp_tiny":  # the released layout (no recorded options): every module is smaller
        assert ident.closest.variant == "dshmp" and ident.closest.entry.id == "dshmp_swin_t_mevis"
        return
    assert ident.closest.args is not None and ident.closest.args.hidden_dim == 64  # its recorded options
    assert all(k.startswith(("backbone.", "text_encoder.")) for k in ident.closest.missing + ident.closest.unexpected)


def test_identify_our_checkpoint_and_its_folder(tmp_path, capsys):
    from rvos.tools.convert_checkpoint import main as convert_main

    text_encoder = write_text_encoder(tmp_path / "text_encoder")
    checkpoint = write_checkpoint(tmp_path / "ours.pth", text_encoder)
    assert convert_main([str(checkpoint), str(tmp_path / "ours")]) == 0
    for source in (checkpoint, tmp_path / "ours"):
        assert zoo_main(["identify", str(source)]) == 0
        text = capsys.readouterr().out
        assert "its own config" in text and "load it with --model referformer --backbone video_swin_t_p4w7" in text


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_world")
    data = root / "data"
    small = dict(num_frames=6, min_frames=6)
    make_dataset("ytvos", data / "ref-youtube-vos", seed=0, num_videos=1, num_valid_videos=2, num_test_videos=1, **small)
    make_dataset("davis", data / "ref-davis", seed=0, num_valid_videos=1, num_train_videos=1, **small)
    make_dataset("mevis", data / "mevis", seed=0, num_valid_u_videos=1, num_valid_videos=1, num_train_videos=1, **small)
    make_dataset("a2d", data / "a2d_sentences", seed=0, num_train_videos=1, num_test_videos=1, height=96, width=128,
                 num_frames=8, min_frames=8)
    text_encoder = write_text_encoder(root / "text_encoder")
    weights = root / "weights"
    weights.mkdir()
    write_checkpoint(weights / "tiny_rf.pth", text_encoder)
    args = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(text_encoder), "--hidden_dim", "32"])
    from rvos.models import build_model

    model, _, _ = build_model(args)
    torch.save({"model": model.state_dict(), "config": opts.args_to_config(args)}, weights / "tiny_wrong.pth")
    paper = {"ref_youtube_vos_valid": {"jf": 62.9, "j": 61.0, "f": 64.8}, "ref_davis17_valid": {"jf": 61.1},
             "mevis_valid_u": {"jf": 40.0}, "mevis_valid": None, "a2d_sentences_test": {"oiou": 78.6, "map": 55.0},
             "refcoco": {"oiou": 70.0}}
    entry = {"title": "tiny ReferFormer", "variant": "referformer", "backbone": "video_swin_t_p4w7",
             "training_data": ["nothing (random weights)"], "config": "configs/tiny/referformer_tiny_synthetic.yaml",
             "published": {"where": "this test"}, "paper": paper}
    zoo = {"format_version": 1, "checkpoints": [
        dict(entry, id="tiny_referformer", file="tiny_rf.pth"),
        dict(entry, id="tiny_not_downloaded", file="elsewhere.pth"),
        dict(entry, id="tiny_wrong", file=None, paper={"ref_davis17_valid": {"jf": 61.1}})]}
    (root / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    return {"root": root, "data": data, "weights": weights, "zoo": root / "zoo.yaml", "text_encoder": text_encoder}


def test_reproduce_prints_paper_beside_ours_on_the_synthetic_world(synthetic, capsys):
    out = synthetic["root"] / "out"
    table = synthetic["root"] / "rows.json"
    command = ["--zoo", str(synthetic["zoo"]), "--text_encoder", str(synthetic["text_encoder"]), "reproduce",
               "--weights", str(synthetic["weights"]), "--data", str(synthetic["data"]), "--output", str(out)]
    inference_options = ["--", "--device", "cpu", "--msda_impl", "pytorch", "--num_workers", "1",
                         "--test_short_side", SHORT_SIDE, "--num_frames", "3", "--davis_clip_len", "3"]
    assert zoo_main(command + ["--json", str(table)] + inference_options) == 1  # the wrong checkpoint is an error
    printed = capsys.readouterr().out
    rows = json.loads(table.read_text())
    assert {r["entry"] for r in rows} == {"tiny_referformer", "tiny_wrong"}  # tiny_not_downloaded is not in --weights
    by_key = {(r["entry"], r["benchmark"], r["metric"]): r for r in rows}
    wrong = [r for r in rows if r["entry"] == "tiny_wrong"]
    assert [r["status"] for r in wrong] == ["wrong checkpoint"] and "does not fit tiny_wrong" in wrong[0]["note"]
    assert by_key[("tiny_referformer", "mevis_valid", "J&F")]["status"] == "server"
    assert (out / "tiny_referformer" / "mevis_valid" / "submission_mevis_valid.zip").is_file()
    assert by_key[("tiny_referformer", "refcoco", "oIoU")]["status"] == "not run"

    def ours(benchmark, metric):
        row = by_key[("tiny_referformer", benchmark, metric)]
        assert row["status"] == "ok" and row["paper"] is not None
        return row["ours"]

    data, runs = synthetic["data"], out / "tiny_referformer"
    ytvos = evaluate_main(["--protocol", "ytvos", "--meta",
                           str(data / "ref-youtube-vos" / "meta_expressions" / "valid" / "meta_expressions.json"),
                           "--gt", str(data / "ref-youtube-vos" / "_synthetic_gt" / "valid" / "Annotations"),
                           "--results", str(runs / "ref_youtube_vos_valid" / "valid")])
    assert [ours("ref_youtube_vos_valid", m) for m in ("J&F", "J", "F")] == pytest.approx(
        [100 * ytvos[k] for k in ("J&F", "J", "F")])
    davis = evaluate_main(["--protocol", "refdavis", "--davis-root", str(data / "ref-davis" / "DAVIS"),
                           "--results", str(runs / "ref_davis17_valid" / "valid")])
    assert ours("ref_davis17_valid", "J&F") == pytest.approx(100 * davis["mean"]["J&F-Mean"])
    mevis = evaluate_main(["--protocol", "mevis", "--mevis-root", str(data / "mevis" / "valid_u"), "--workers", "1",
                           "--results", str(runs / "mevis_valid_u" / "valid_u" / "Annotations")])
    assert ours("mevis_valid_u", "J&F") == pytest.approx(100 * mevis["J&F"])
    a2d = evaluate_main(["--protocol", "a2d", "--gt", str(data / "a2d_sentences"),
                         "--predictions", str(runs / "a2d_sentences_test" / "test" / "predictions.json")])
    assert ours("a2d_sentences_test", "oIoU") == pytest.approx(100 * a2d["overall_iou"])
    assert ours("a2d_sentences_test", "mAP") == pytest.approx(100 * a2d["mAP 0.5:0.95"])
    for line in ("tiny_referformer  ref_youtube_vos_valid", "62.9", "server", "not run"):
        assert line in printed

    capsys.readouterr()
    assert zoo_main(command + ["--rows", "tiny_referformer/ref_davis17_valid"] + inference_options) == 0
    again = capsys.readouterr().out
    assert "ref_davis17_valid" in again and "ref_youtube_vos_valid" not in again


def test_zoo_models_are_built_with_the_given_text_encoder(zoo, tmp_path):
    """The architectures are cached per text encoder too: with a tiny RoBERTa no zoo entry's model fits the
    full-size checkpoint (only the architecture of its own recorded options, built with roberta-base), without it
    the entries fit again."""
    manifest = json.loads((REFERENCE_DIR / "manifests" / "referformer_resnet50.json").read_text())
    checkpoint = manifest_checkpoint(manifest, tmp_path / "r50.pth")
    tiny = identify(checkpoint, zoo, {"text_encoder": str(write_text_encoder(tmp_path / "text_encoder"))})
    assert tiny.fits and not tiny.entries and all(fit.entry is None for fit in tiny.ruled_out)
    assert [e.id for e in identify(checkpoint, zoo).entries][:1] == ["referformer_r50_refcoco"]
