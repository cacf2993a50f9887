"""Data that used to surprise silently: folder links, ignored files, huge images, ~ in paths."""

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf import data
from sft_tf.errors import UserError
from tests import image_files
from tests.conftest import write_image


def _pngs(folder: Path, count: int) -> None:
    for i in range(count):
        write_image(folder / f"{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))


def test_folder_links_are_followed_once_and_loops_reported(tmp_path, capsys):
    root = tmp_path / "train"
    _pngs(root / "Bag", 3)
    _pngs(root / "Bag" / "sub", 1)
    _pngs(root / "Shoe", 2)
    _pngs(tmp_path / "elsewhere", 2)
    os.symlink(root / "Bag", root / "Bag" / "loop")  # back to its own class folder
    os.symlink("..", root / "Bag" / "sub" / "up")  # a relative loop, one level down
    os.symlink(root / "Bag" / "sub", root / "Bag" / "again")  # a second way into sub/
    os.symlink(tmp_path / "elsewhere", root / "Bag" / "more")  # a real extra folder: followed

    examples = data.load_examples(f"folder:{root}")

    # Bag: its 3 images, sub's 1 and the 2 behind the link to elsewhere, each listed once.
    assert examples.counts().tolist() == [3 + 1 + 2, 2]
    assert len(set(map(os.path.realpath, examples.paths))) == len(examples)
    bag = os.path.realpath(root / "Bag")
    loops = sorted(n for n in examples.notes if "loops" in n)
    assert loops == [
        f"Ignored a folder link that loops: {root}/Bag/loop -> {bag}",
        f"Ignored a folder link that loops: {root}/Bag/sub/up -> {bag}",
    ]
    # Folders are listed under their own path; the link is the second way in.
    assert (
        f"Ignored a folder link that leads to a folder already listed: {root}/Bag/again -> "
        f"{bag}/sub"
    ) in examples.notes
    assert not any("/again/" in p or "/loop/" in p for p in examples.paths)
    printed = capsys.readouterr().out.splitlines()
    assert set(examples.notes) <= set(printed)


def test_ignored_files_are_counted_by_reason(tmp_path, capsys):
    root = tmp_path / "train"
    _pngs(root / "cat", 2)
    _pngs(root / "dog", 1)
    tiff = image_files.pil_bytes(Image.fromarray(image_files.solid()), "TIFF")
    # TF cannot decode TIFF (and tensorflow-io is not a dependency): listed as unsupported.
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        tf.io.decode_image(tiff)
    for i in range(3):
        (root / "cat" / f"scan{i}.TIFF").write_bytes(tiff)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _pngs(root / "cat" / ".thumbnails", 2)  # hidden folder inside a class
    _pngs(root / ".Trash" / "old", 1)  # hidden folder where the classes are
    (root / "README.md").write_text("where these images come from")

    examples = data.load_examples(f"folder:{root}")

    assert examples.class_names == ("cat", "dog") and examples.counts().tolist() == [2, 1]
    summary = (
        f"Ignored 9 file(s) in folder:{root}: hidden 4; unsupported extension 4 (.tiff x3, "
        ".txt x1; TF cannot decode TIFF: convert to PNG); outside the class folders 1"
    )
    assert examples.notes == (summary,)
    assert summary in capsys.readouterr().out.splitlines()
    # A class left with no images says what was there instead.
    shutil.rmtree(root / "dog")
    (root / "dog").mkdir()
    (root / "dog" / "only.tif").write_bytes(tiff)
    with pytest.raises(UserError, match=r"dog has no images .*ignored there: unsupported exten"):
        data.load_examples(f"folder:{root}")


def _odd_sizes() -> dict[str, bytes]:
    """Every readable format, 20 high and 30 wide, in each header layout stored_size reads."""
    files = image_files.odd_images()  # CMYK JPEG, 16-bit/palette PNG, GIF, BMP, WebP (VP8L)
    rgb = image_files.solid()
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 128, np.uint8)], axis=-1)
    files["lossy.webp"] = image_files.pil_bytes(Image.fromarray(rgb), "WEBP")  # VP8
    files["alpha.webp"] = image_files.pil_bytes(Image.fromarray(rgba), "WEBP")  # VP8X
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
    examples = data.load_examples(f"folder:{tmp_path}")
    assert len(examples) == 11
    at_limit = data.scan_images(examples, max_pixels=20 * 30)
    assert at_limit.ok.all(), at_limit.bad(examples)
    assert set(at_limit.height) == {20} and set(at_limit.width) == {30}
    over = data.scan_images(examples, max_pixels=20 * 30 - 1)
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
    _pngs(tmp_path / "b", 1)
    examples = data.load_examples(f"folder:{tmp_path}")
    data.scan_images(examples.take(np.array([1])))  # warm up: the scan's own memory
    # Reset the process's peak resident memory (Linux), so the peak below is the scan's.
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory_mb("VmRSS")
    scan = data.scan_images(examples)
    growth = _memory_mb("VmHWM") - before
    assert scan.ok.tolist() == [False, True]
    assert scan.bad(examples) == [
        (
            str(huge),
            f"20000 x 20000 pixels is over data.max_image_pixels={data.DEFAULT_MAX_IMAGE_PIXELS}; "
            "downscale it or raise the limit",
        )
    ]
    # Decoding it would take 400 MB at least.
    assert growth < 150, f"the scan's peak memory grew {growth} MB: the image was decoded"
    clean = data.drop_bad(examples, scan)
    assert [Path(p).name for p in clean.paths] == ["0.png"]


def test_tilde_is_the_home_folder(tmp_path, monkeypatch, fashion_dir):
    monkeypatch.setenv("HOME", str(tmp_path))
    _pngs(tmp_path / "photos" / "cat", 1)
    _pngs(tmp_path / "photos" / "dog", 2)
    shutil.copytree(fashion_dir, tmp_path / "fm")
    record = tf.train.Example(
        features=tf.train.Features(
            feature={
                data.TFRECORD_IMAGE: tf.train.Feature(
                    bytes_list=tf.train.BytesList(
                        value=[(tmp_path / "photos/cat/0.png").read_bytes()]
                    )
                ),
                data.TFRECORD_LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
            }
        )
    )
    with tf.io.TFRecordWriter(str(tmp_path / "train-0.tfrecord")) as writer:
        writer.write(record.SerializeToString())

    assert data.parse_spec("folder:~/photos") == data.Spec("folder", f"{tmp_path}/photos")
    assert data.load_examples("folder:~/photos").counts().tolist() == [1, 2]
    assert len(data.load_examples("tfrecord:~/train-*")) == 1
    assert len(data.load_examples("fashion_mnist:test:~/fm")) == 100
    with pytest.raises(UserError, match=f"{tmp_path}/nothing is not a directory"):
        data.load_examples("folder:~/nothing")
