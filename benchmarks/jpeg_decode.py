"""JPEG decoding for the model's size: scaled down in the DCT domain vs a full decode, measured
in one run.

sft_tf decodes a JPEG whose short side is at least twice the model's size at 1/2, 1/4 or 1/8
scale before resizing it (`sft_tf/data/decode.py`); the full decode it replaces is the same
resize after decoding every pixel. For photo-like JPEGs (smooth colour, mild sensor-like
noise; quality 90, as phone cameras write) at a few camera sizes and two model sizes, printed:
milliseconds a decode each way (best of the alternated repeats), their ratio, and how far the
pixels are apart (max and mean absolute difference, 0-255 levels).

  .venv/bin/python benchmarks/jpeg_decode.py
  .venv/bin/python benchmarks/jpeg_decode.py --sizes=224 --repeats=10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from sft_tf.data import decode

CAMERAS = {"12 MP": (3024, 4032), "3 MP": (1536, 2048), "1 MP": (960, 1280), "VGA": (480, 640)}


def photo_jpeg(height: int, width: int, seed: int = 0) -> tf.Tensor:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    rng = np.random.default_rng(seed)
    waves = [np.sin(23 * x + 3 * c) * np.cos(17 * y - c) for c in range(3)]
    pixels = 128 + 90 * np.stack(waves, -1) + rng.normal(0, 6, (height, width, 3))
    return tf.io.encode_jpeg(np.clip(pixels, 0, 255).astype(np.uint8), quality=90)


def timed_ms(fn, encoded: tf.Tensor) -> float:
    start = time.perf_counter()
    fn(encoded).numpy()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,96", help="model image sizes")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'camera':>6} {'model px':>8} {'scaled ms':>9} {'full ms':>8} {'ratio':>6} "
          f"{'max diff':>8} {'mean diff':>9}")  # fmt: skip
    for camera, (height, width) in CAMERAS.items():
        encoded = photo_jpeg(height, width)
        for size in map(int, args.sizes.split(",")):
            scaled = tf.function(lambda e, s=size: decode.decode_image(e, s))
            full = tf.function(lambda e, s=size: decode.resize(decode.decode_rgb(e), s))
            a, b = scaled(encoded).numpy(), full(encoded).numpy()  # traced, and compared
            diff = np.abs(a.astype(int) - b.astype(int))
            timings = {"scaled": [], "full": []}
            for _ in range(args.repeats):  # alternated: this host's speed drifts
                timings["scaled"].append(timed_ms(scaled, encoded))
                timings["full"].append(timed_ms(full, encoded))
            s, f = min(timings["scaled"]), min(timings["full"])
            print(f"{camera:>6} {size:>8} {s:>9.1f} {f:>8.1f} {s / f:>6.2f} "
                  f"{diff.max():>8} {diff.mean():>9.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
