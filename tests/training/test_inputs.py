"""sft_tf/training/inputs.py: config.data becomes the run's splits (listed, class subset,
excluded images, bad files screened out, few-shot sampled, held out) and their tf.data
pipelines, with the batch contract: uint8 images [B, H, W, 3]; labels one-hot float32 [B, C]
for the trainers' loss (int32 [B] with one_hot=False, for evaluation); float32 sample
weights [B] when class weighting is on; static batch shapes (drop_remainder) in training."""

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.errors import UserError
from sft_tf.training import inputs
from tests.helpers import make_image_folder, tiny_config

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    return {
        "train": make_image_folder(base / "train", per_class=8, seed=0),
        "test": make_image_folder(base / "test", per_class=3, seed=1),
    }


def _config(folders, tmp_path, **changes):
    config = tiny_config(data__cache_dir=str(tmp_path / "cache"), **changes)
    config.data.train = f"folder:{folders['train']}"
    config.data.test = f"folder:{folders['test']}"
    return config


def test_load_split_lists_a_spec_with_its_class_subset(folders):
    assert inputs.load_split("", "config.data.test", None, "config.data.classes") is None
    every = inputs.load_split(f"folder:{folders['train']}", "f", None, "c")
    assert every.class_names == CLASSES and len(every) == 24
    two = inputs.load_split(f"folder:{folders['train']}", "f", "fox,cat", "c")
    assert two.class_names == ("fox", "cat") and len(two) == 16  # renumbered in that order
    assert all(("/fox/" in str(p)) == (label == 0) for p, label in zip(two.paths, two.labels))
    with pytest.raises(UserError, match=r"^config\.data\.train='folder:/no/such': "):
        inputs.load_split("folder:/no/such", "config.data.train", None, "c")


def test_list_target_splits_lists_train_and_test_but_not_a_hold_out(folders, tmp_path):
    config = _config(folders, tmp_path, data__validation="split:0.25")
    listed = inputs.list_target_splits(config)
    assert set(listed) == {"train", "test"}  # validation comes from train later
    assert (len(listed["train"]), len(listed["test"])) == (24, 9)


def test_a_test_split_with_other_classes_is_refused(folders, tmp_path):
    other = tmp_path / "other"
    for name in ("cat", "wolf"):
        (other / name).mkdir(parents=True)
        (other / name / "a.png").write_bytes((folders["test"] / "cat" / "001.png").read_bytes())
    config = _config(folders, tmp_path)
    config.data.test = f"folder:{other}"
    with pytest.raises(UserError) as raised:
        inputs.list_target_splits(config)
    assert str(raised.value) == (
        f"config.data.test='folder:{other}' has different classes from the training data: "
        "missing ['dog', 'fox']; not in the training data ['wolf']"
    )


def test_excluded_images_are_left_out_of_every_split(folders, tmp_path, capsys):
    dropped = [folders["train"] / "cat" / "001.png", folders["test"] / "dog" / "001.jpg"]
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# reviewed\n" + "".join(f"{p}\n" for p in dropped) + "/no/such.png\n")
    config = _config(folders, tmp_path, data__exclude=str(exclude))
    listed = inputs.list_target_splits(config)
    assert (len(listed["train"]), len(listed["test"])) == (23, 8)
    kept = {str(p) for split in listed.values() for p in split.paths}
    assert not kept & {str(p) for p in dropped}
    out = capsys.readouterr().out
    assert f"Warning: 1 line(s) of {exclude} name no image of the data (e.g. /no/such.png)" in out
    assert f"  train: left out 1 image(s) listed in {exclude}\n" in out


def test_few_shot_sampling_then_a_seeded_disjoint_hold_out(folders, tmp_path):
    config = _config(folders, tmp_path, data__validation="split:0.5", seed=1)
    config.data.examples_per_class = 6
    splits = inputs.sample_and_hold_out(config, inputs.list_target_splits(config))
    train, validation = splits["train"], splits["validation"]
    assert list(train.counts()) == list(validation.counts()) == [3, 3, 3]
    assert not set(train.paths) & set(validation.paths)
    again = inputs.sample_and_hold_out(config, inputs.list_target_splits(config))
    assert list(again["validation"].paths) == list(validation.paths)  # seeded
    config.seed = 2
    other = inputs.sample_and_hold_out(config, inputs.list_target_splits(config))
    assert list(other["validation"].paths) != list(validation.paths)


def test_load_target_splits_drops_files_that_cannot_be_decoded(folders, tmp_path, capsys):
    train = tmp_path / "train"
    make_image_folder(train, per_class=4)
    (train / "dog" / "broken.jpg").write_bytes(b"not an image")
    config = _config(folders, tmp_path)
    config.data.train, config.data.test = f"folder:{train}", ""
    kept, validation, test = inputs.load_target_splits(config)
    assert len(kept) == 12 and validation is None and test is None
    assert not any(p.endswith("broken.jpg") for p in kept.paths)
    assert f"train: {train / 'dog' / 'broken.jpg'}: " in capsys.readouterr().out


def test_training_batches_keep_the_contract(folders, tmp_path):
    config = _config(folders, tmp_path)
    train = inputs.load_split(config.data.train, "f", None, "c")
    images, labels = inputs.make_dataset(config, train, training=True).element_spec
    assert (images.dtype, images.shape.as_list()) == (tf.uint8, [8, 32, 32, 3])
    assert (labels.dtype, labels.shape.as_list()) == (tf.float32, [8, 3])
    ints = inputs.make_dataset(config, train, training=True, one_hot=False)
    assert ints.element_spec[1].dtype == tf.int32
    assert ints.element_spec[1].shape.as_list() == [8]
    weights = np.array([1.0, 2.0, 3.0], np.float32)
    weighted = inputs.make_dataset(config, train, training=True, class_weights=weights)
    images, one_hot, sample_weight = next(iter(weighted))
    assert (sample_weight.dtype, sample_weight.shape.as_list()) == (tf.float32, [8])
    np.testing.assert_array_equal(sample_weight, weights[np.argmax(one_hot, axis=1)])
    assert images.numpy().max() > 1  # raw 0..255 pixels: preprocessing is in the model


def test_evaluation_batches_keep_every_example_in_order(folders, tmp_path):
    config = _config(folders, tmp_path)
    test = inputs.load_split(config.data.test, "f", None, "c")
    batches = list(inputs.make_dataset(config, test, training=False, one_hot=False))
    assert [len(y) for _, y in batches] == [8, 1]  # the last batch is kept, short
    assert batches[0][1].dtype == tf.int32
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), test.labels)


def test_train_input_streams_epochs_resumes_mid_way_and_weights_classes(folders, tmp_path, capsys):
    config = _config(folders, tmp_path, data__class_weighting="dog:3")
    train = inputs.load_split(config.data.train, "f", None, "c")
    strategy = tf.distribute.get_strategy()
    stream, steps = inputs.train_input(config, strategy, train)
    assert steps == 3  # 24 // 8
    assert "Class weights (dog:3): cat 1, dog 3, fox 1" in capsys.readouterr().out
    whole = list(stream((0, 0), 2))
    resumed = list(stream((1, 1), 2))
    assert len(whole) == 6 and len(resumed) == 2
    for (x1, y1, w1), (x2, y2, w2) in zip(whole[4:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(w1, w2)
    labels = np.argmax(np.concatenate([y for _, y, _ in whole]), axis=1)
    weights = np.concatenate([w for _, _, w in whole])
    np.testing.assert_array_equal(weights, np.where(labels == 1, 3.0, 1.0))
    unbalanced, _ = inputs.train_input(config, strategy, train, balance=False)
    assert len(next(iter(unbalanced((0, 0), 1)))) == 2  # source training: no weights


def test_build_pipelines_shares_the_training_decode(folders, tmp_path):
    config = _config(folders, tmp_path, data__validation="split:0.25")
    train, validation, test = inputs.load_target_splits(config)
    pipelines = inputs.build_pipelines(
        config, tf.distribute.get_strategy(), train, validation, test
    )
    assert pipelines.steps == len(train) // 8
    assert pipelines.val_ds.element_spec[1].shape.as_list() == [None, 3]  # one-hot
    assert pipelines.test_ds.element_spec[1].dtype == tf.int32
    next(iter(pipelines.train_input((0, 0), 1)))
    decoded = pipelines.decoded_pixels(train)
    assert decoded is not None and pipelines.decoded_pixels(test) is None
    decoded_images = np.stack([image for image, _ in decoded])
    assert decoded_images.shape == (len(train), 32, 32, 3)


def test_check_batch_fits_and_describe_split_say_what_the_split_holds(folders):
    train = inputs.load_split(f"folder:{folders['train']}", "f", None, "c")
    inputs.check_batch_fits(train, 24, "the training split")
    with pytest.raises(UserError) as raised:
        inputs.check_batch_fits(train, 32, "the training split")
    assert str(raised.value) == (
        "config.data.global_batch_size=32 is larger than the training split (24 images after "
        "sampling and hold-out); lower it to <= 24 or add images"
    )
    assert inputs.describe_split("train", train) == (
        f"  train          24 images, 3 classes (8-8 per class) from folder:{folders['train']}"
    )


# --- What each step says when it leaves a split, or a class, with nothing (issue #35) -------


def test_exclusion_that_empties_the_training_split_or_a_class_says_so(tmp_path):
    train = make_image_folder(tmp_path / "train", per_class=2)
    listing = tmp_path / "exclude.txt"
    listing.write_text("".join(f"{p}\n" for p in sorted(train.rglob("*.*"))))
    config = tiny_config(data__train=f"folder:{train}", data__exclude=str(listing))
    with pytest.raises(UserError) as error:
        inputs.list_target_splits(config)
    assert str(error.value) == (
        f"config.data.exclude='{listing}' leaves out all 6 images of config.data.train "
        f"(folder:{train}); remove those lines from the file, or check that it lists the "
        "images you meant"
    )
    listing.write_text("".join(f"{p}\n" for p in sorted((train / "dog").rglob("*.*"))))
    with pytest.raises(UserError, match=r"leaves out every image of class\(es\) 'dog' \(2\) of"):
        inputs.list_target_splits(config)


def test_holdout_and_imbalance_warnings_name_the_classes(tmp_path, capsys):
    """200-vs-1 in small: split:0.2 holds out none of the lone class, and training is 16:1."""
    from tests.helpers import write_pngs

    write_pngs(tmp_path / "train" / "many", 20)
    write_pngs(tmp_path / "train" / "one", 1)
    config = tiny_config(data__train=f"folder:{tmp_path / 'train'}", data__validation="split:0.2")
    train, validation, _ = inputs.load_target_splits(config)
    assert train.counts().tolist() == [16, 1] and validation.counts().tolist() == [4, 0]
    out = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith(
            "Warning: config.data.validation='split:0.2' holds out no image of class(es) 'one'"
        )
        for line in out
    )
    assert out[-1] == (
        "Warning: the training split is imbalanced: class 'many' has 16 images, 16 times the 1 "
        "of class 'one', so accuracy can look good while 'one' is never predicted; "
        "config.data.class_weighting=balanced evens it out"
    )
    config.data.class_weighting = "balanced"
    inputs.load_target_splits(config)
    assert capsys.readouterr().out.splitlines()[-1].endswith("while 'one' is never predicted")


def test_an_empty_training_split_is_not_a_batch_size_problem(folders):
    train = inputs.load_split(f"folder:{folders['train']}", "f", None, "c")
    with pytest.raises(UserError, match=r"^the training split has no images left after exclu"):
        inputs.check_batch_fits(train.take([]), 8, "the training split")
