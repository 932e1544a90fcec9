"""Dream zoom: dream an image, zoom into the result, dream again, ... and write the frames
as a looping GIF. The frames go into a folder next to the GIF (zoom.gif -> zoom/frame_000001.png
...); run the same command again after an interruption and it continues where it stopped.

    python samples/dream_zoom.py photo.jpg -o zoom.gif --frames 30 --zoom 1.05

On CPU, try it small: --size 256 --octaves 2 --steps 5. With an own network name its layers,
e.g. --backbone tiny_darknet/load.py:build --layers lrelu10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import artconv
from artconv.deepdream.zoom import write_gif
from artconv.progress import Progress


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("-o", "--output", default="zoom.gif")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--zoom", type=float, default=1.05, help="zoom from one frame to the next")
    p.add_argument("--rotate", type=float, default=0.0, help="degrees per frame")
    p.add_argument("--fps", type=float, default=12.5)
    p.add_argument("--weights", default="imagenet", help="imagenet, caffe, a file or random")
    p.add_argument("--backbone", help="FILE.py:FUNCTION, an own network instead of VGG")
    p.add_argument("--size", type=int, default=512, help="longest side of the frames")
    p.add_argument("--layers", help="layers to amplify (default relu4_2,relu5_1)")
    p.add_argument("--octaves", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="gradient steps per octave")
    args = p.parse_args(argv)

    gif = Path(args.output)
    folder = gif.with_suffix("")
    # Fewer octaves than a still dream: each frame starts from an already dreamed picture, so
    # the patterns only need to grow a little per frame, and the run stays affordable.
    options = {"weights": args.weights, "backbone": args.backbone, "size": args.size,
               "layers": args.layers, "octaves": args.octaves, "steps": args.steps,
               "frames": args.frames, "zoom": args.zoom, "rotate": args.rotate}
    # Options left unset (None) keep the engine's defaults.
    options = {k: v for k, v in options.items() if v is not None}
    # dream_frames keeps the frames already in the folder and continues after the last one,
    # so the same seed and options must be given again to resume.
    with Progress() as progress:
        frames = artconv.dream_frames(args.image, folder, progress=progress, **options)
    write_gif(frames, gif, duration_ms=round(1000 / args.fps))
    print(f"wrote {gif} ({len(frames)} frames from {folder}/)")


if __name__ == "__main__":
    main()
