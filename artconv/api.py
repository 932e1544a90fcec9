"""The one-call Python API that sits above the engines: it reads presets and asks the
registry which engine serves a call (`stylize(model=...)` is the fast engine), so no engine
needs to know either.

`artconv.stylize` is this module's; `artconv.style.stylize` (and `resolve_styles`,
`build_options`) still reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from artconv import registry
from artconv.engine import Callback, Display
from artconv.errors import ArtconvError
from artconv.io.images import ImageSource, load_image, to_pil
from artconv.nets.extractor import FeatureExtractor
from artconv.presets import Sources, options_for, resolve_sources
from artconv.style.engine import StyleTransfer
from artconv.style.options import StyleOptions

StyleSources = Sources  # the name scripts know; presets owns the idea for every engine


def resolve_styles(styles: ImageSource | Sequence[ImageSource]) -> Sources:
    """Each style is an image (path, PIL, array, tensor) or the name of a style preset,
    which brings its images and its options (see `presets.resolve_sources`)."""
    return resolve_sources(styles, "style")


def build_options(sources: Sources | None = None, preset: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> StyleOptions:
    """Defaults < options of style presets named as STYLE < `preset` < explicit `overrides`
    (the one merge, `presets.options_for`)."""
    return options_for("style", preset, overrides,
                       named=sources.presets if sources is not None else ())


def stylize(content: ImageSource, style: ImageSource | Sequence[ImageSource] | None = None, *,
            preset: str | None = None, extractor: FeatureExtractor | None = None,
            progress: Display | None = None, callback: Callback | None = None,
            **options: Any) -> Image.Image:
    """Stylise `content` with one style image or several (`blend=` weights) and return the
    result as a PIL image. Images may be paths, PIL images, arrays or tensors; a style may
    also be a style preset's name. `options` are `StyleOptions` fields and override
    `preset`'s values.

    With `model=` (a trained network: `artconv train`'s .safetensors, a pytorch/examples
    .pth or a published model's name) and no style, the registry's engine for it (the fast
    engine) makes the picture in one pass: `stylize("photo.jpg", model="m.safetensors",
    size=512)`; `options` are then its fields."""
    engine, values = registry.route("style", options)
    if engine != "style":
        if style is not None:
            raise ArtconvError("stylize: give a style or model=, not both (the model is the "
                               "style)")
        opts = options_for(engine, preset, values)
        routed = registry.get(engine).engine(opts, progress=progress)
        return to_pil(routed.run(load_image(content, opts.size)[None], callback=callback)[0])
    if style is None:
        raise ArtconvError("stylize: give a style image or preset (or model=)")
    sources = resolve_styles(style)
    opts = build_options(sources, preset, options)
    opts.blend_weights(len(sources.images))  # fail before loading anything
    st = StyleTransfer(opts, extractor=extractor, progress=progress)
    styles = [load_image(s, opts.style_size) for s in sources.images]
    out = st.run(load_image(content, opts.output_size), styles, callback=callback)
    return to_pil(out[0])
