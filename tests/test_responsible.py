"""Responsible generation: every image file a run writes carries its provenance (PNG text and
the mark), turning the mark off is logged and recorded, the model card follows the run's
numbers, and Stable Signature fine-tuning marks a generator's own outputs."""

import json
import logging
import shutil
import types

import numpy as np
import pytest
from PIL import Image

from experiments import dcgan, stable_signature
from genimg import evaluate, provenance, sample
from genimg import watermark as wm
from genimg.errors import UserError
from genimg.train import checkpoint as ckpt
from genimg.train import model_card, run_provenance
from genimg.train.loop import train_from_config
from tests.test_watermark import plant


def _config(steps=4, watermark=True):
    # 28x28 digits: the smallest generator whose single samples are big enough to be marked.
    config = dcgan.get_config("tiny")
    config.data.update(source="digits", image_size=28)
    config.train.steps = steps
    config.provenance.watermark = watermark
    return config


@pytest.fixture(scope="module")
def run28(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run28")
    train_from_config(_config(), workdir)
    return workdir


def _text(path):
    with Image.open(path) as image:
        return dict(image.text)


def test_sample_grids_carry_text_and_mark_of_the_run(run28):
    info = json.loads((run28 / "run_info.json").read_text())
    record = json.loads((run28 / "config.json").read_text())
    assert info["run_id"] == run_provenance.derive_run_id(record)
    assert info["config_hash"] == run_provenance.config_hash(record)
    assert info["provenance"] == {
        "family": "gan",
        "watermark": True,
        "key_id": wm.key_id(wm.DEFAULT_KEY),
    }
    grid = run28 / "samples" / "step_0000004.png"
    text = _text(grid)
    assert text["genimg:generated"] == "true" and text["genimg:family"] == "gan"
    assert text["genimg:run_id"] == info["run_id"]
    assert text["genimg:config_hash"] == info["config_hash"]
    _, _, state, _ = ckpt.restore_run(run28)  # step 4: the weights that drew this grid
    assert text["genimg:model_hash"] == run_provenance.model_hash(state)
    report = provenance.check_file(grid, [wm.DEFAULT_KEY])
    assert report["marked"] and report["p_value"] < 1e-3
    assert report["payload_matches_text"] == 1.0


def test_sample_png_files_carry_text_and_mark(run28, tmp_path):
    args = types.SimpleNamespace(
        workdir=str(run28), num_samples=3, out=str(tmp_path / "s.npz"), png=str(tmp_path / "png"),
        seed=0, batch_size=4, labels=None, with_test_split=None, prompt=None,
    )  # fmt: skip
    sample.main(args)
    files = sorted((tmp_path / "png").glob("*.png"))
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png", "grid.png"]
    info = json.loads((run28 / "run_info.json").read_text())
    for path in files:
        assert _text(path)["genimg:run_id"] == info["run_id"]
        report = provenance.check_file(path, [wm.DEFAULT_KEY])
        assert report["marked"] and report["payload_matches_text"] == 1.0, report
    # The .npz holds the model's raw samples, unmarked (the mark is the file writer's).
    raw = np.load(tmp_path / "s.npz")["images"][0]
    assert not wm.detect(raw).marked


def test_turning_the_mark_off_is_logged_and_recorded(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="genimg"):
        train_from_config(_config(steps=2, watermark=False), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "provenance.watermark" in r.getMessage()]
    assert len(warnings) == 1 and "no invisible watermark" in warnings[0]
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["provenance"]["watermark"] is False
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "The invisible watermark is OFF for this run" in card
    grid = tmp_path / "samples" / "step_0000002.png"
    assert _text(grid)["genimg:watermark"] == "none"
    assert not provenance.check_file(grid, [wm.DEFAULT_KEY])["marked"]


def test_a_run_without_an_id_gets_the_derived_one_and_keeps_it(run28, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run28, old)
    info = json.loads((old / "run_info.json").read_text())
    record = json.loads((old / "config.json").read_text())
    # As written before provenance existed: no ids in run_info, no provenance block.
    for key in ("run_id", "config_hash", "provenance"):
        info.pop(key)
    record.pop("provenance")
    (old / "run_info.json").write_text(json.dumps(info))
    (old / "config.json").write_text(json.dumps(record))
    assert run_provenance.read_run(old)[1]["run_id"] == _run_id(run28)
    train_from_config(_config(steps=6), old)  # resumes at step 4
    assert _run_id(old) == _run_id(run28)
    changes = (old / "config_changes.jsonl").read_text()
    assert "provenance.watermark" in changes
    assert _text(old / "samples" / "step_0000006.png")["genimg:run_id"] == _run_id(run28)


def _run_id(workdir):
    return json.loads((workdir / "run_info.json").read_text())["run_id"]


def test_model_card_has_the_runs_numbers_after_evaluate(classifier_run, tmp_path):
    workdir = tmp_path / "classifier"
    shutil.copytree(classifier_run, workdir)
    card = (workdir / "MODEL_CARD.md").read_text()
    assert "## Evaluation results" in card and "Not evaluated yet" in card
    results = evaluate.run(workdir, ["accuracy"])
    card = (workdir / "MODEL_CARD.md").read_text()
    assert "Not evaluated yet" not in card
    assert f"| accuracy | {results['accuracy']:.6g} |" in card
    info = json.loads((workdir / "run_info.json").read_text())
    for section in ("Model details", "Intended use", "Out-of-scope uses", "Training data",
                    "Risks and limitations", "Provenance watermark"):  # fmt: skip
        assert f"## {section}" in card
    assert info["run_id"] in card and info["provenance"]["key_id"] in card
    assert "python -m genimg.provenance check" in card
    _, _, state, _ = ckpt.restore_run(workdir)
    assert f"| parameters | {run_provenance.count_params(state)} |" in card


def test_stable_signature_marks_the_generators_raw_samples(run28, tmp_path):
    config = stable_signature.get_config("tiny")
    config.base = str(run28)
    measured = stable_signature.finetune(config, tmp_path / "sig")
    # 8 raw samples (384 bits): chance is 0.5; the base generator sits there.
    assert abs(measured["base_bit_accuracy"] - 0.5) < 0.1
    assert measured["tuned_bit_accuracy"] > 0.7, measured  # 8 sigma above chance
    assert measured["base_detection_rate"] == 0.0

    # A normal run: it restores, samples, and names the model hash its outputs carry.
    _, _, state, info = ckpt.restore_run(tmp_path / "sig")
    signature = info["stable_signature"]
    assert signature["base_run_id"] == _run_id(run28)
    assert info["run_id"] != _run_id(run28)
    prov = run_provenance.provenance_for_run(tmp_path / "sig", state)
    assert prov.model_hash == signature["model_hash"] and prov.run_id == info["run_id"]
    card = (tmp_path / "sig" / model_card.FILE).read_text()
    assert "### Stable Signature" in card and signature["model_hash"] in card
    assert signature["decoder"] == wm.DECODER_FILE
    assert measured["fpr_images"] == 200 and measured["false_positive_rate"] <= 0.05

    # `genimg.provenance check --decoder=W` reads the generator mark with the run's decoder:
    # an image carrying the run's message is found without PNG text or file mark, a real
    # image is not.
    decoder = provenance.load_decoder(tmp_path / "sig")
    payload = wm.payload_bits(info["run_id"], signature["model_hash"])
    test = np.stack([x for x in _digits28_test()[:1]])
    lifted, marked = plant(
        decoder, test[0], np.concatenate([wm.header_bits(wm.DEFAULT_KEY), payload])
    )
    for name, image, expected in (("marked.png", marked, True), ("real.png", lifted, False)):
        Image.fromarray(image[..., 0]).save(tmp_path / name)
        report = provenance.check_file(tmp_path / name, [wm.DEFAULT_KEY], decoder)
        assert report["marked"] is expected and report["generator_mark"]["marked"] is expected
    line = provenance.format_report(report)
    assert "no mark found" in line and "generator mark not found" in line
    with pytest.raises(UserError, match="no watermark decoder"):
        provenance.load_decoder(tmp_path / "nowhere")


def _digits28_test():
    from genimg.data import load

    return load("digits", "test", 28).images


def test_stable_signature_bad_config_is_one_line_and_writes_nothing(run28, tmp_path):
    from genimg.errors import ConfigError

    cases = [
        ({}, ConfigError, "set --config.base=W"),
        ({"base": str(tmp_path)}, UserError, "is not a training run"),
        ({"base": str(run28), "jpeg_prob": 1.5}, ConfigError, "0 <= jpeg_prob <= 1"),
        ({"base": str(run28), "jpeg_quality": (90, 70)}, ConfigError, "jpeg_quality"),
        ({"base": str(run28), "decoder_images": 10}, ConfigError, "decoder_images must be >= 96"),
    ]
    for overrides, error, message in cases:
        config = stable_signature.get_config("tiny")
        config.update(overrides)
        with pytest.raises(error, match=message):
            stable_signature.finetune(config, tmp_path / "sig")
        assert not (tmp_path / "sig").exists()
