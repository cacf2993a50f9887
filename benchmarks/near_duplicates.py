"""How well the audit's near-duplicate rule finds copies, and how often it mistakes look-alikes.

On Fashion-MNIST's test split (offline: the demo's data): the first N images are scanned as a
split; copies of a seeded sample of them are made three ways (resized 2x, re-encoded as JPEG
quality 75, brightened 15%) and scanned as another split. Printed, per kind of copy: how many
the rule pairs with their original, and how many pairs of different images it reports; then
the pairs of different images within the N originals, by the hash alone and by the rule
(hash <= HASH_DISTANCE bits and thumbnail correlation >= CORRELATION); and the time per image.

  .venv/bin/python benchmarks/near_duplicates.py                 # 3,000 images, 60 copies
  .venv/bin/python benchmarks/near_duplicates.py --images=10000 --copies=200
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image, ImageEnhance

from sft_tf.data import examples as examples_lib
from sft_tf.data import near_duplicates as near_lib
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources

COPIES = {
    "resized 2x": lambda im: im.resize((im.width * 2, im.height * 2), Image.BICUBIC),
    "JPEG quality 75": lambda im: Image.open(io.BytesIO(_jpeg(im, 75))),
    "brightened 15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
}


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _thumbnails(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(hashes, thumbnails, seconds per image) of uint8 [N, H, W, 1] images, via the scan."""
    examples = examples_lib.Examples(("x",), np.zeros(len(pixels), np.int32), pixels=pixels)
    start = time.perf_counter()
    thumbs = scan_lib.scan_images(examples).thumbnails
    hashes = near_lib.perceptual_hashes(thumbs)
    return hashes, thumbs, (time.perf_counter() - start) / len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    test = sources.load_examples("fashion_mnist:test", field="benchmark")
    originals = test.pixels[: args.images]
    hashes, thumbs, per_image = _thumbnails(originals)
    print(f"{len(originals)} Fashion-MNIST test images; scan + hash {per_image * 1e3:.2f} ms each")
    picks = np.random.default_rng(args.seed).choice(len(originals), args.copies, replace=False)
    for kind, make in COPIES.items():
        copies = [
            np.asarray(make(Image.fromarray(originals[i][..., 0])).convert("L"))[..., None]
            for i in picks
        ]
        size = max(c.shape[0] for c in copies)
        copies = np.stack(
            [np.asarray(Image.fromarray(c[..., 0]).resize((size, size)))[..., None] for c in copies]
        )
        copy_hashes, copy_thumbs, _ = _thumbnails(copies)
        pairs = near_lib.find_pairs(copy_hashes, copy_thumbs, hashes, thumbs)
        found = {(p.a, p.b) for p in pairs}
        hits = sum((k, int(i)) in found for k, i in enumerate(picks))
        wrong = sum(int(picks[p.a]) != p.b for p in pairs)
        print(f"  {kind:<16} found {hits}/{len(picks)}; pairs with a different image: {wrong}")
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    upper = np.triu(np.ones_like(distance, bool), 1)
    by_hash = int((upper & (distance <= near_lib.HASH_DISTANCE)).sum())
    by_rule = len(near_lib.find_pairs(hashes, thumbs))
    total = len(originals) * (len(originals) - 1) // 2
    print(
        f"Pairs among the originals ({total:,}): {by_hash} within {near_lib.HASH_DISTANCE} "
        f"bits by the hash alone, {by_rule} by the rule (hash and correlation >= "
        f"{near_lib.CORRELATION})"
    )


if __name__ == "__main__":
    main()
