"""Examples: class selection, few-shot sampling, hold-out, class checks, on real files."""

import numpy as np
import pytest

from sft_tf.data import examples as examples_lib
from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from tests.helpers import colour_png, write_image, write_pngs, write_records


def test_select_classes_by_name_and_id_renumbers_in_given_order(fashion_dir):
    train = sources_lib.load_examples(f"fashion_mnist:train:{fashion_dir}")
    by_name = examples_lib.select_classes(train, ["Sneaker", "Bag"], "config.data.classes")
    by_id = examples_lib.select_classes(train, ["7", "8"], "config.data.classes")
    assert by_name.class_names == by_id.class_names == ("Sneaker", "Bag")
    np.testing.assert_array_equal(by_name.labels, by_id.labels)
    assert set(by_name.labels.tolist()) == {0, 1} and len(by_name) == 80
    with pytest.raises(UserError, match="'Hat' is not in"):
        examples_lib.select_classes(train, ["Hat"], "config.data.classes")
    with pytest.raises(UserError, match="listed twice"):
        examples_lib.select_classes(train, ["Bag", "8"], "config.data.classes")


def test_sample_per_class_is_seeded_and_balanced(fashion_dir):
    train = sources_lib.load_examples(f"fashion_mnist:train:{fashion_dir}")
    a = examples_lib.sample_per_class(train, 5, seed=1)
    b = examples_lib.sample_per_class(train, 5, seed=1)
    c = examples_lib.sample_per_class(train, 5, seed=2)
    assert a.counts().tolist() == [5] * 10
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert not np.array_equal(a.pixels, c.pixels)
    assert examples_lib.sample_per_class(train, None, seed=0) is train


def test_check_same_classes_names_the_difference(image_folders, tmp_path):
    train = sources_lib.load_examples(f"folder:{image_folders['train']}")
    for name in ("cat", "dog", "owl"):
        write_image(tmp_path / name / "0.png", np.zeros((8, 8, 3), np.uint8))
    other = sources_lib.load_examples(f"folder:{tmp_path}")
    with pytest.raises(UserError, match=r"missing \['fox'\]; not in the training data \['owl'\]"):
        examples_lib.check_same_classes(train.class_names, other, "config.data.test")


def test_tfrecord_test_split_missing_a_class_is_named(tmp_path):
    write_records(tmp_path / "train", [(colour_png(0), 0, "cat"), (colour_png(0), 1, "dog")])
    write_records(tmp_path / "test", [(colour_png(0), 0, "cat")])
    train = sources_lib.load_examples(f"tfrecord:{tmp_path}/train")
    test = sources_lib.load_examples(f"tfrecord:{tmp_path}/test")
    with pytest.raises(UserError, match=r"config.data.test=.* missing \['dog'\]"):
        examples_lib.check_same_classes(train.class_names, test, "config.data.test")


def test_holdout_is_seeded_stratified_and_disjoint(image_folders):
    train = sources_lib.load_examples(f"folder:{image_folders['train']}")
    rest, validation = examples_lib.holdout(train, 0.25, seed=3)
    again_rest, again_validation = examples_lib.holdout(train, 0.25, seed=3)
    _, other_validation = examples_lib.holdout(train, 0.25, seed=4)
    assert validation.counts().tolist() == [4, 4, 4]
    assert rest.counts().tolist() == [12, 12, 12]
    assert not set(rest.paths) & set(validation.paths)
    assert set(rest.paths) | set(validation.paths) == set(train.paths)
    np.testing.assert_array_equal(validation.paths, again_validation.paths)
    np.testing.assert_array_equal(rest.paths, again_rest.paths)
    assert set(validation.paths) != set(other_validation.paths)
    assert validation.origin.startswith("split:0.25 of folder:")


@pytest.mark.parametrize("name", ["", " ", "..", "a/b", "a\\b", "line\nbreak", "tab\there"])
def test_unsafe_class_names_are_refused(name):
    examples = examples_lib.Examples(class_names=("ok", name), labels=np.array([0, 1]), origin="x")
    with pytest.raises(UserError, match="is not allowed"):
        examples_lib.check_class_names(examples, "config.data.train")
    examples_lib.check_class_names(examples_lib.Examples(("cat", "dog 2"), np.array([0, 1])), "f")


def _multi_hot(rows, classes=("a", "b", "c", "d")):
    labels = np.zeros((len(rows), len(classes)), np.uint8)
    for i, row in enumerate(rows):
        labels[i, row] = 1
    paths = np.asarray([f"/x/{i}.png" for i in range(len(rows))])
    return examples_lib.Examples(tuple(classes), labels, paths=paths, origin="csv:x.csv")


def test_multi_label_few_shot_keeps_n_positives_per_label_and_subsets_keep_label_sets():
    rng = np.random.default_rng(0)
    rows = [list(np.flatnonzero(rng.random(4) < [0.6, 0.3, 0.1, 0.05])) or [0] for _ in range(400)]
    examples = _multi_hot(rows)
    few = examples_lib.sample_per_class(examples, 5, seed=3)
    assert (few.counts() >= np.minimum(5, examples.counts())).all()
    assert len(few) < 4 * 5 + 1  # an example kept for a rare label counts for the common ones
    again = examples_lib.sample_per_class(examples, 5, seed=3)
    assert few.paths.tolist() == again.paths.tolist()
    # Selecting labels keeps their columns and drops examples showing none of them.
    picked = examples_lib.select_classes(examples, ["d", "b"], "config.data.classes")
    assert picked.class_names == ("d", "b") and picked.labels.shape[1] == 2
    assert picked.labels.any(-1).all() and len(picked) == int(
        examples.labels[:, [1, 3]].any(-1).sum()
    )
    train, validation = examples_lib.holdout(examples, 0.25, seed=1)
    assert len(validation) == 100 and len(train) == 300
    assert not set(train.paths) & set(validation.paths)
    assert examples.label_names(0) == "|".join(
        np.asarray(examples.class_names)[examples.labels[0] > 0]
    )


def test_holdout_keeps_a_lone_image_in_training_and_says_validation_lacks_its_class(
    tmp_path, capsys
):
    """20 vs 1 images: split:0.2 holds out 4 of the first class and none of the second."""
    write_pngs(tmp_path / "many", 20)
    write_pngs(tmp_path / "one", 1)
    train = sources_lib.load_examples(f"folder:{tmp_path}")
    capsys.readouterr()
    rest, validation = examples_lib.holdout(train, 0.2, seed=0, field="config.data.validation")
    assert rest.counts().tolist() == [16, 1] and validation.counts().tolist() == [4, 0]
    assert capsys.readouterr().out == (
        "Warning: config.data.validation='split:0.2' holds out no image of class(es) 'one': too "
        "few examples to spare one, so they stay in training only and the validation scores "
        "say nothing about them; add examples, or give a validation set of its own\n"
    )
    again, _ = examples_lib.holdout(train, 0.2, seed=0)
    assert again.paths.tolist() == rest.paths.tolist()  # seeded
    lone = train.take(np.asarray([0, 20]))  # one image of each class: nothing to hold out
    with pytest.raises(UserError, match=r"'split:0.2' holds out nothing: each class of folder:"):
        examples_lib.holdout(lone, 0.2, seed=0, field="config.data.validation")


def test_holdout_of_multi_label_data_names_labels_with_no_positive_held_out(capsys):
    examples = _multi_hot([[0]] * 20 + [[0, 3]])
    _, validation = examples_lib.holdout(examples, 0.25, seed=0)
    assert validation.counts()[3] == 0
    out = capsys.readouterr().out
    assert "'split:0.25' holds out no positive of label(s) 'b', 'c', 'd': too few" in out


def test_sampling_more_than_a_class_has_keeps_them_all_and_names_the_class(tmp_path, capsys):
    for name, count in (("cat", 6), ("dog", 2), ("fox", 3)):
        write_pngs(tmp_path / name, count)
    train = sources_lib.load_examples(f"folder:{tmp_path}")
    capsys.readouterr()
    few = examples_lib.sample_per_class(train, 4, 0, "config.data.examples_per_class")
    assert few.counts().tolist() == [4, 2, 3]
    assert capsys.readouterr().out == (
        "Warning: config.data.examples_per_class=4, but 2 class(es) have fewer images than "
        "that, so all of theirs are kept: dog 2, fox 3\n"
    )
    examples_lib.sample_per_class(train, 2, 0)
    assert capsys.readouterr().out == ""
    examples_lib.sample_per_class(_multi_hot([[0], [0, 1], [0]], ("a", "b")), 2, 0)
    assert "1 label(s) have fewer positive images than that, so all of theirs are kept: b 1" in (
        capsys.readouterr().out
    )
