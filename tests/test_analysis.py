"""Blind tamper analysis: forensic features and the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from blockimage.analysis import ModelNotFoundError, blind_tamper_score
from blockimage.analysis.blind import load_model
from blockimage.analysis.forensics import FEATURE_NAMES, forensic_features
from blockimage.evaluation import tampered_variant


@pytest.fixture(scope="module")
def photo(photos):
    return np.asarray(Image.open(photos["motorcycle"]).convert("RGB"))


def test_features_have_the_declared_length_and_are_finite(photo):
    f = forensic_features(photo)
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()


def test_a_cloned_region_raises_the_copy_move_signal(photo):
    clean = forensic_features(photo)
    moved = tampered_variant(photo, "copy-move", np.random.default_rng(0), resave=False)
    cloned = forensic_features(moved.pixels)
    i = FEATURE_NAMES.index("clone_cluster")
    assert cloned[i] > clean[i] + 5


def test_score_is_a_probability_and_the_shipped_model_matches_the_features(photo):
    score = blind_tamper_score(photo)
    assert 0.0 <= score <= 1.0
    assert load_model().weights.shape == (len(FEATURE_NAMES),)


def test_a_missing_or_stale_model_says_how_to_get_one(tmp_path):
    with pytest.raises(ModelNotFoundError, match="tamper_cv.py --write-model"):
        load_model(tmp_path / "none.json")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"features": ["old"]}))
    with pytest.raises(ModelNotFoundError, match="other features"):
        load_model(stale)
