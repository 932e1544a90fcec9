"""The image transformation network of Johnson, Alahi and Fei-Fei (2016).

A 9x9 conv, two stride-2 convs, residual blocks, two nearest-upsample + 3x3 conv stages and
a 9x9 conv; instance norm with affine parameters after every conv but the last; reflection
padding everywhere. Upsampling by nearest + conv (not transposed conv) leaves no checkerboard.

Parameter names are those of pytorch/examples' `fast_neural_style` TransformerNet
(conv1.conv2d, in1, ..., res1.conv1.conv2d, ..., deconv3.conv2d), so its published state
dicts load into `TransformerNet(width=32, blocks=5, scale=255)` (those nets see 0-255).

Every instance norm goes through `forward(..., norm=)`, so exact tiled inference
(`artconv.fast.tiled`) runs the very same layers with statistics gathered over all tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

# norm(module, x) -> normalised x; the default applies the module (the image's own statistics)
NormFn = Callable[[nn.InstanceNorm2d, torch.Tensor], torch.Tensor]


def own_statistics(module: nn.InstanceNorm2d, x: torch.Tensor) -> torch.Tensor:
    """The map's own statistics. Under bf16 autocast the convolutions run in bf16 but the
    norm in fp32: bf16 means and variances over a whole image shift colours visibly."""
    if x.dtype in (torch.bfloat16, torch.float16):
        with torch.autocast(x.device.type, enabled=False):
            return module(x.float())
    return module(x)


class ConvLayer(nn.Module):
    """Reflection padding then a conv (stride 1 or 2): size kept, or halved rounding up."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest 2x upsampling cropped to `size` (the encoder's size at that level, so odd
    sizes come back exactly), then a reflection-padded conv."""

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if size is not None:
            x = x[..., : size[0], : size[1]]
        return super().forward(x)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor, norm: NormFn = own_statistics) -> torch.Tensor:
        y = F.relu(norm(self.in1, self.conv1(x)))
        return x + norm(self.in2, self.conv2(y))


@dataclass(frozen=True)
class NormSite:
    """One instance norm in forward order: its module's name and the stride (1, 2 or 4) of
    the feature map it normalises relative to the input."""

    name: str
    stride: int


class TransformerNet(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) RGB in [0, 1], any H and W.

    `width` is the first stage's channels (32 published, 16 the light variant), doubled at
    each stride-2 stage; `blocks` residual blocks at a quarter of the size; `scale` is what
    the input is multiplied by (and the output divided by) inside: 1 for artconv's models,
    255 for pytorch/examples'.
    """

    def __init__(self, width: int = 32, blocks: int = 5, scale: float = 1.0) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"TransformerNet: width {width} must be >= 1, blocks {blocks} >= 0")
        self.width, self.blocks, self.scale = int(width), int(blocks), float(scale)
        w = self.width
        self.conv1 = ConvLayer(3, w, 9)
        self.in1 = nn.InstanceNorm2d(w, affine=True)
        self.conv2 = ConvLayer(w, 2 * w, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(2 * w, affine=True)
        self.conv3 = ConvLayer(2 * w, 4 * w, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(4 * w, affine=True)
        for i in range(1, self.blocks + 1):
            self.add_module(f"res{i}", ResidualBlock(4 * w))
        self.deconv1 = UpsampleConvLayer(4 * w, 2 * w, 3)
        self.in4 = nn.InstanceNorm2d(2 * w, affine=True)
        self.deconv2 = UpsampleConvLayer(2 * w, w, 3)
        self.in5 = nn.InstanceNorm2d(w, affine=True)
        self.deconv3 = ConvLayer(w, 3, 9)

    @property
    def config(self) -> dict[str, float | int]:
        """What rebuilds this net: `TransformerNet(**net.config)`."""
        return {"width": self.width, "blocks": self.blocks, "scale": self.scale}

    def residual_blocks(self) -> list[ResidualBlock]:
        return [getattr(self, f"res{i}") for i in range(1, self.blocks + 1)]

    def norm_sites(self) -> list[NormSite]:
        """Every instance norm in the order `forward` applies them."""
        res = [NormSite(f"res{i}.{n}", 4) for i in range(1, self.blocks + 1)
               for n in ("in1", "in2")]
        return [NormSite("in1", 1), NormSite("in2", 2), NormSite("in3", 4), *res,
                NormSite("in4", 2), NormSite("in5", 1)]

    def forward(self, x: torch.Tensor, *, clamp: bool = True,
                norm: NormFn = own_statistics) -> torch.Tensor:
        """`clamp=False` leaves the output unclamped (a trainer's loss may want gradients
        beyond [0, 1]); `norm` replaces how each instance norm gets its statistics."""
        y = x * self.scale if self.scale != 1 else x
        y = F.relu(norm(self.in1, self.conv1(y)))
        full = (y.shape[-2], y.shape[-1])
        y = F.relu(norm(self.in2, self.conv2(y)))
        half = (y.shape[-2], y.shape[-1])
        y = F.relu(norm(self.in3, self.conv3(y)))
        for block in self.residual_blocks():
            y = block(y, norm)
        y = F.relu(norm(self.in4, self.deconv1(y, half)))
        y = F.relu(norm(self.in5, self.deconv2(y, full)))
        y = self.deconv3(y)
        if self.scale != 1:
            y = y / self.scale
        return y.clamp(0, 1) if clamp else y
