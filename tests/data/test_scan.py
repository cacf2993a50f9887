"""The image scan: bad files and records found and named, duplicates hashed, the pixel limit."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.data import pipeline
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from tests import helpers
from tests.helpers import colour_png, write_pngs, write_records


def test_scan_finds_exactly_the_bad_files_and_the_rest_trains(tmp_path):
    planted = helpers.write_messy_folder(tmp_path, per_class=12)
    examples = sources_lib.load_examples(f"folder:{tmp_path}")
    assert len(examples) == 3 * 12 + 7 + 3
    scan = scan_lib.scan_images(examples)
    bad = dict(scan.bad(examples))
    assert sorted(bad) == sorted(planted)
    for path, phrase in planted.items():
        assert phrase in bad[path], (path, bad[path])
    # Odd but valid files are counted, not dropped.
    by_name = {p.rsplit("/", 1)[-1]: i for i, p in enumerate(examples.paths)}
    assert scan.cmyk[by_name["cmyk.jpg"]] and scan.cmyk.sum() == 1
    assert scan.channels[by_name["opaque_rgba.png"]] == 4
    assert (scan.height[scan.ok] > 0).all() and (scan.height[~scan.ok] == 0).all()
    clean = scan_lib.drop_bad(examples, scan)
    assert len(clean) == len(examples) - 3
    ds = pipeline.build_dataset(clean, 32, batch_size=8, training=True, seed=0)
    batches = list(ds.take(len(clean) // 8))  # a full epoch: no decode error reaches it
    assert len(batches) == len(clean) // 8


def test_a_large_jpeg_is_recorded_at_its_stored_size(tmp_path):
    """Decoded for the model's size, a large JPEG comes out scaled down; the scan still records
    the size it has, as the audit reports it."""
    helpers.write_image(tmp_path / "a" / "large.jpg", helpers.photo(300, 200))
    helpers.write_image(tmp_path / "b" / "large.png", helpers.photo(300, 200))
    examples = sources_lib.load_examples(f"folder:{tmp_path}")
    for scan in (scan_lib.scan_images(examples), scan_lib.scan_images(examples, image_size=32)):
        assert scan.height.tolist() == [300, 300] and scan.width.tolist() == [200, 200]
    kept = scan_lib.scan_images(examples, keep=(32, "crop"))
    assert kept.height.tolist() == [300, 300] and kept.decoded.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="differs from keep's size"):
        scan_lib.scan_images(examples, keep=(32, "crop"), image_size=64)


def test_scan_names_a_bad_record_by_file_and_index(tmp_path):
    good = colour_png((10, 20, 30))
    write_records(tmp_path / "r0", [(good, 0, "a"), (colour_png((9, 9, 9)), 1, "b")])
    write_records(tmp_path / "r1", [(good, 0, "a"), (b"\xff\xd8\xff garbage", 1, "b")])
    examples = sources_lib.load_examples(f"tfrecord:{tmp_path}/r*")
    scan = scan_lib.scan_images(examples)
    assert scan.ok.tolist() == [True, True, True, False]
    [(where, reason)] = scan.bad(examples)
    assert where == f"{tmp_path}/r1#1" and "JPEG" in reason
    assert scan.digest[0] == scan.digest[2] != scan.digest[1]


def test_scan_of_in_memory_pixels_hashes_duplicates(fashion_dir):
    examples = sources_lib.load_examples(f"fashion_mnist:test:{fashion_dir}")
    doubled = examples.take(np.array([0, 1, 0]))
    scan = scan_lib.scan_images(doubled)
    assert scan.ok.all() and scan.channels.tolist() == [1, 1, 1]
    assert scan.digest[0] == scan.digest[2] != scan.digest[1]


def _odd_sizes() -> dict[str, bytes]:
    """Every readable format, 20 high and 30 wide, in each header layout stored_size reads."""
    files = helpers.odd_images()  # CMYK JPEG, 16-bit/palette PNG, GIF, BMP, WebP (VP8L)
    rgb = helpers.solid()
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 128, np.uint8)], axis=-1)
    files["lossy.webp"] = helpers.pil_bytes(Image.fromarray(rgb), "WEBP")  # VP8
    files["alpha.webp"] = helpers.pil_bytes(Image.fromarray(rgba), "WEBP")  # VP8X
    files["plain.jpg"] = tf.io.encode_jpeg(rgb).numpy()
    # BMP rows stored top-down: a negative height in the header.
    bmp = files["bitmap.bmp"]
    height = int.from_bytes(bmp[22:26], "little", signed=True)
    files["top_down.bmp"] = bmp[:22] + (-height).to_bytes(4, "little", signed=True) + bmp[26:]
    return files


def test_pixel_limit_reads_every_format_header(tmp_path):
    for name, encoded in _odd_sizes().items():
        (tmp_path / "a" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "a" / name).write_bytes(encoded)
    examples = sources_lib.load_examples(f"folder:{tmp_path}")
    assert len(examples) == 11
    at_limit = scan_lib.scan_images(examples, max_pixels=20 * 30)
    assert at_limit.ok.all(), at_limit.bad(examples)
    assert set(at_limit.height) == {20} and set(at_limit.width) == {30}
    over = scan_lib.scan_images(examples, max_pixels=20 * 30 - 1)
    reasons = {reason for _, reason in over.bad(examples)}
    assert reasons == {
        "30 x 20 pixels is over data.max_image_pixels=599; downscale it or raise the limit"
    }


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grayscale PNG of zeros, compressed row by row (never whole in memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter type 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def _memory_mb(key: str) -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith(key)).split()[1]) // 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_huge_png_is_a_bad_file_and_never_decoded(tmp_path):
    huge = write_blank_png(tmp_path / "a" / "huge.png", 20000, 20000)  # 400 MB of pixels
    assert huge.stat().st_size < 2_000_000
    write_pngs(tmp_path / "b", 1)
    examples = sources_lib.load_examples(f"folder:{tmp_path}")
    scan_lib.scan_images(examples.take(np.array([1])))  # warm up: the scan's own memory
    # Reset the process's peak resident memory (Linux), so the peak below is the scan's.
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory_mb("VmRSS")
    scan = scan_lib.scan_images(examples)
    growth = _memory_mb("VmHWM") - before
    assert scan.ok.tolist() == [False, True]
    assert scan.bad(examples) == [
        (
            str(huge),
            f"20000 x 20000 pixels is over data.max_image_pixels="
            f"{scan_lib.DEFAULT_MAX_IMAGE_PIXELS}; downscale it or raise the limit",
        )
    ]
    # Decoding it would take 400 MB at least.
    assert growth < 150, f"the scan's peak memory grew {growth} MB: the image was decoded"
    clean = scan_lib.drop_bad(examples, scan)
    assert [Path(p).name for p in clean.paths] == ["0.png"]
