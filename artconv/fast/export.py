"""ONNX export of a trained style network: `artconv export MODEL -o model.onnx`.

The graph takes "image", RGB in [0, 1] as (N, 3, H, W) float32 with N, H and W dynamic, and
gives "stylised", the same shape in [0, 1]: the scale of a pytorch/examples model and the
clamp are inside, so any ONNX runtime (onnxruntime in a browser, on a phone, in C++) needs
nothing but the file. The model's recipe rides along in the graph's metadata ("artconv").

torch's own exporter writes the graph (its ops - reflection padding, instance norm, nearest
resize, convolutions - all have ONNX equivalents); the `onnx` package (extra `artconv[onnx]`)
checks it and stores the metadata.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from artconv.errors import ArtconvError
from artconv.fast.net import TransformerNet
from artconv.fast.pretrained import open_model
from artconv.io.files import atomic_path

INPUT, OUTPUT = "image", "stylised"
OPSET = 17
_AXES = {0: "batch", 2: "height", 3: "width"}


class _Graph(nn.Module):
    """The network as exported: the image in, the picture out, nothing else (the tracer
    would take `forward`'s keyword options for inputs)."""

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def export_onnx(model: str | Path, output: str | Path, *, opset: int = OPSET) -> Path:
    """Write `model` (anything `--model` takes) as an ONNX graph at `output`, atomically;
    the model's recipe (file, sha256, training recipe) goes in its metadata."""
    try:
        import onnx  # the optional extra: only this command needs it
    except ImportError:
        raise ArtconvError("artconv export: needs the onnx package (pip install "
                           "'artconv[onnx]')") from None
    found = open_model(model, "cpu")
    graph = _Graph(found.net.float()).eval()
    output = Path(output)
    with atomic_path(output, suffix_hint=".onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter: the torch.export one needs onnxscript as well, and
            # this graph has no control flow that would need it.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (torch.rand(1, 3, 64, 64),), str(tmp),
                              input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: _AXES, OUTPUT: _AXES},
                              opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "artconv", json.dumps(found.describe())
        onnx.save(proto, str(tmp))
    return output
