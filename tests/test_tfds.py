"""tfds: specs through TFDS's real download_and_prepare, offline, from an archive in its cache.

tfds.testing.mock_data replaces download_and_prepare, so it cannot catch what breaks preparing a
dataset (a module TFDS imports only then was missing from our install). Here tf_flowers is
prepared for real from a small flower_photos.tgz of real JPEGs placed where TFDS's download
manager finds a finished download: nothing is downloaded.
"""

import io
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from sft_tf import data

FLOWERS = ("dandelion", "daisy", "tulips", "sunflowers", "roses")
# tf_flowers' archive and its registered checksum (tensorflow_datasets/datasets/tf_flowers).
FLOWERS_URL = "http://download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"


def flower_colour(label: int) -> np.ndarray:
    return np.asarray([40 + 50 * label, 200 - 40 * label, 120], np.uint8)


@pytest.fixture
def flowers_data_dir(tmp_path):
    """A TFDS data dir whose download cache holds a 10-image flower_photos.tgz (2 per class)."""
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.core.download import resource as resource_lib

    data_dir = tmp_path / "tfds"
    archive = data_dir / "downloads" / "tf_flowers"
    archive /= resource_lib.get_dl_fname(FLOWERS_URL, FLOWERS_SHA256)
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for label, name in enumerate(FLOWERS):
            for i in range(2):
                pixels = np.broadcast_to(flower_colour(label), (20 + i, 30, 3))
                jpeg = tf.io.encode_jpeg(pixels, quality=100).numpy()
                member = tarfile.TarInfo(f"flower_photos/{name}/{i}.jpg")
                member.size = len(jpeg)
                tar.addfile(member, io.BytesIO(jpeg))
    # The INFO file marks a finished download; its checksum is the registered one.
    info = checksums.UrlInfo(size=228813984, checksum=FLOWERS_SHA256, filename="flower_photos.tgz")
    resource_lib.write_info_file(
        url=FLOWERS_URL,
        path=archive,
        dataset_name="tf_flowers",
        original_fname="flower_photos.tgz",
        url_info=info,
    )
    return data_dir


def test_tf_flowers_prepares_lists_and_decodes(flowers_data_dir):
    examples = data.load_examples(
        "tfds:tf_flowers:train", "config.data.train", tfds_data_dir=str(flowers_data_dir)
    )
    assert examples.class_names == FLOWERS
    assert sorted(examples.labels.tolist()) == sorted([0, 1, 2, 3, 4] * 2)
    scan = data.scan_images(examples)
    assert scan.ok.all() and sorted(set(scan.height)) == [20, 21]
    # Every decoded image is its label's colour: the listed labels are aligned with the images.
    images, labels = zip(*data.build_dataset(examples, 32, 4, training=False).as_numpy_iterator())
    images, labels = np.concatenate(images), np.concatenate(labels)
    np.testing.assert_array_equal(labels, examples.labels)
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image.mean((0, 1)), flower_colour(label), atol=3)


def test_missing_module_is_named_not_blamed_on_the_network(flowers_data_dir, tmp_path):
    # None in sys.modules is how Python marks a module as not importable.
    script = f"""
import sys
sys.modules["importlib_resources"] = None
from sft_tf import data
try:
    data.load_examples("tfds:tf_flowers", "config.data.train", {str(flowers_data_dir)!r})
except data.UserError as e:
    print(e)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.stdout.strip().splitlines()[-1] == (
        "config.data.train='tfds:tf_flowers': TFDS cannot read tf_flowers: the Python module "
        "'importlib_resources' is missing (not a network problem); reinstall sft_tf "
        "(pip install -e .) or pip install importlib_resources"
    ), result.stderr
