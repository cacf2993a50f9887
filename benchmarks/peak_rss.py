"""Ratio 4 of benchmarks/input_pipeline.py: peak resident memory of listing, scanning and two
cached training epochs over a small and a big JPEG folder, for each pixel-cache mode.

Each measurement runs in a fresh process (this file run as a script) so that one mode's peak
cannot hide another's; input_pipeline.py writes the folders and calls `measure`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
MEMORY_BUDGET_MB = 2048  # data.cache_memory_mb's default: decides whether the scan keeps pixels
SHUFFLE_BUDGET_MB = 64  # small on purpose: the disk cache's shuffle buffer is bounded by it


def child(folder: str, cache: str, cache_dir: str, image_size: int, batch: int) -> None:
    """In the measuring process: list, scan, two training epochs; prints peak RSS in MB."""
    sys.path.insert(0, str(REPO))
    from sft_tf.data import caches, pipeline
    from sft_tf.data import scan as scan_lib
    from sft_tf.data import sources as sources_lib
    from sft_tf.training import screening

    examples = sources_lib.load_examples(f"folder:{folder}")
    # As `sft-tf train` screens: the scan keeps the pixels when the memory cache would.
    keep = screening.keeps_decoded(examples, image_size, cache, MEMORY_BUDGET_MB)
    scan = scan_lib.scan_images(examples, keep=(image_size, "resize") if keep else None)
    examples = scan_lib.drop_bad(scan_lib.keep_decoded(examples, scan), scan)
    plan = caches.cache_plan(examples, image_size, cache, MEMORY_BUDGET_MB, cache_dir, "rss")
    ds = pipeline.build_dataset(
        examples,
        image_size,
        batch,
        True,
        cache=plan,
        memory_budget_mb=SHUFFLE_BUDGET_MB,
        until_epoch=2,
    )
    for _ in ds:
        pass
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that over exec from the forked parent, so a
    child started by a big parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(folders: dict[str, Path], workdir: Path, image_size: int, batch: int) -> dict:
    """{"<mode> <images>": {peak_rss_mb, decoded_pixels_mb}} for every cache mode and both of
    `folders` (each holds a .complete file with its image count)."""
    out = {}
    for cache in ("memory", "disk", "off"):
        for folder in folders.values():
            count = int((folder / ".complete").read_text())
            flags = [f"--folder={folder}", f"--cache={cache}", f"--workdir={workdir}"]
            flags += [f"--image_size={image_size}", f"--batch={batch}"]
            result = subprocess.run(
                [sys.executable, __file__, *flags], capture_output=True, text=True, check=True
            )
            rss = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]
            out[f"{cache} {count}"] = {
                "peak_rss_mb": rss,
                "decoded_pixels_mb": count * image_size * image_size * 3 / 2**20,
            }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--cache", default="memory")
    parser.add_argument("--workdir", default="/tmp/sft_tf_bench")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    cache_dir = str(Path(args.workdir) / "rss_cache")
    child(args.folder, args.cache, cache_dir, args.image_size, args.batch)
