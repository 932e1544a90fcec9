"""Ray batch rendering: an actor per worker (what RayRunner does) vs plain tasks that keep a
cached LocalRunner per worker process, and vs tasks whose process is not reused (Ray's
default for tasks that reserve a GPU: max_calls=1).

    .venv/bin/python benchmarks/bench_ray.py [--jobs 12] [--cpus 2] [--size 64]

Starts its own local Ray instance. Prints wall time per variant (after Ray is up), networks
loaded and the network load time; never asserts on time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, seed: int, size: int) -> str:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([x, y, 1 - x], -1) + 0.1 * rng.standard_normal((size, size, 3))
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


@functools.cache
def _cached_runner():  # one per worker process (tasks reuse their process on CPU)
    from artconv.batch import LocalRunner

    return LocalRunner()


def _task(jobs, options, batch_size):
    from artconv.batch.ray import render_records

    return render_records(_cached_runner(), jobs, options, batch_size)


def _run_tasks(ray, jobs, options, cpus, max_calls):
    from artconv.batch.ray import _option_record

    fn = ray.remote(num_cpus=cpus, max_calls=max_calls)(_task)
    records = {"style": _option_record("style", options)}
    refs = [fn.remote([j.to_dict()], records, 1) for j in jobs]
    stats: dict[str, int] = {}
    pids = set()
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        payload = ray.get(ready[0])
        assert all(r["status"] == "done" for r in payload["results"]), payload
        pids.add(payload["pid"])
        for k, v in payload["stats"].items():
            stats[k] = stats.get(k, 0) + v
    return {**stats, "worker_processes": len(pids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--arch", default="vgg19")
    args = parser.parse_args()

    import ray
    import torch

    from artconv import batch
    from artconv.batch.ray import RayRunner
    from artconv.nets.extractor import FeatureExtractor
    from artconv.style import StyleOptions

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    contents = [_image(work / f"c{i}.png", i, args.size) for i in range(args.jobs)]
    style = _image(work / "style.png", 99, args.size)
    opts = StyleOptions(arch=args.arch, weights="random", size=args.size,
                        iterations=(args.iterations,), precision="fp32", device="cpu")
    t = time.perf_counter()
    FeatureExtractor.from_options(opts)
    load_s = time.perf_counter() - t

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - t
    out: dict[str, object] = {"jobs": args.jobs, "cpus": args.cpus, "size": args.size,
                              "network_load_s": round(load_s, 3),
                              "ray_init_s": round(init_s, 2)}
    variants = {
        "actors (RayRunner)": lambda jobs: batch.render(
            jobs, {"style": opts}, runner=RayRunner()).stats,
        "tasks, cached runner per process": lambda jobs: _run_tasks(ray, jobs, opts, 1, 0),
        "tasks, process not reused (max_calls=1)": lambda jobs: _run_tasks(ray, jobs, opts,
                                                                             1, 1),
    }
    for round_ in range(2):  # round 0 warms the OS caches and Ray's worker pool
        for name, fn in variants.items():
            jobs = batch.plan("style", contents, styles=[style],
                              out_dir=work / f"out_{round_}_{len(name)}")
            t = time.perf_counter()
            stats = fn(jobs)
            if round_:
                out[name] = {"seconds": round(time.perf_counter() - t, 2),
                             "networks_loaded": stats.get("networks_loaded"),
                             "workers": stats.get("ray_workers",
                                                  stats.get("worker_processes"))}
    ray.shutdown()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    # import by name, so Ray workers find _task (the script's folder is on their path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_ray

    bench_ray.main()
