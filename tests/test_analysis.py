"""Blind tamper analysis: forensic features and the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from blockimage.analysis import ModelNotFoundError, blind_evidence
from blockimage.analysis.blind import load_model
from blockimage.analysis.classifier import DEFAULT_MODEL
from blockimage.analysis.forensics import FEATURE_NAMES, forensic_features
from blockimage.evaluation import tampered_variant

MODEL_DIR = DEFAULT_MODEL.parent


@pytest.fixture(scope="module")
def photo(photos):
    return np.asarray(Image.open(photos["motorcycle"]).convert("RGB"))


def test_features_have_the_declared_length_and_are_finite(photo):
    f = forensic_features(photo)
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()


def test_cloned_regions_raise_the_copy_move_signal_on_average(photos):
    # Per image the signal depends on where the clone lands (a flat destination has no
    # keypoints); over several photos and placements it must rise clearly.
    i = FEATURE_NAMES.index("clone_cluster")
    originals, clones = [], []
    for name in ("coffee", "chelsea", "motorcycle"):
        img = np.asarray(Image.open(photos[name]).convert("RGB"))
        originals.append(forensic_features(img)[i])
        for seed in range(4):
            moved = tampered_variant(img, "copy-move", np.random.default_rng(seed), resave=False)
            clones.append(forensic_features(moved.pixels)[i])
    assert np.mean(clones) > 3 * np.mean(originals)


def test_score_is_a_probability_and_the_shipped_model_matches_the_features(photo):
    score = blind_evidence(photo).score
    assert 0.0 <= score <= 1.0
    model = load_model()
    assert model.weights.shape == model.mean.shape == (len(FEATURE_NAMES),)


def test_a_missing_or_stale_model_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelNotFoundError, match="tamper_cv.py --write-model"):
        load_model(tmp_path / "none.json")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"features": ["old"]}))
    with pytest.raises(ModelNotFoundError, match="other features"):
        load_model(stale)


def test_classifier_names_real_photos_sensibly(photos):
    from blockimage.analysis.classifier import classify

    coffee = classify(np.asarray(Image.open(photos["coffee"]).convert("RGB")))
    assert coffee[0].label == "espresso" and coffee[0].score > 0.8
    assert {"coffee", "food"} <= {t.label for t in coffee}
    cat = {t.label for t in classify(np.asarray(Image.open(photos["chelsea"]).convert("RGB")))}
    assert {"cat", "animal"} <= cat


def test_broader_terms_come_from_wordnet():
    labels = json.loads((MODEL_DIR.parent / "imagenet_labels.json").read_text())["classes"]
    assert len(labels) == 1000
    ladybug = next(c for c in labels if c["name"] == "ladybug")
    assert ladybug["wnid"] == "n02165456" and "insect" in ladybug["broader"]


def test_onnx_model_outputs_logits_and_features(photos):
    from blockimage.analysis.classifier import load_classifier

    prediction = load_classifier().predict(np.asarray(Image.open(photos["rocket"])))
    assert prediction.probabilities.shape == (1000,) and prediction.features.shape == (1280,)
    assert abs(prediction.probabilities.sum() - 1) < 1e-4


def test_missing_classifier_model_says_how_to_get_one(tmp_path):
    from blockimage.analysis.classifier import Classifier

    with pytest.raises(ModelNotFoundError, match="export_efficientnet_lite.py"):
        Classifier(tmp_path / "missing.onnx")


def test_analyze_command_prints_tags_and_score(photos):
    from click.testing import CliRunner

    from blockimage.cli import cli

    result = CliRunner().invoke(cli, ["analyze", str(photos["coffee"]), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["tags"][0]["label"] == "espresso" and 0 <= doc["blind_tamper_score"] <= 1
    blind = doc["blind_evidence"]
    assert blind["score"] == doc["blind_tamper_score"] and blind["threshold"] <= blind["score"]
    assert 0 <= blind["false_positive_rate"] <= blind["true_positive_rate"] <= 1
    assert any("JPEG" in line for line in blind["findings"])
    bad = CliRunner().invoke(cli, ["analyze", __file__])
    assert bad.exit_code == 1 and "not an image" in bad.stderr
