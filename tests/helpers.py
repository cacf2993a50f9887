"""Helpers the tests share: real image files (awkward formats, broken ones), tiny models,
config files, and the real CLI in a subprocess (with kill points for resume tests).

Real image files in the awkward formats users' folders contain, and broken ones.

Pillow writes the formats TensorFlow cannot encode (CMYK JPEG, palette PNG, animated GIF, BMP,
WebP); every file is a real encoding read back by the code under test, never a stand-in.
"""

import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from sft_tf.config import files as config_files
from sft_tf.model import classifier, unfreeze
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.state import RunState

RED = (220, 30, 30)


def solid(colour=RED, h: int = 20, w: int = 30) -> np.ndarray:
    """uint8 [h, w, 3] of one colour."""
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB [h, w, 3] with a photo's kind of content: smooth colour gradients, mild noise
    (what JPEG's scaled decoding is judged on; pure noise has no low frequencies to keep)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    waves = [np.sin(7 * x + 3 * c) * np.cos(5 * y - c) for c in range(3)]
    pixels = 128 + 90 * np.stack(waves, -1) + rng.normal(0, 8, (h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


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


REPO = Path(__file__).resolve().parents[1]


# Distinct mean colours make the toy classes learnable in a few steps.
CLASS_COLOURS = {"cat": (200, 60, 60), "dog": (60, 200, 60), "fox": (60, 60, 200)}


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Encodes uint8 pixels by the file's extension (PNG or JPEG) with TensorFlow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(pixels).numpy())
    return path


def exif_jpeg(pixels: np.ndarray, orientation: int) -> bytes:
    """A JPEG of `pixels` (as stored) tagged with EXIF `orientation`, as phone cameras write."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # the Orientation tag
    return pil_bytes(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)


def write_pngs(folder: Path, count: int) -> None:
    """folder/0.png ... folder/<count-1>.png: 8x8 images of distinct greys."""
    for i in range(count):
        write_image(folder / f"{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))


def make_image_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """root/<class>/<i>.(png|jpg): noisy images of a class colour, assorted sizes, one nested."""
    rng = np.random.default_rng(seed)
    for c, (name, colour) in enumerate(CLASS_COLOURS.items()):
        for i in range(per_class):
            h, w = 28 + (i % 3) * 9, 30 + (i % 4) * 5
            noise = rng.normal(0, 40, (h, w, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            sub = "nested" if i == 0 else ""
            ext = ".png" if (i + c) % 2 else ".jpg"
            write_image(root / name / sub / f"{i:03d}{ext}", pixels)
    return root


def write_multilabel_csv(root: Path, per_split=(48, 16, 16), seed: int = 0) -> Path:
    """root/labels.csv over root/my images/*.png: grey noise with a patch of each colour of
    CLASS_COLOURS present (at least one per image), labels joined by |, a split column."""
    rng = np.random.default_rng(seed)
    names = list(CLASS_COLOURS)
    rows = ["image,label,split"]
    for split, count in zip(("train", "validation", "test"), per_split):
        for i in range(count):
            present = rng.random(len(names)) < 0.45
            present[rng.integers(len(names))] |= not present.any()
            pixels = np.clip(rng.normal(128, 30, (32, 32, 3)), 0, 255)
            for c in np.flatnonzero(present):
                y, x = rng.integers(0, 20, 2)
                pixels[y : y + 12, x : x + 12] = CLASS_COLOURS[names[c]]
            file = f"my images/{split} {i:03d}.png"
            write_image(root / file, pixels.astype(np.uint8))
            rows.append(f"{file},{'|'.join(names[c] for c in np.flatnonzero(present))},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def tiny_classifier(
    num_classes: int = 3, batchnorm: str = "frozen", weights: str = "", seed: int = 0
):
    """The tiny MobileNetV2 classifier with working activations and a seeded random head.

    Random-init BatchNorm statistics (mean 0, variance 1) shrink a deep net's activations to
    ~1e-9, so every image would get the same output and nothing would train; statistics
    re-estimated on random images stand in for pretrained ones.
    """
    import keras

    keras.utils.set_random_seed(seed)  # the same seed builds the same weights
    model = classifier.build_classifier(
        "MobileNetV2", num_classes, 32, weights=weights, batchnorm=batchnorm, alpha=0.35
    )
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    unfreeze.recalibrate_batchnorm(
        model, tf.data.Dataset.from_tensors((images, images[:, 0, 0, 0])), 1
    )
    head = model.get_layer("probabilities")
    head.kernel.assign(rng.normal(0, 0.5, head.kernel.shape).astype("float32"))
    return model


TINY_MODEL = {"backbone": "MobileNetV2", "image_size": 32, "alpha": 0.35}


def tiny_model(num_classes=3, batchnorm="frozen", weights="", calibrated=False):
    """The tiny MobileNetV2 classifier, as built (or calibrated: see tiny_classifier)."""
    if calibrated:
        return tiny_classifier(num_classes, batchnorm=batchnorm, weights=weights)
    return classifier.build_classifier(
        num_classes=num_classes, weights=weights, batchnorm=batchnorm, **TINY_MODEL
    )


def random_batch(n=16, seed=0):
    """n random uint8 32x32 RGB images and labels of 3 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, n)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes an IDX file (MNIST's container) — the format the Debian package ships, gzipped."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def tiny_train_args(train, test, *extra) -> list[str]:
    """`sft-tf train` with configs/tiny.py on the image folders `train` and `test`, then
    `extra` flags."""
    return [
        "train",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        f"--config.data.train=folder:{train}",
        f"--config.data.test=folder:{test}",
        *extra,
    ]


def fresh_python(code: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process started in the repo (what is imported there, or a
    process-wide setting, cannot leak into this one); its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def sft_tf(*args, cwd, check=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "sft_tf", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"sft-tf {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result


def load_config(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


CONFIG_FILES = sorted((REPO / "configs").glob("*.py"))


def tiny_config(**changes):
    """configs/tiny.py on folder:/tmp, with changes given as section__field=value or name=value."""
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = "folder:/tmp"
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    return config


def write_records(path, items):
    """Writes tf.train.Example records: items of (encoded bytes, label id, text or None); a
    list of ids (and of texts) writes a multi-label record."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for encoded, label, text in items:
            ids = label if isinstance(label, list) else [label]
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
            }
            if text is not None:
                texts = text if isinstance(text, list) else [text]
                feature["image/class/text"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[t.encode() for t in texts])
                )
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def colour_png(colour):
    """A 12x16 PNG of one colour."""
    return tf.io.encode_png(np.full((12, 16, 3), colour, np.uint8)).numpy()


def run_state(cwd):
    try:
        return json.loads((cwd / "run" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


KILL_POINTS = {
    # name: predicate on (state, cwd) that says "kill now"
    "mid phase 1": lambda s, cwd: s and s["phase"] == "phase1" and s["mid_epoch_step"] > 0,
    "right after the phase switch": lambda s, cwd: (
        s and s.get("checkpoint_phase") == "phase1" and s["phase"] == "phase2"
    ),
    "mid phase 2": lambda s, cwd: (
        s and s.get("checkpoint_phase") == "phase2" and s["phase"] == "phase2"
    ),
    "during export": lambda s, cwd: any((cwd / "saved_models" / "tiny").glob(".staging-*/*.pb")),
}


def start_cli(cwd, args) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "sft_tf", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc, cwd, ready, timeout=300):
    deadline = time.time() + timeout
    while not ready(run_state(cwd), cwd):
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline
        time.sleep(0.02)


def kill_when(cwd, args, ready, timeout=300) -> str:
    """Runs the CLI until `ready(state, cwd)`, SIGKILLs it; returns what it printed."""
    proc = start_cli(cwd, args)
    wait_for(proc, cwd, ready, timeout)
    os.kill(proc.pid, signal.SIGKILL)
    return proc.communicate()[0]


def final_digest(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("Final weights sha256")]
    return line.split()[-1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (relative path) -> the sha256 of its bytes; two equal
    snapshots show nothing was written, changed or deleted in between."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def checkpoint_model(seed: int = 0) -> keras.Model:
    """A tiny compiled Keras model with Dropout, whose seed state a checkpoint keeps too."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.1), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def three_saves(workdir) -> list[np.ndarray]:
    """Checkpoints of one model in `workdir`, saved as a run saves them after epochs 1, 2
    and 3 with other weights each time; returns those kernels."""
    model = checkpoint_model()
    saver = RunCheckpoints(workdir, model)
    saver.track(model)
    kernels = []
    for epoch in (1, 2, 3):
        model.layers[-1].kernel.assign(np.full((4, 3), epoch, np.float32))
        kernels.append(model.layers[-1].kernel.numpy())
        saver.save(RunState(phase="phase1", epochs_done=epoch))
    return kernels


def restored_kernel(workdir, name: str) -> np.ndarray:
    """The Dense kernel of a fresh model after restoring checkpoint `name` of `three_saves`."""
    model = checkpoint_model(seed=1)
    saver = RunCheckpoints(workdir, model)
    saver.track(model)
    saver.restore(name)
    return model.layers[-1].kernel.numpy()


LEGACY_RUN = REPO / "tests" / "fixtures" / "legacy_run_v0" / "run"


def legacy_run_copy(tmp_path):
    """The committed record of a run an earlier sft_tf left after a kill in phase 2, and its
    config. Its checkpoint's bytes are not committed: a small readable one stands in (only its
    readability matters here)."""
    shutil.copytree(LEGACY_RUN, tmp_path / "run")
    stand_in = tf.train.Checkpoint(weights=[tf.Variable([1.0, 2.0])])
    stand_in.write(str(tmp_path / "run" / "checkpoints" / "ckpt-1"))
    config_json = tmp_path / "run" / "config.json"
    config_json.write_text(config_json.read_text().replace("@IMAGES@", "/data"))
    return tmp_path / "run", config_files.load(config_json)
