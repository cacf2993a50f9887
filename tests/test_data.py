"""Dataset specs, class selection, few-shot sampling and the tf.data pipeline, on real files."""

import numpy as np
import pytest
import tensorflow as tf

from sft_tf import data
from sft_tf.errors import UserError
from tests.conftest import CLASS_COLOURS, write_image


def test_parse_spec():
    assert data.parse_spec("folder:/a/b") == data.Spec("folder", "/a/b")
    assert data.parse_spec("fashion_mnist:test") == data.Spec("fashion_mnist", "", "test")
    assert data.parse_spec("fashion_mnist:train:/x") == data.Spec("fashion_mnist", "/x", "train")
    for bad in ("", "folder:", "/data/train", "tfds_x:mnist", "fashion_mnist:valid"):
        with pytest.raises(UserError, match="config.data.train"):
            data.parse_spec(bad, field="config.data.train")


def test_folder_lists_sorted_classes_and_nested_files(image_folders):
    examples = data.load_examples(f"folder:{image_folders['train']}")
    assert examples.class_names == tuple(sorted(CLASS_COLOURS))
    assert len(examples) == 48
    assert examples.counts().tolist() == [16, 16, 16]
    assert any("/nested/" in p for p in examples.paths)
    # Paths of a class live under that class's folder.
    for path, label in zip(examples.paths, examples.labels):
        assert f"/{examples.class_names[label]}/" in path


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        data.load_examples(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="no class sub-folders"):
        data.load_examples(f"folder:{tmp_path}")
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "b" / "1.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"class folder .*/a has no images"):
        data.load_examples(f"folder:{tmp_path}")


def test_fashion_mnist_idx(fashion_dir):
    train = data.load_examples(f"fashion_mnist:train:{fashion_dir}")
    test = data.load_examples(f"fashion_mnist:test:{fashion_dir}")
    assert train.class_names == data.FASHION_MNIST_CLASSES
    assert train.pixels.shape == (400, 28, 28, 1) and train.pixels.dtype == np.uint8
    assert len(test) == 100 and test.labels.dtype == np.int32
    assert train.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_fashion_mnist_missing_files_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="make data"):
        data.load_examples(f"fashion_mnist:train:{tmp_path}", field="config.data.train")


def test_select_classes_by_name_and_id_renumbers_in_given_order(fashion_dir):
    train = data.load_examples(f"fashion_mnist:train:{fashion_dir}")
    by_name = data.select_classes(train, ["Sneaker", "Bag"], "config.data.classes")
    by_id = data.select_classes(train, ["7", "8"], "config.data.classes")
    assert by_name.class_names == by_id.class_names == ("Sneaker", "Bag")
    np.testing.assert_array_equal(by_name.labels, by_id.labels)
    assert set(by_name.labels.tolist()) == {0, 1} and len(by_name) == 80
    with pytest.raises(UserError, match="'Hat' is not in"):
        data.select_classes(train, ["Hat"], "config.data.classes")
    with pytest.raises(UserError, match="listed twice"):
        data.select_classes(train, ["Bag", "8"], "config.data.classes")


def test_sample_per_class_is_seeded_and_balanced(fashion_dir):
    train = data.load_examples(f"fashion_mnist:train:{fashion_dir}")
    a = data.sample_per_class(train, 5, seed=1)
    b = data.sample_per_class(train, 5, seed=1)
    c = data.sample_per_class(train, 5, seed=2)
    assert a.counts().tolist() == [5] * 10
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert not np.array_equal(a.pixels, c.pixels)
    assert data.sample_per_class(train, None, seed=0) is train


def test_check_same_classes_names_the_difference(image_folders, tmp_path):
    train = data.load_examples(f"folder:{image_folders['train']}")
    for name in ("cat", "dog", "owl"):
        write_image(tmp_path / name / "0.png", np.zeros((8, 8, 3), np.uint8))
    other = data.load_examples(f"folder:{tmp_path}")
    with pytest.raises(UserError, match=r"missing \['fox'\]; not in the training data \['owl'\]"):
        data.check_same_classes(train.class_names, other, "config.data.test")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("encoder", ["png", "jpeg", "gif", "bmp"])
def test_decode_image_gives_rgb_uint8_at_size(encoder, channels):
    pixels = np.random.default_rng(0).integers(0, 255, (20, 30, channels), dtype=np.uint8)
    if encoder in ("png", "jpeg"):
        encoded = getattr(tf.io, f"encode_{encoder}")(pixels)
    elif encoder == "gif":
        # TF cannot write GIF or BMP: a minimal 1x1 GIF89a and a 2x2 24-bit BMP by hand.
        encoded = tf.constant(
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\x00,\x00\x00\x00\x00"
            b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        )
    else:
        row = b"\x00\x00\xff\x00\xff\x00" + b"\x00\x00"  # two BGR pixels + padding to 4 bytes
        header = b"BM" + (54 + 16).to_bytes(4, "little") + b"\0" * 4 + (54).to_bytes(4, "little")
        info = (40).to_bytes(4, "little") + (2).to_bytes(4, "little") + (2).to_bytes(4, "little")
        info += (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + b"\0" * 24
        encoded = tf.constant(header + info + row * 2)
    image = data.decode_image(encoded, 16)
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8


def test_training_pipeline_static_shapes_shuffles_and_drops_remainder(image_folders):
    examples = data.load_examples(f"folder:{image_folders['train']}")
    ds = data.build_dataset(examples, 32, batch_size=10, training=True, seed=0, augment=["flip"])
    images_spec, labels_spec = ds.element_spec
    assert images_spec.shape.as_list() == [10, 32, 32, 3] and images_spec.dtype == tf.uint8
    assert labels_spec.shape.as_list() == [10] and labels_spec.dtype == tf.int32
    epoch1 = np.concatenate([y.numpy() for _, y in ds])
    epoch2 = np.concatenate([y.numpy() for _, y in ds])
    assert len(epoch1) == 40  # 48 examples, 4 full batches of 10
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch


def test_eval_pipeline_keeps_order_and_every_example(image_folders):
    examples = data.load_examples(f"folder:{image_folders['test']}")
    ds = data.build_dataset(examples, 24, batch_size=5, training=False)
    labels = np.concatenate([y.numpy() for _, y in ds])
    np.testing.assert_array_equal(labels, examples.labels)
    images = next(iter(ds))[0].numpy()
    # A red "cat" image stays red after decode and resize.
    assert images[0, ..., 0].mean() > images[0, ..., 2].mean() + 50


def test_pipeline_rejects_fewer_examples_than_a_batch(image_folders):
    examples = data.load_examples(f"folder:{image_folders['test']}")
    with pytest.raises(UserError, match="fewer than one batch"):
        data.build_dataset(examples, 32, batch_size=64, training=True)


def test_unknown_augmentation_is_named():
    with pytest.raises(UserError, match=r"unknown \['blur'\]"):
        data.parse_augment("flip,blur", field="config.data.augment")
