"""Convert torchvision ImageNet weights to an ONNX backbone BlockImage can run.

``import_resnet50(weights, out_dir)`` loads a torchvision ResNet-50 state dict (``.pth``, e.g.
``resnet50-0676ba61.pth`` / IMAGENET1K_V2), exports ``resnet50.onnx`` with the same inputs
and outputs as the shipped model (``image`` N x 3 x 224 x 224 -> ``logits`` N x 1000,
``features`` N x 2048) and writes ``resnet50.json`` with its preprocessing (torchvision's
ImageNet mean / std). Needs torch and torchvision (``pip install 'blockimage[convert]'``); the
converted model then runs with onnxruntime like the default one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BlockImageError

__all__ = ["import_resnet50", "ConversionUnavailableError"]

_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


class ConversionUnavailableError(BlockImageError, RuntimeError):
    """The conversion needs packages that are not installed, or the weights do not fit."""


def import_resnet50(weights: Path, out_dir: Path) -> Path:
    """Convert ``weights`` to ``out_dir/resnet50.onnx`` (+ ``.json``); return the ONNX path."""
    try:
        import torch
        import torchvision
    except ImportError:
        raise ConversionUnavailableError(
            "converting ResNet-50 weights needs torch and torchvision: "
            "pip install 'blockimage[convert]' (the converted model runs without them)"
        ) from None
    model = torchvision.models.resnet50(weights=None)
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, KeyError) as exc:
        raise ConversionUnavailableError(
            f"{weights} is not a torchvision ResNet-50 state dict: {exc}"
        ) from None
    model.eval()

    class LogitsAndFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(*list(model.children())[:-1])
            self.fc = model.fc

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.body(x).flatten(1)
            return self.fc(features), features

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "resnet50.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    torch.onnx.export(
        LogitsAndFeatures().eval(),
        (torch.zeros(1, 3, 224, 224),),
        str(tmp),
        input_names=["image"],
        output_names=["logits", "features"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}, "features": {0: "n"}},
    )
    tmp.replace(onnx_path)
    sidecar = {"name": "resnet50", "mean": _MEAN, "std": _STD, "features": 2048}
    onnx_path.with_suffix(".json").write_text(json.dumps(sidecar) + "\n")
    return onnx_path
