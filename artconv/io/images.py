"""Image I/O for the whole project: load anything to an RGB float tensor, save atomically.

Every image enters as a contiguous float32 ``(3, H, W)`` tensor, RGB in [0, 1], in sRGB, upright
(EXIF orientation applied). Every file leaves through :func:`atomic_path`, so a crash or Ctrl-C
never leaves a half-written output and never clobbers an input.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from artconv import outputs
from artconv.errors import ArtconvError

# The torch-free file helpers live in artconv.io.files; these names stay for importers.
from artconv.io.files import (  # noqa: F401
    IMAGE_EXTENSIONS,
    SAVE_FORMATS,
    _one_line,
    atomic_output,
    atomic_path,
    atomic_write_bytes,
    check_regular_file,
    fetch,
    list_images,
    url_of,
)

StrPath = str | os.PathLike[str]
ImageSource = StrPath | Image.Image | np.ndarray | torch.Tensor

# Decompression-bomb / memory guard: 100 MP (a 10000x10000 image is 1.2 GB as float RGB before
# any network runs). $ARTCONV_MAX_PIXELS raises it for every command without a flag on each.
DEFAULT_MAX_PIXELS: int = 100_000_000


def max_pixels_limit() -> int:
    """The pixel limit in force: $ARTCONV_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    value = os.environ.get("ARTCONV_MAX_PIXELS", "")
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    # inf would overflow int(); 0 or less, or nan, would silently refuse every image.
    if not (math.isfinite(number) and number >= 1):
        raise ArtconvError(f"ARTCONV_MAX_PIXELS={value!r}: expected a number of pixels of at "
                           "least 1, such as 400e6")
    return int(number)

RECIPE_KEY = "artconv-recipe"

# Modes that np.array() turns into >8-bit integers or floats; they skip PIL's 8-bit conversions.
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_PIL_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------- loading


def load_image(
    src: ImageSource, size: int | None = None, *, max_pixels: int | None = None
) -> torch.Tensor:
    """Load ``src`` as a contiguous float32 ``(3, H, W)`` RGB tensor in [0, 1].

    ``src`` may be a path, a PIL image, a numpy array (``(H, W)`` or ``(H, W, C)``; uint8,
    uint16 or float in [0, 1]) or a tensor (``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)``),
    with C of 1 (grey), 3 (RGB) or 4 (RGBA). EXIF orientation is applied, embedded ICC
    profiles are converted to sRGB and 16-bit data keeps its precision.

    Alpha is composited over white: transparent areas become white, like bare canvas under
    the paint, rather than whatever colour happens to be stored under alpha 0.

    If ``size`` is given, the image is resized so its longest side is ``size``; a file or
    PIL image much larger than that is first reduced in its own bit depth (JPEG while
    decoding), so a huge image never exists as floats at full size.
    Files over ``max_pixels`` (default: `max_pixels_limit()`) are refused before their
    pixels are decoded.

    An http(s) URL (a string, or a path made from one) is downloaded once into the cache
    (`artconv.io.files.download`: size limit, timeout, one-line errors naming the URL) and
    then loaded like a file.
    """
    url = url_of(src)
    if url is not None:
        with _fetched(url) as path:
            return load_image(path, size, max_pixels=max_pixels)
    if max_pixels is None:
        max_pixels = max_pixels_limit()
    if size is not None and size < 1:
        raise ArtconvError(f"size {size}: must be at least 1 pixel")
    full = None  # (H, W) before any shrinking, upright: the output size is computed from it
    if isinstance(src, str | os.PathLike):
        with _open_image(src, max_pixels) as img:
            stored = img.size
            if _is_colour16(img):
                out, full = _colour16_to_rgb(img, src, size)
            else:
                if size is not None:
                    _draft(img, size)
                _decode(img, src)
                out, full = _pil_to_rgb(img, str(src), size, stored)
    elif isinstance(src, Image.Image):
        name = getattr(src, "filename", "") or "image"
        _check_pixels(name, src.size, max_pixels)
        _decode(src, name)
        out, full = _pil_to_rgb(src, name, size)
    elif isinstance(src, np.ndarray):
        out = _channels_to_rgb(_array_to_chw(src), "array")
    elif isinstance(src, torch.Tensor):
        out = _channels_to_rgb(_tensor_to_chw(src), "tensor")
    else:
        raise TypeError(f"load_image: cannot load a {type(src).__name__}")
    if size is not None:
        # From the full size, not the shrunk one: rounding must not depend on the shrinking,
        # or image_hw-based plans (batches) would disagree with the loaded image by a pixel.
        out = resize_to(out, fit_longest(full or out.shape[-2:], size))
    return out.contiguous()


def image_hw(path: StrPath, *, limit: bool = False) -> tuple[int, int]:
    """``(H, W)`` of the image at ``path`` as :func:`load_image` would return it, from the header.

    No pixels are decoded, so this is cheap; errors match load_image's. With `limit`, an
    image over `max_pixels_limit()` is refused as load_image would refuse it, else there is
    no size limit. A URL is downloaded into the cache first, as load_image does.
    """
    url = url_of(path)
    if url is not None:
        with _fetched(url) as local:
            return image_hw(local, limit=limit)
    with _open_image(path, max_pixels=max_pixels_limit() if limit else None) as img:
        w, h = img.size
        # PngImageFile.getexif() decodes the whole image hunting for an eXIf chunk after the
        # pixels; writers (PIL included) put it before them, where it is already in info.
        if img.format == "PNG" and "exif" not in img.info:
            orientation = 1
        elif img.format == "TIFF":
            orientation = 1  # PIL reports a TIFF upright already, and turns it on load
        else:
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    # Orientations 5-8 are the ones that include a quarter turn.
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


@contextmanager
def _fetched(url: str) -> Iterator[Path]:
    """The cached file of `url` (downloaded first if need be). Errors while reading it name
    the URL, not the cache file; a file that is no readable image leaves the cache, so the
    next try downloads it again."""
    path = fetch(url)
    try:
        yield path
    except ArtconvError as exc:
        message = str(exc)
        if not message.startswith(f"{path}:"):
            raise
        if "not an image" in message or "corrupt" in message:
            path.unlink(missing_ok=True)
        raise ArtconvError(url + message[len(str(path)):]) from None


@contextmanager
def _open_image(path: StrPath, max_pixels: int | None) -> Iterator[Image.Image]:
    """Open ``path`` lazily (header only), turning every failure into a one-line ArtconvError."""
    p = Path(path)
    if p.is_dir():
        raise ArtconvError(f"{p}: is a folder, not an image file")
    check_regular_file(p)
    try:
        with _without_pil_pixel_limit():
            img = Image.open(p)
    except FileNotFoundError:
        raise ArtconvError(f"{p}: no such file") from None
    except Image.UnidentifiedImageError:
        raise ArtconvError(f"{p}: not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ArtconvError(_one_line(f"{p}: too large ({e})")) from None
    except OSError as e:
        # Real I/O errors carry an errno; PIL's complaints about the bytes themselves don't.
        if e.errno is not None:
            raise ArtconvError(f"{p}: cannot read ({e.strerror})") from None
        raise ArtconvError(_one_line(f"{p}: truncated or corrupt image ({e})")) from None
    with img:
        if max_pixels is not None:
            _check_pixels(str(p), img.size, max_pixels)
        yield img


@contextmanager
def _without_pil_pixel_limit() -> Iterator[None]:
    # Image.open enforces PIL's own bomb limit (~89 MP warning, ~179 MP error) with its own
    # message; lift it just around the open so max_pixels is the one limit, and the one
    # message, users meet. PIL only checks in open(), so no decode runs unguarded.
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(name: str, wh: tuple[int, int], max_pixels: int) -> None:
    w, h = wh
    if w * h > max_pixels:
        raise ArtconvError(
            f"{name}: {w}x{h} is {_megapixels(w * h)}, over the {_megapixels(max_pixels)} limit "
            "(set ARTCONV_MAX_PIXELS higher if you have the memory)"
        )


def _megapixels(n: int) -> str:
    # Tiny limits (tests, thumbnails) would all print as "0.0 MP".
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n} pixels"


def _decode(img: Image.Image, name: StrPath) -> None:
    # PIL decodes lazily; force it here so damage is reported as such, not as a later
    # mystery error in a conversion.
    try:
        img.load()
    except (OSError, SyntaxError, EOFError) as e:
        raise ArtconvError(_one_line(f"{name}: truncated or corrupt image ({e})")) from None


# EXIF orientation -> the transposition that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_QUARTER_TURNS = frozenset({Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270,
                            Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90})
# Modes Image.reduce averages correctly as they are; straight alpha goes through its
# premultiplied twin. Bands of about _BAND_PIXELS bound what a conversion copies.
_REDUCIBLE = frozenset({"L", "RGB", "CMYK", "YCbCr", "I", "F"})
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}
_BAND_PIXELS = 1 << 22


def _pil_to_rgb(img: Image.Image, name: str, size: int | None = None,
                stored: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """-> (RGB float tensor, upright (H, W) of the full image). With `size`, the tensor may
    be a shrunk copy (see `_shrink`); `stored` is the file's (W, H) before a JPEG draft."""
    # Read the orientation from the file's own image: a reduced copy has lost the format's
    # own reader (PNG text-chunk EXIF). A TIFF is turned upright by PIL as it loads.
    upright = _UPRIGHT.get(img.getexif().get(ExifTags.Base.Orientation, 1))
    w, h = stored or img.size
    full = (w, h) if upright in _QUARTER_TURNS else (h, w)
    if size is not None:
        img = _shrink(img, size)
    if upright is not None:
        img = img.transpose(upright)
    return _pil_pixels(img, name), full


def _pil_pixels(img: Image.Image, name: str) -> torch.Tensor:
    if img.mode in _HIGH_BIT_MODES:
        # No RGB mode in PIL holds 16 bits, so a grey profile can't be applied without going
        # through 8 bits; the grey tone curve is left as is.
        arr = np.array(img)
        if img.mode == "I":  # 32-bit ints: PIL's mode for 16-bit grey PNG/TIFF
            arr = arr.clip(0, 65535).astype(np.uint16)
        return _channels_to_rgb(_array_to_chw(arr), name)
    rgb_mode = "RGBA" if img.has_transparency_data else "RGB"
    # CMYK and grey ICC profiles describe the original channels, so those two reach RGB
    # through the profile; PIL expands the rest (P, LA, 1, ...) first.
    if img.mode not in ("CMYK", "L", rgb_mode):
        img = img.convert(rgb_mode)
    img = _to_srgb(img, name)
    if img.mode != rgb_mode:
        img = img.convert(rgb_mode)
    return _channels_to_rgb(_array_to_chw(np.array(img)), name)


def _is_colour16(img: Image.Image) -> bool:
    """A 16-bit RGB(A) PNG or TIFF (what --bit-depth 16 writes): PIL has no 16-bit colour
    mode and would read it at 8 bits."""
    if img.format not in ("PNG", "TIFF") or img.mode not in ("RGB", "RGBA"):
        return False
    for tile in img.tile:
        rawmode = tile.args[0] if isinstance(tile.args, tuple) else tile.args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _colour16_to_rgb(img: Image.Image, path: StrPath, size: int | None
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
    """A 16-bit colour file read by OpenCV, all 16 bits kept: alpha over white and any
    shrinking (box average, as `_shrink`) done in uint16 bands, orientation from the file's
    EXIF (OpenCV ignores it when reading unchanged). -> (tensor, upright full (H, W))."""
    import cv2  # only 16-bit colour files need OpenCV here; the rest of io stays without it

    try:
        arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error) as e:
        raise ArtconvError(_one_line(f"{path}: truncated or corrupt image ({e})")) from None
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ArtconvError(f"{path}: truncated or corrupt image (cannot decode its 16-bit "
                           "colour)")
    h, w = arr.shape[:2]
    rgb = np.empty((h, w, 3), np.uint16)
    band = max(1, _BAND_PIXELS // w)
    for top in range(0, h, band):  # bands: no full-size float copy
        part = arr[top:top + band]
        colour = part[..., 2::-1].astype(np.float32)
        if part.shape[2] == 4:
            alpha = part[..., 3:].astype(np.float32) / 65535
            colour = colour * alpha + 65535 * (1 - alpha)
        rgb[top:top + band] = np.rint(colour)
    del arr
    factor = max(h, w) // (2 * size) if size is not None else 0
    if factor >= 2:
        rgb = cv2.resize(rgb, (-(-w // factor), -(-h // factor)), interpolation=cv2.INTER_AREA)
    upright = _UPRIGHT.get(img.getexif().get(ExifTags.Base.Orientation, 1))
    full = (w, h) if upright in _QUARTER_TURNS else (h, w)
    out = _channels_to_rgb(_array_to_chw(rgb), str(path))
    if upright is not None:
        out = _transpose(out, upright)
    return out, full


def _transpose(chw: torch.Tensor, how: Image.Transpose) -> torch.Tensor:
    """PIL's transposition of an image, on a (C, H, W) tensor."""
    T = Image.Transpose
    flips = {T.FLIP_LEFT_RIGHT: (False, True, False), T.FLIP_TOP_BOTTOM: (True, False, False),
             T.ROTATE_180: (True, True, False), T.TRANSPOSE: (False, False, True),
             T.ROTATE_90: (True, False, True), T.ROTATE_270: (False, True, True),
             T.TRANSVERSE: (True, True, True)}
    rows, cols, swap = flips[how]
    if swap:
        chw = chw.transpose(1, 2)
    dims = [d for d, f in ((1, rows), (2, cols)) if f]
    return chw.flip(dims) if dims else chw


def _draft(img: Image.Image, size: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when that still leaves twice `size`
    (a no-op for other formats); `_shrink` does the rest after decoding."""
    w, h = img.size
    scale = 2 * size / max(w, h)
    if scale < 1:
        img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))


def _shrink(img: Image.Image, size: int) -> Image.Image:
    """Box-average by the largest whole factor that leaves at least twice `size` px on the
    longest side, in the image's own bit depth. A 10000 px image asked for at 32 px then
    never becomes a 1.2 GB float tensor, and the antialiased float resize that follows still
    has twice the pixels it needs, so the result stays within a few /255 of resizing the
    whole image. Modes that must be converted first (palettes, straight alpha) are converted
    a band of rows at a time, so no full-size converted copy exists either."""
    factor = max(img.size) // (2 * size)
    mode = _reduce_mode(img)
    if factor < 2 or mode is None:
        return img
    if mode == img.mode and mode in _REDUCIBLE:
        return img.reduce(factor)
    w, h = img.size
    rows = factor * max(1, _BAND_PIXELS // (w * factor))  # bands start on the box grid
    out = Image.new(mode, (-(-w // factor), -(-h // factor)))
    for top in range(0, h, rows):
        band = img.crop((0, top, w, min(h, top + rows)))
        if band.mode != mode:
            band = band.convert(mode)
        if mode in _PREMULTIPLIED:
            # Straight alpha would average the colour hidden under transparent pixels into
            # the visible ones.
            band = band.convert(_PREMULTIPLIED[mode]).reduce(factor).convert(mode)
        else:
            band = band.reduce(factor)
        out.paste(band, (0, top // factor))
    out.info = {k: v for k, v in img.info.items() if k != "transparency"}
    return out


def _reduce_mode(img: Image.Image) -> str | None:
    """The mode `img` is averaged in, or None when it is left for the float resize."""
    if img.mode == "1":
        return "L"
    if img.mode in _HIGH_BIT_MODES:
        return "I" if img.mode.startswith("I;16") else img.mode  # "I" keeps all 16 bits
    if img.mode in ("P", "PA") or "transparency" in img.info:
        # Palette indices and transparent-colour keys mean nothing once averaged.
        alpha = "LA" if img.mode == "L" else "RGBA"
        return alpha if img.has_transparency_data else "RGB"
    return img.mode if img.mode in _REDUCIBLE or img.mode in _PREMULTIPLIED else None


def _to_srgb(img: Image.Image, name: str) -> Image.Image:
    icc = img.info.get("icc_profile")
    if not icc:
        return img  # untagged images are taken as sRGB already
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, profile, _SRGB, outputMode=out_mode)
    except (OSError, ImageCms.PyCMSError) as e:
        warnings.warn(
            _one_line(f"{name}: ignoring unusable ICC profile ({e}); colours may be off"),
            stacklevel=4,
        )
        return img


def _array_to_chw(arr: np.ndarray) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.size == 0:
        raise ArtconvError(
            f"array of shape {arr.shape}: not an image (expected (H, W) or (H, W, C), C of 1, 3, 4)"
        )
    # torch.tensor copies (so read-only and negatively strided arrays are fine) but only
    # understands native byte order, which e.g. big-endian 16-bit TIFFs are not in.
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    return torch.tensor(arr).permute(2, 0, 1)


def _tensor_to_chw(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4) or t.numel() == 0:
        raise ArtconvError(
            f"tensor of shape {tuple(t.shape)}: not an image "
            "(expected (C, H, W), (1, C, H, W) or (H, W), C of 1, 3, 4)"
        )
    return t


def _channels_to_rgb(chw: torch.Tensor, name: str) -> torch.Tensor:
    """(1|3|4, H, W) of any accepted dtype -> float32 (3, H, W) in [0, 1], alpha over white."""
    if chw.dtype == torch.uint8:
        x = chw.float() / 255
    elif chw.dtype == torch.uint16:
        x = chw.float() / 65535
    elif chw.is_floating_point():
        x = chw.float().clamp(0, 1)
    else:
        raise ArtconvError(
            f"{name}: unsupported pixel type {chw.dtype} (use uint8, uint16 or float in [0, 1])"
        )
    if x.shape[0] == 1:
        return x.expand(3, -1, -1)
    if x.shape[0] == 4:
        rgb, alpha = x[:3], x[3:]
        return torch.lerp(torch.ones_like(rgb), rgb, alpha)
    return x


# --------------------------------------------------------------------------- resizing


def resize_longest(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(N, C, H, W)`` so the longest side is ``size``, keeping aspect."""
    if size < 1:
        raise ArtconvError(f"size {size}: must be at least 1 pixel")
    return resize_to(img, fit_longest(img.shape[-2:], size))


def fit_longest(hw: Sequence[int], size: int) -> tuple[int, int]:
    """(height, width) scaled so the longest side is ``size``, aspect kept, each side >= 1.

    Every --size and --style-scale passes through here, so an image that would be too big
    for memory is refused here, before anything is allocated."""
    h, w = int(hw[0]), int(hw[1])
    scale = size / max(h, w)
    out = max(1, round(h * scale)), max(1, round(w * scale))
    if out[0] * out[1] > max_pixels_limit():
        raise ArtconvError(
            f"--size {size}: a {out[1]}x{out[0]} image is {_megapixels(out[0] * out[1])}, over "
            f"the {_megapixels(max_pixels_limit())} limit (choose a smaller --size or "
            "--style-scale, or set ARTCONV_MAX_PIXELS higher if you have the memory)")
    return out


def resize_to(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(N, C, H, W)`` float images to exactly ``hw``, antialiased.

    Every source is resized here, as a float tensor, rather than in PIL: the result is the
    same whether the image came from a file, an array or a tensor, and 16-bit data keeps
    its precision (PIL can only resample multi-channel images at 8 bits).
    """
    if tuple(img.shape[-2:]) == tuple(hw):
        return img
    out = TF.resize(img, list(hw), interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    return out.clamp_(0, 1)  # bicubic overshoots at edges


def resize_circular(x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (half-pixel centres, no clamping) on a torus: the edges wrap around, so a
    tileable image stays tileable."""
    for dim, n in ((-2, int(hw[0])), (-1, int(hw[1]))):
        m = x.shape[dim]
        if m == n:
            continue
        u = (torch.arange(n, dtype=torch.float64) + 0.5) * (m / n) - 0.5
        lo = torch.floor(u)
        frac = (u - lo).to(x.dtype).to(x.device)
        i0 = lo.long().remainder(m).to(x.device)
        i1 = (i0 + 1).remainder(m)
        shape = [1] * x.dim()
        shape[dim] = n
        frac = frac.view(shape)
        x = x.index_select(dim, i0) * (1 - frac) + x.index_select(dim, i1) * frac
    return x


def to_pil(img: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` float tensor in [0, 1] -> 8-bit RGB PIL image."""
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] != 3:
        raise ArtconvError(
            f"tensor of shape {tuple(img.shape)}: not an RGB image (expected (3, H, W) "
            "or (1, 3, H, W))"
        )
    # to_pil_image truncates floats (x * 255 -> uint8), which darkens and breaks round trips.
    # clamp makes the one float copy; scaling and rounding reuse it (a print is 12 bytes
    # per pixel a copy)
    u8 = img.detach().float().clamp(0, 1).mul_(255).round_().to(torch.uint8).cpu()
    return TF.to_pil_image(u8)


# --------------------------------------------------------------------------- saving


def save_image(
    img: torch.Tensor | Image.Image,
    path: StrPath,
    *,
    recipe: dict[str, Any] | None = None,
    inputs: Sequence[StrPath] = (),
    overwrite: bool = True,
    quality: int = 95,
    depth: int = 8,
) -> Path:
    """Atomically save ``img`` to ``path``, in the format its extension names.

    ``recipe`` (JSON-serialisable) goes into a PNG text chunk, or for other formats into a
    ``<path>.json`` sidecar; :func:`read_recipe` reads either. ``path`` may never be one of
    ``inputs``, and may only already exist if ``overwrite``. ``depth`` 16 writes 16 bits
    per channel (for print; PNG and TIFF only, from a tensor).
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ArtconvError(
            f"{path}: unsupported output format '{path.suffix}' (use .png, .jpg, .webp, .tif)"
        )
    side = _sidecar(path)
    for src in inputs:
        if same_file(path, src) or (fmt != "PNG" and recipe is not None
                                    and same_file(side, src)):
            raise ArtconvError(f"{path}: refusing to overwrite an input image ({src}); "
                               "choose another output path")
    if not overwrite and path.exists():
        raise ArtconvError(f"{path}: exists (use --overwrite)")
    check_depth(path, depth)
    if depth == 16 and not isinstance(img, Image.Image):
        return _save16(img, path, fmt, None if recipe is None else
                       json.dumps(recipe, sort_keys=True))

    pil = img if isinstance(img, Image.Image) else to_pil(img)
    # Serialise first so a bad recipe fails before anything is written.
    recipe_json = None if recipe is None else json.dumps(recipe, sort_keys=True)
    options: dict[str, Any] = {}
    if fmt == "PNG":
        if recipe_json is not None:
            options["pnginfo"] = PngImagePlugin.PngInfo()
            options["pnginfo"].add_itxt(RECIPE_KEY, recipe_json)
    elif fmt == "JPEG":
        pil = pil.convert("RGB")  # JPEG has no alpha
        options["quality"] = quality
    elif fmt == "WEBP":
        options["quality"] = quality
    elif fmt == "TIFF":
        options["compression"] = "tiff_deflate"

    sidecar_bytes = recipe_json.encode() if recipe_json is not None and fmt != "PNG" else None
    with atomic_output(path, sidecar_bytes, suffix_hint=path.suffix) as tmp:
        pil.save(tmp, format=fmt, **options)
    return path


DEPTH_FORMATS = ("PNG", "TIFF")  # the formats 16 bits per channel are written in


def check_depth(path: StrPath, depth: int) -> None:
    """Refuse, before any work, a bit depth the output's format cannot hold."""
    if depth not in (8, 16):
        raise ArtconvError(f"{path}: bit depth {depth} (use 8 or 16)")
    if depth == 16 and SAVE_FORMATS.get(Path(path).suffix.lower()) not in DEPTH_FORMATS:
        raise ArtconvError(f"{path}: 16 bits per channel need a .png or .tif output")


def _save16(img: torch.Tensor, path: Path, fmt: str, recipe_json: str | None) -> Path:
    """16-bit RGB PNG or TIFF (deflate): PIL writes neither, so the few chunks or tags
    are written here. The PNG carries the recipe in the same iTXt chunk PIL reads."""
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] != 3:
        raise ArtconvError(f"{path}: not an RGB image (shape {tuple(img.shape)})")
    # one float copy (clamp), scaled and rounded in place, then straight to uint16 in
    # (H, W, C) order: no int32 and no second contiguous copy of a print-sized image
    scaled = img.detach().float().clamp(0, 1).mul_(65535).round_().cpu()
    arr = scaled.permute(1, 2, 0).numpy().astype(np.uint16, order="C")
    data = _png16(arr, recipe_json) if fmt == "PNG" else _tiff16(arr)
    sidecar = recipe_json.encode() if recipe_json is not None and fmt != "PNG" else None
    with atomic_output(path, sidecar, suffix_hint=path.suffix) as tmp:
        Path(tmp).write_bytes(data)
    return path


def _png16(arr: np.ndarray, text: str | None) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    h, w, _ = arr.shape
    rows = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(h, w * 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter 0 per row
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))]
    if text is not None:  # keyword, no compression, no language, no translated keyword
        out.append(chunk(b"iTXt", RECIPE_KEY.encode() + b"\0\0\0\0\0" + text.encode()))
    out += [chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), chunk(b"IEND", b"")]
    return b"".join(out)


def _tiff16(arr: np.ndarray) -> bytes:
    import struct
    import zlib

    h, w, _ = arr.shape
    strip = zlib.compress(np.ascontiguousarray(arr, dtype="<u2").tobytes(), 6)
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, None), (259, 3, 1, 8),
            (262, 3, 1, 2), (273, 4, 1, None), (277, 3, 1, 3), (278, 4, 1, h),
            (279, 4, 1, len(strip)), (284, 3, 1, 1)]
    ifd_at = 8
    ifd_size = 2 + 12 * len(tags) + 4
    bits_at = ifd_at + ifd_size  # three SHORTs do not fit in a tag's 4 bytes
    strip_at = bits_at + 6
    body = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        if tag == 258:
            value = bits_at
        elif tag == 273:
            value = strip_at
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and count == 1 else \
            struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    body += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + body + struct.pack("<3H", 16, 16, 16) + strip


# One definition of each, in artconv.outputs; these names stay for existing importers.
same_file = outputs.same_file
_sidecar = outputs.sidecar


def read_recipe(path: StrPath) -> dict[str, Any]:
    """The recipe :func:`save_image` stored with ``path``: its PNG chunk, else its sidecar."""
    p = Path(path)
    with _open_image(p, max_pixels=None) as img:
        text = img.info.get(RECIPE_KEY)
    sidecar = _sidecar(p)
    if text is None and sidecar.is_file():
        text = sidecar.read_text(encoding="utf-8")
    if text is None:
        raise ArtconvError(f"{p}: carries no artconv recipe")
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtconvError(f"{p}: artconv recipe is not valid JSON ({e})") from None
    if not isinstance(recipe, dict):
        raise ArtconvError(f"{p}: artconv recipe is not a JSON object")
    return recipe
