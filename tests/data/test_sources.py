"""Loading each source: Fashion-MNIST IDX files, TFRecords, and TFDS (mocked, and for real).

tfds: specs go through TFDS's real download_and_prepare, offline, from an archive in its cache.

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

from sft_tf.data import examples as examples_lib
from sft_tf.data import pipeline
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from tests.helpers import colour_png, write_records

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


def test_tf_flowers_prepares_lists_and_decodes(flowers_data_dir, no_network):
    examples = sources_lib.load_examples(
        "tfds:tf_flowers:train", "config.data.train", tfds_data_dir=str(flowers_data_dir)
    )
    assert examples.class_names == FLOWERS
    assert sorted(examples.labels.tolist()) == sorted([0, 1, 2, 3, 4] * 2)
    scan = scan_lib.scan_images(examples)
    assert scan.ok.all() and sorted(set(scan.height)) == [20, 21]
    # Every decoded image is its label's colour: the listed labels are aligned with the images.
    images, labels = zip(
        *pipeline.build_dataset(examples, 32, 4, training=False).as_numpy_iterator()
    )
    images, labels = np.concatenate(images), np.concatenate(labels)
    np.testing.assert_array_equal(labels, examples.labels)
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image.mean((0, 1)), flower_colour(label), atol=3)


def test_missing_module_is_named_not_blamed_on_the_network(flowers_data_dir, tmp_path):
    # None in sys.modules is how Python marks a module as not importable.
    script = f"""
import sys
sys.modules["importlib_resources"] = None
from sft_tf.data import sources
from sft_tf.errors import UserError
try:
    sources.load_examples("tfds:tf_flowers", "config.data.train", {str(flowers_data_dir)!r})
except UserError as e:
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


def test_fashion_mnist_idx(fashion_dir):
    train = sources_lib.load_examples(f"fashion_mnist:train:{fashion_dir}")
    test = sources_lib.load_examples(f"fashion_mnist:test:{fashion_dir}")
    assert train.class_names == sources_lib.FASHION_MNIST_CLASSES
    assert train.pixels.shape == (400, 28, 28, 1) and train.pixels.dtype == np.uint8
    assert len(test) == 100 and test.labels.dtype == np.int32
    assert train.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_fashion_mnist_missing_files_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="make data"):
        sources_lib.load_examples(f"fashion_mnist:train:{tmp_path}", field="config.data.train")


def test_tfds_mock_data_gives_label_names_and_decodable_images(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        examples = sources_lib.load_examples(
            "tfds:tf_flowers:train[:80%]", "config.data.train", tfds_data_dir=str(tmp_path)
        )
        assert examples.class_names == ("dandelion", "daisy", "tulips", "sunflowers", "roses")
        assert len(examples) == 12 and examples.records is not None
        assert examples.where(3) == "tfds:tf_flowers:train[:80%]#3"
        # Labels listed up front are the labels the pipeline streams, in order.
        ds = pipeline.build_dataset(examples, 32, batch_size=5, training=False)
        images, labels = zip(*ds.as_numpy_iterator())
        np.testing.assert_array_equal(np.concatenate(labels), examples.labels)
        assert np.concatenate(images).shape == (12, 32, 32, 3)
        # A subset streams only its own examples, still aligned with their labels.
        subset = examples.take(np.array([7, 2, 9]))
        labels = np.concatenate([y for _, y in pipeline.build_dataset(subset, 32, 2, False)])
        np.testing.assert_array_equal(labels, examples.labels[[2, 7, 9]])
        assert scan_lib.scan_images(examples).ok.all()


def test_tfds_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no TFDS dataset 'no_such_set'"):
        sources_lib.load_examples(
            "tfds:no_such_set", "config.data.train", tfds_data_dir=str(tmp_path)
        )


def test_tfrecord_class_names_from_text_and_labels_renumbered(tmp_path):
    red, blue = colour_png((250, 0, 0)), colour_png((0, 0, 250))
    # 1-based ids as TF-slim's ImageNet converter writes them, spread over two shards.
    write_records(tmp_path / "train-00000-of-00002", [(red, 1, "rose"), (blue, 2, "iris")] * 3)
    write_records(tmp_path / "train-00001-of-00002", [(blue, 2, "iris")] * 2)
    examples = sources_lib.load_examples(f"tfrecord:{tmp_path}/train-*", "config.data.train")
    assert examples.class_names == ("rose", "iris")
    assert examples.labels.tolist() == [0, 1, 0, 1, 0, 1, 1, 1]
    assert examples.where(7) == f"{tmp_path}/train-00001-of-00002#1"
    images, labels = next(iter(pipeline.build_dataset(examples, 8, batch_size=8, training=False)))
    assert labels.numpy().tolist() == examples.labels.tolist()
    # Each image is its label's colour: red roses, blue irises.
    reds = images.numpy()[..., 0].mean(axis=(1, 2))
    np.testing.assert_array_equal(reds > 128, labels.numpy() == 0)
    assert examples_lib.encoded_samples(examples, 2) == [red, blue]


def test_tfrecord_without_text_and_its_errors(tmp_path):
    write_records(tmp_path / "a.tfrecord", [(colour_png(0), 3, None), (colour_png(9), 0, None)])
    examples = sources_lib.load_examples(f"tfrecord:{tmp_path}/a.tfrecord")
    assert examples.class_names == ("0", "3") and examples.labels.tolist() == [1, 0]
    with pytest.raises(UserError, match="no files match"):
        sources_lib.load_examples(f"tfrecord:{tmp_path}/missing-*", "config.data.test")
    write_records(tmp_path / "b.tfrecord", [(b"x", 1, "cat"), (b"y", 1, "dog")])
    with pytest.raises(UserError, match="label 1 is named both 'cat' and 'dog'"):
        sources_lib.load_examples(f"tfrecord:{tmp_path}/b.tfrecord")


def test_multi_label_records_hold_several_ids_and_folders_refuse_multi_label(tmp_path):
    png = colour_png((200, 30, 30))
    write_records(
        tmp_path / "tags.tfrecord",
        [(png, [3, 7], ["sky", "tree"]), (png, [7], ["tree"]), (png, [], None), (png, [1], None)],
    )
    options = sources_lib.ReadOptions(multi_label=True)
    examples = sources_lib.load_examples(f"tfrecord:{tmp_path}/tags.tfrecord", options=options)
    assert examples.multi_label and examples.class_names == ("1", "sky", "tree")
    assert examples.labels.tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 0]]
    assert examples.counts().tolist() == [1, 1, 2]
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(png)
    with pytest.raises(UserError, match="multi_label=true needs labels that can be sets"):
        sources_lib.load_examples(f"folder:{tmp_path}", "config.data.train", options=options)


def test_joined_labels_of_a_single_label_csv_point_to_multi_label(tmp_path, capsys):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.png").write_bytes(colour_png((200, 0, 0)))
    (tmp_path / "labels.csv").write_text(
        "image,label,split\na.png,cat|dog,train\nb.png,cat,train\nc.png,cat|dog,test\n"
    )
    spec = f"csv:{tmp_path / 'labels.csv'}"
    single = sources_lib.load_examples(f"{spec}:train", field="config.data.train")
    assert single.class_names == ("cat", "cat|dog")
    sources_lib.load_examples(f"{spec}:test", field="config.data.test")  # said once, for train
    out = capsys.readouterr().out
    assert out.count("Warning:") == 1
    assert "1 of 2 labels join names with '|' (e.g. 'cat|dog')" in out
    assert "set config.data.multi_label=true" in out
    options = sources_lib.ReadOptions(multi_label=True)
    sources_lib.load_examples(f"{spec}:train", field="config.data.train", options=options)
    assert "Warning" not in capsys.readouterr().out
