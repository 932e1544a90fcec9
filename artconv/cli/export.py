"""`artconv export MODEL -o model.onnx`: a trained style network for other runtimes."""

from __future__ import annotations

from pathlib import Path

import typer

from artconv.cli.common import Ui
from artconv.errors import ArtconvError


def export(
    model: str = typer.Argument(..., help="A trained style network: a .safetensors from "
                                "`artconv train`, a pytorch/examples .pth, or a published "
                                "model's name (candy, mosaic, rain-princess, udnie)."),
    output: Path = typer.Option(..., "--output", "-o", help="The ONNX file to write (.onnx)."),
    opset: int = typer.Option(17, "--opset", min=11, help="ONNX opset version."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
) -> None:
    """Export a style network to ONNX: input "image" RGB [0, 1] (N, 3, H, W) with any N, H
    and W, output "stylised" the same; run it anywhere onnxruntime runs (README: Fast style
    networks)."""
    from artconv.fast.export import export_onnx
    from artconv.outputs import check_write_paths

    if output.suffix.lower() != ".onnx":
        raise ArtconvError(f"--output {output}: an ONNX file must end in .onnx")
    check_write_paths([("--output", output)], [Path(model)] if Path(model).exists() else [])
    written = export_onnx(model, output, opset=opset)
    Ui(quiet=quiet).say(f"wrote {written}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
