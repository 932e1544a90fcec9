"""Batch style transfer of a whole folder: every image in FOLDER x every style, with a live
progress bar, a summary table at the end and a contact sheet (inputs down, styles across).

    python samples/batch_folder.py photos/ --styles starry.jpg,scream.jpg --out-dir out/

Outputs are named PHOTO_STYLE.png in --out-dir; existing ones are skipped, so re-running after
an interruption (or after adding photos) renders only what is missing. With an own network
name its layers, e.g. --backbone tiny_darknet/load.py:build --content-layers lrelu10
--style-layers lrelu1,lrelu2,lrelu4,lrelu8,lrelu12.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from artconv import batch
from artconv.progress import Progress
from artconv.style import StyleOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--styles", required=True, help="comma-separated style images")
    p.add_argument("--out-dir", default="out")
    p.add_argument("--sheet", help="contact sheet path (default OUT_DIR/contact_sheet.png)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--weights", default="imagenet", help="imagenet, caffe, a file or random")
    p.add_argument("--backbone", help="FILE.py:FUNCTION, an own network instead of VGG")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=1,
                   help="same-sized photos optimised together (faster on a GPU)")
    p.add_argument("--content-layers", help="default relu4_2")
    p.add_argument("--style-layers", help="default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    args = p.parse_args(argv)

    out_dir = Path(args.out_dir)
    if out_dir.resolve() == Path(args.folder).resolve():
        p.error("--out-dir must differ from FOLDER (outputs would become inputs next time)")
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    jobs = batch.plan("style", args.folder, styles=styles, out_dir=out_dir)
    # StyleOptions.from_dict turns the comma strings into layer tuples; None = engine default.
    given = {"weights": args.weights, "backbone": args.backbone, "size": args.size,
             "iterations": args.iterations, "content_layers": args.content_layers,
             "style_layers": args.style_layers}
    options = StyleOptions.from_dict({k: v for k, v in given.items() if v is not None})
    # One display for the whole batch: the overall bar stays, each job's bar comes and goes.
    with Progress(transient_tasks=True) as progress:
        report = batch.render(jobs, {"style": options}, overwrite=args.overwrite,
                              batch_size=args.batch_size, progress=progress)

    table = Table(title=f"{report.count('done')} done, {report.count('skipped')} skipped, "
                        f"{report.count('failed')} failed in {report.seconds:.1f} s",
                  title_justify="left")
    for column in ("output", "status", "seconds", "reason"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        table.add_row(r.job.output, r.status, f"{r.seconds:.1f}", r.reason)
    Console().print(table)
    # Failed jobs show as crossed grey cells, so the sheet is worth writing either way.
    sheet = batch.sheet_for(report, args.sheet or out_dir / "contact_sheet.png")
    print(f"contact sheet: {sheet}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
