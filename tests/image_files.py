"""Real image files in the awkward formats users' folders contain, and broken ones.

Pillow writes the formats TensorFlow cannot encode (CMYK JPEG, palette PNG, animated GIF, BMP,
WebP); every file is a real encoding read back by the code under test, never a stand-in.
"""

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

RED = (220, 30, 30)


def solid(colour=RED, h: int = 20, w: int = 30) -> np.ndarray:
    """uint8 [h, w, 3] of one colour."""
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def odd_images(colour=RED) -> dict[str, bytes]:
    """Valid but awkward encodings of a solid `colour` image, keyed by a file name."""
    rgb = solid(colour)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=-1)
    first, second = Image.fromarray(rgb), Image.fromarray(255 - rgb)
    return {
        "cmyk.jpg": pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "deep16.png": tf.io.encode_png(rgb.astype(np.uint16) * 257).numpy(),
        "opaque_rgba.png": tf.io.encode_png(rgba).numpy(),
        "palette.png": pil_bytes(Image.fromarray(rgb).convert("P"), "PNG"),
        "animated.gif": pil_bytes(first, "GIF", save_all=True, append_images=[second]),
        "bitmap.bmp": pil_bytes(Image.fromarray(rgb), "BMP"),
        "photo.webp": pil_bytes(Image.fromarray(rgb), "WEBP", lossless=True),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Broken files keyed by a file name: (contents, a phrase the reported reason contains)."""
    jpeg = tf.io.encode_jpeg(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    return {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg.numpy()[:300], "truncated or corrupt JPEG"),
        "notes.jpg": (b"shopping list: eggs, milk\n" * 4, "not an image"),
    }


def write_messy_folder(root: Path, per_class: int = 12) -> dict[str, str]:
    """root/<class>/...: good JPEG/PNGs, every odd format in class "cat", bad files planted.

    Returns:
      {path of each bad file: expected reason phrase}.
    """
    colours = {"cat": (220, 30, 30), "dog": (30, 220, 30), "fox": (30, 30, 220)}
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.normal(0, 30, (24, 28, 3))
            pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
            encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
            (folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}").write_bytes(encode(pixels).numpy())
    for file_name, encoded in odd_images(colours["cat"]).items():
        (root / "cat" / file_name).write_bytes(encoded)
    bad = {}
    for (file_name, (contents, reason)), name in zip(bad_files().items(), colours):
        path = root / name / file_name
        path.write_bytes(contents)
        bad[str(path)] = reason
    return bad
