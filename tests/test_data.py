"""Dataset specs, class selection, few-shot sampling and the tf.data pipeline, on real files."""

import numpy as np
import pytest
import tensorflow as tf

from sft_tf import augment, data
from sft_tf.errors import UserError
from tests import image_files
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
    ds = data.build_dataset(
        examples, 32, batch_size=10, training=True, seed=0, augment=["flip"], until_epoch=2
    )
    images_spec, labels_spec = ds.element_spec
    assert images_spec.shape.as_list() == [10, 32, 32, 3] and images_spec.dtype == tf.uint8
    assert labels_spec.shape.as_list() == [10] and labels_spec.dtype == tf.int32
    # Two epochs of 4 full batches each (48 examples, the last 8 dropped).
    labels = np.stack([y.numpy() for _, y in ds]).reshape(2, 40)
    epoch1, epoch2 = labels
    assert not np.array_equal(epoch1, np.sort(epoch1))  # files are listed by class
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch


def test_training_stream_resumes_exactly_mid_epoch(image_folders):
    """Batch b of epoch e is the same, pixels and augmentation, however the stream started."""
    examples = data.load_examples(f"folder:{image_folders['train']}")
    # Every augmentation at once, MixUp/CutMix included (they need one-hot labels).
    options = dict(
        batch_size=8, training=True, seed=3, augment=augment.AUGMENTATIONS, num_classes=3
    )
    whole = list(data.build_dataset(examples, 32, until_epoch=3, **options))
    resumed = list(data.build_dataset(examples, 32, start=(1, 4), until_epoch=3, **options))
    assert len(whole) == 3 * 6 and len(resumed) == 8
    for (x1, y1), (x2, y2) in zip(whole[6 + 4 :], resumed):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    # Different epochs and batches really differ (the test above would pass on a constant).
    assert not np.array_equal(whole[0][0], whole[6][0])
    assert not np.array_equal(whole[0][1], whole[6][1])


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
        augment.parse_augment("flip,blur", field="config.data.augment")


# ---------------------------------------------------------------------------------------------
# More sources: tfds:, tfrecord:, split:
# ---------------------------------------------------------------------------------------------


def test_parse_more_specs():
    assert data.parse_spec("tfds:tf_flowers") == data.Spec("tfds", "tf_flowers", "train")
    assert data.parse_spec("tfds:tf_flowers:train[:80%]") == data.Spec(
        "tfds", "tf_flowers", "train[:80%]"
    )
    assert data.parse_spec("tfrecord:gs://b/train-*") == data.Spec("tfrecord", "gs://b/train-*")
    assert data.parse_spec("split:0.2") == data.Spec("split", "", "0.2")
    for bad in ("split:0", "split:1.5", "split:ten"):
        with pytest.raises(UserError, match="config.data.validation=.*between 0 and 1"):
            data.parse_spec(bad, field="config.data.validation")
    with pytest.raises(UserError, match="only for config.data.validation"):
        data.load_examples("split:0.1", field="config.data.train")


def test_tfds_mock_data_gives_label_names_and_decodable_images(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        examples = data.load_examples(
            "tfds:tf_flowers:train[:80%]", "config.data.train", tfds_data_dir=str(tmp_path)
        )
        assert examples.class_names == ("dandelion", "daisy", "tulips", "sunflowers", "roses")
        assert len(examples) == 12 and examples.records is not None
        assert examples.where(3) == "tfds:tf_flowers:train[:80%]#3"
        # Labels listed up front are the labels the pipeline streams, in order.
        ds = data.build_dataset(examples, 32, batch_size=5, training=False)
        images, labels = zip(*ds.as_numpy_iterator())
        np.testing.assert_array_equal(np.concatenate(labels), examples.labels)
        assert np.concatenate(images).shape == (12, 32, 32, 3)
        # A subset streams only its own examples, still aligned with their labels.
        subset = examples.take(np.array([7, 2, 9]))
        labels = np.concatenate([y for _, y in data.build_dataset(subset, 32, 2, False)])
        np.testing.assert_array_equal(labels, examples.labels[[2, 7, 9]])
        assert data.scan_images(examples).ok.all()


def test_tfds_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no TFDS dataset 'no_such_set'"):
        data.load_examples("tfds:no_such_set", "config.data.train", tfds_data_dir=str(tmp_path))


def write_records(path, items):
    """Writes tf.train.Example records: items of (encoded bytes, label id, text or None)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for encoded, label, text in items:
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            if text is not None:
                feature["image/class/text"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[text.encode()])
                )
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def colour_png(colour):
    return tf.io.encode_png(np.full((12, 16, 3), colour, np.uint8)).numpy()


def test_tfrecord_class_names_from_text_and_labels_renumbered(tmp_path):
    red, blue = colour_png((250, 0, 0)), colour_png((0, 0, 250))
    # 1-based ids as TF-slim's ImageNet converter writes them, spread over two shards.
    write_records(tmp_path / "train-00000-of-00002", [(red, 1, "rose"), (blue, 2, "iris")] * 3)
    write_records(tmp_path / "train-00001-of-00002", [(blue, 2, "iris")] * 2)
    examples = data.load_examples(f"tfrecord:{tmp_path}/train-*", "config.data.train")
    assert examples.class_names == ("rose", "iris")
    assert examples.labels.tolist() == [0, 1, 0, 1, 0, 1, 1, 1]
    assert examples.where(7) == f"{tmp_path}/train-00001-of-00002#1"
    images, labels = next(iter(data.build_dataset(examples, 8, batch_size=8, training=False)))
    assert labels.numpy().tolist() == examples.labels.tolist()
    # Each image is its label's colour: red roses, blue irises.
    reds = images.numpy()[..., 0].mean(axis=(1, 2))
    np.testing.assert_array_equal(reds > 128, labels.numpy() == 0)
    assert data.encoded_samples(examples, 2) == [red, blue]


def test_tfrecord_without_text_and_its_errors(tmp_path):
    write_records(tmp_path / "a.tfrecord", [(colour_png(0), 3, None), (colour_png(9), 0, None)])
    examples = data.load_examples(f"tfrecord:{tmp_path}/a.tfrecord")
    assert examples.class_names == ("0", "3") and examples.labels.tolist() == [1, 0]
    with pytest.raises(UserError, match="no files match"):
        data.load_examples(f"tfrecord:{tmp_path}/missing-*", "config.data.test")
    write_records(tmp_path / "b.tfrecord", [(b"x", 1, "cat"), (b"y", 1, "dog")])
    with pytest.raises(UserError, match="label 1 is named both 'cat' and 'dog'"):
        data.load_examples(f"tfrecord:{tmp_path}/b.tfrecord")


def test_tfrecord_test_split_missing_a_class_is_named(tmp_path):
    write_records(tmp_path / "train", [(colour_png(0), 0, "cat"), (colour_png(0), 1, "dog")])
    write_records(tmp_path / "test", [(colour_png(0), 0, "cat")])
    train = data.load_examples(f"tfrecord:{tmp_path}/train")
    test = data.load_examples(f"tfrecord:{tmp_path}/test")
    with pytest.raises(UserError, match=r"config.data.test=.* missing \['dog'\]"):
        data.check_same_classes(train.class_names, test, "config.data.test")


def test_holdout_is_seeded_stratified_and_disjoint(image_folders):
    train = data.load_examples(f"folder:{image_folders['train']}")
    rest, validation = data.holdout(train, 0.25, seed=3)
    again_rest, again_validation = data.holdout(train, 0.25, seed=3)
    _, other_validation = data.holdout(train, 0.25, seed=4)
    assert validation.counts().tolist() == [4, 4, 4]
    assert rest.counts().tolist() == [12, 12, 12]
    assert not set(rest.paths) & set(validation.paths)
    assert set(rest.paths) | set(validation.paths) == set(train.paths)
    np.testing.assert_array_equal(validation.paths, again_validation.paths)
    np.testing.assert_array_equal(rest.paths, again_rest.paths)
    assert set(validation.paths) != set(other_validation.paths)
    assert validation.origin.startswith("split:0.25 of folder:")


# ---------------------------------------------------------------------------------------------
# Decoding odd files, resize methods, finding bad files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(image_files.odd_images()))
def test_odd_formats_decode_to_the_right_rgb(name):
    encoded = image_files.odd_images((220, 30, 30))[name]
    image = data.decode_image(tf.constant(encoded), 16).numpy()
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    # The animated GIF's first frame is red; its second frame (the inverse) would be cyan.
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), (220, 30, 30), atol=12)


def test_transparency_is_composited_over_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # black, fully transparent
    rgba[:4, :, :] = (0, 0, 255, 255)  # top half opaque blue
    image = data.decode_rgb(tf.io.encode_png(rgba)).numpy()
    assert image[0, 0].tolist() == [0, 0, 255] and image[7, 7].tolist() == [255, 255, 255]
    gray_alpha = np.stack([np.full((4, 4), 40, np.uint8), np.full((4, 4), 0, np.uint8)], -1)
    assert data.decode_rgb(tf.io.encode_png(gray_alpha)).numpy()[0, 0].tolist() == [255] * 3


def test_resize_methods_on_a_wide_image():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20], wide[:, 20:40], wide[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    stretched = data.resize(tf.constant(wide), 12, "resize").numpy()
    cropped = data.resize(tf.constant(wide), 12, "crop").numpy()
    padded = data.resize(tf.constant(wide), 12, "pad").numpy()
    # resize keeps all three stripes, squeezed; crop keeps the green centre square only.
    assert stretched[6, 0].tolist() == [255, 0, 0] and stretched[6, 11].tolist() == [0, 0, 255]
    assert (cropped[..., 1] > 200).all() and (cropped[..., [0, 2]] < 50).all()
    # pad keeps the whole image at 12x4 and fills rows above and below with black.
    assert padded[0].max() == 0 and padded[-1].max() == 0
    assert padded[6, 0].tolist() == [255, 0, 0] and padded[6, 11].tolist() == [0, 0, 255]
    # A batch (the export's serving_images path) gives the same pixels per image.
    for method, single in (("resize", stretched), ("crop", cropped), ("pad", padded)):
        batch = data.resize(tf.constant(np.stack([wide, wide])), 12, method).numpy()
        np.testing.assert_array_equal(batch[1], single)
    with pytest.raises(ValueError, match="squash"):
        data.resize(tf.constant(wide), 12, "squash")


def test_scan_finds_exactly_the_bad_files_and_the_rest_trains(tmp_path):
    planted = image_files.write_messy_folder(tmp_path, per_class=12)
    examples = data.load_examples(f"folder:{tmp_path}")
    assert len(examples) == 3 * 12 + 7 + 3
    scan = data.scan_images(examples)
    bad = dict(scan.bad(examples))
    assert sorted(bad) == sorted(planted)
    for path, phrase in planted.items():
        assert phrase in bad[path], (path, bad[path])
    # Odd but valid files are counted, not dropped.
    by_name = {p.rsplit("/", 1)[-1]: i for i, p in enumerate(examples.paths)}
    assert scan.cmyk[by_name["cmyk.jpg"]] and scan.cmyk.sum() == 1
    assert scan.channels[by_name["opaque_rgba.png"]] == 4
    assert (scan.height[scan.ok] > 0).all() and (scan.height[~scan.ok] == 0).all()
    clean = data.drop_bad(examples, scan)
    assert len(clean) == len(examples) - 3
    ds = data.build_dataset(clean, 32, batch_size=8, training=True, seed=0)
    batches = list(ds.take(len(clean) // 8))  # a full epoch: no decode error reaches it
    assert len(batches) == len(clean) // 8


def test_scan_names_a_bad_record_by_file_and_index(tmp_path):
    good = colour_png((10, 20, 30))
    write_records(tmp_path / "r0", [(good, 0, "a"), (colour_png((9, 9, 9)), 1, "b")])
    write_records(tmp_path / "r1", [(good, 0, "a"), (b"\xff\xd8\xff garbage", 1, "b")])
    examples = data.load_examples(f"tfrecord:{tmp_path}/r*")
    scan = data.scan_images(examples)
    assert scan.ok.tolist() == [True, True, True, False]
    [(where, reason)] = scan.bad(examples)
    assert where == f"{tmp_path}/r1#1" and "JPEG" in reason
    assert scan.digest[0] == scan.digest[2] != scan.digest[1]


def test_scan_of_in_memory_pixels_hashes_duplicates(fashion_dir):
    examples = data.load_examples(f"fashion_mnist:test:{fashion_dir}")
    doubled = examples.take(np.array([0, 1, 0]))
    scan = data.scan_images(doubled)
    assert scan.ok.all() and scan.channels.tolist() == [1, 1, 1]
    assert scan.digest[0] == scan.digest[2] != scan.digest[1]


# ---------------------------------------------------------------------------------------------
# Caching
# ---------------------------------------------------------------------------------------------


def test_cache_plan_uses_memory_within_budget_else_a_keyed_file(image_folders, tmp_path):
    examples = data.load_examples(f"folder:{image_folders['train']}")
    assert data.cache_plan(examples, 32, "auto", 1, str(tmp_path), "train") == "memory"
    disk = data.cache_plan(examples, 512, "auto", 1, str(tmp_path), "train")
    assert disk.startswith(f"{tmp_path}/train-")
    assert data.cache_plan(examples, 500, "auto", 1, str(tmp_path), "train") != disk
    assert data.cache_plan(examples, 32, "off", 1, str(tmp_path), "train") == "off"


def test_disk_cache_recovers_from_a_run_killed_while_writing_it(image_folders, tmp_path):
    examples = data.load_examples(f"folder:{image_folders['test']}")
    plan = data.cache_plan(examples, 24, "disk", 0, str(tmp_path), "test")
    ds = data.build_dataset(examples, 24, 6, False, cache=plan)
    iterator = iter(ds)
    next(iterator)  # a partial first epoch holds the cache's lock file, as a killed run leaves it
    assert list(tmp_path.glob("test-*.lockfile"))
    # Without the clean-up in cache_plan this raises "concurrent caching iterator".
    again = data.build_dataset(
        examples,
        24,
        6,
        False,
        cache=data.cache_plan(examples, 24, "disk", 0, str(tmp_path), "test"),
    )
    assert sum(len(y) for _, y in again) == len(examples)
    del iterator


@pytest.mark.parametrize("cache", ["disk", "off"])
def test_disk_cache_and_no_cache_give_the_same_pixels(image_folders, tmp_path, cache):
    examples = data.load_examples(f"folder:{image_folders['test']}")
    plan = data.cache_plan(examples, 24, cache, 0, str(tmp_path / "new" / "cache"), "test")
    reference = np.concatenate([x for x, _ in data.build_dataset(examples, 24, 6, False)])
    for _ in range(2):  # the second pass reads the cache file
        got = np.concatenate([x for x, _ in data.build_dataset(examples, 24, 6, False, cache=plan)])
        np.testing.assert_array_equal(got, reference)
    assert bool(list(tmp_path.glob("new/cache/test-*"))) == (cache == "disk")
    # Training with the bounded (disk) or file-name (off) shuffle still visits every example once.
    ds = data.build_dataset(examples, 24, 2, True, cache=plan, memory_budget_mb=0)
    labels = np.concatenate([y for _, y in ds.take(len(examples) // 2)])
    assert sorted(labels.tolist()) == sorted(examples.labels.tolist())


def test_randaugment_changes_pixels_and_keeps_the_batch_contract(image_folders):
    examples = data.load_examples(f"folder:{image_folders['test']}")
    plain = data.build_dataset(examples, 32, 6, training=True, seed=0)
    augmented = data.build_dataset(
        examples, 32, 6, training=True, seed=0, augment=augment.parse_augment("randaugment")
    )
    assert augmented.element_spec == plain.element_spec
    # The same seed gives the same examples in the same order: only the augmentation differs.
    for (images, labels), (changed, same_labels) in zip(plain.take(3), augmented.take(3)):
        np.testing.assert_array_equal(labels, same_labels)
        assert np.abs(changed.numpy().astype(int) - images.numpy().astype(int)).mean() > 1.0


@pytest.mark.parametrize("name", ["", " ", "..", "a/b", "a\\b", "line\nbreak", "tab\there"])
def test_unsafe_class_names_are_refused(name):
    examples = data.Examples(class_names=("ok", name), labels=np.array([0, 1]), origin="x")
    with pytest.raises(UserError, match="is not allowed"):
        data.check_class_names(examples, "config.data.train")
    data.check_class_names(data.Examples(("cat", "dog 2"), np.array([0, 1])), "f")
