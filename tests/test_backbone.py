"""The analysis backbone is configurable: a ResNet-50-shaped ONNX model replaces the default."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from blockimage import Node
from blockimage.analysis import ModelNotFoundError
from blockimage.analysis.classifier import Classifier
from blockimage.cli import cli

BANANA = 954


def resnet_shaped_model(path, favourite: int = BANANA) -> None:
    """image N x 3 x 224 x 224 -> features N x 2048 -> logits N x 1000, always `favourite`."""
    rng = np.random.default_rng(0)
    conv = numpy_helper.from_array(rng.normal(0, 0.01, (2048, 3, 1, 1)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.01, (1000, 2048)).astype(np.float32), "fc")
    bias = np.zeros(1000, np.float32)
    bias[favourite] = 10.0
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["features"]),
        helper.make_node("Gemm", ["features", "fc", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet50-shaped",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 224, 224])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1000]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 2048]),
        ],
        [conv, fc, numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "name": "resnet50",
                "mean": [123.675, 116.28, 103.53],
                "std": [58.395, 57.12, 57.375],
                "features": 2048,
            }
        )
    )


def test_a_resnet_shaped_model_loads_with_its_own_preprocessing(tmp_path, photos):
    path = tmp_path / "resnet50.onnx"
    resnet_shaped_model(path)
    classifier = Classifier(path)
    assert classifier.name == "resnet50"
    prediction = classifier.predict(np.zeros((300, 400, 3), np.uint8))
    assert prediction.probabilities.shape == (1000,) and prediction.features.shape == (2048,)
    assert classifier.tags(prediction)[0].label == "banana"


def test_node_uses_the_configured_backbone(home, photo_file, monkeypatch):
    (home / "models").mkdir(parents=True)
    resnet_shaped_model(home / "models" / "resnet50.onnx")
    monkeypatch.setenv("BLOCKIMAGE_BACKBONE", "resnet50")
    with Node(home) as node:
        receipt = node.register(photo_file("coffee"), owner="alice")
    assert receipt.record.tags[0].label == "banana"  # not "espresso": the ResNet model ran


def test_a_configured_backbone_that_is_missing_says_how_to_import_it(home, monkeypatch):
    monkeypatch.setenv("BLOCKIMAGE_BACKBONE", "resnet50")
    with pytest.raises(ModelNotFoundError, match="models import resnet50"):
        Node(home)


def test_models_import_fails_clearly_without_torch_or_with_bad_weights(home, tmp_path):
    # torch is not a test dependency: without it the command names the extra to install;
    # with it, these bytes are not a state dict.
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"not read without torch")
    result = CliRunner().invoke(
        cli, ["--home", str(home), "models", "import", "resnet50", str(weights)]
    )
    try:
        import torch  # noqa: F401
    except ImportError:
        assert result.exit_code == 1 and "blockimage[convert]" in result.stderr
    else:
        assert result.exit_code == 1 and "not a torchvision ResNet-50" in result.stderr
