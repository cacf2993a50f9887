"""Dataset specs: parsing every kind, field names in errors, ~ for the home folder."""

import shutil

import pytest
import tensorflow as tf

from sft_tf.data import examples as examples_lib
from sft_tf.data import sources as sources_lib
from sft_tf.data import specs
from sft_tf.errors import UserError
from tests.helpers import write_pngs


def test_parse_spec():
    assert specs.parse_spec("folder:/a/b") == specs.Spec("folder", "/a/b")
    assert specs.parse_spec("fashion_mnist:test") == specs.Spec("fashion_mnist", "", "test")
    assert specs.parse_spec("fashion_mnist:train:/x") == specs.Spec("fashion_mnist", "/x", "train")
    for bad in ("", "folder:", "/data/train", "tfds_x:mnist", "fashion_mnist:valid"):
        with pytest.raises(UserError, match="config.data.train"):
            specs.parse_spec(bad, field="config.data.train")


def test_a_bare_path_or_a_mistyped_kind_gets_the_spec_it_meant(tmp_path):
    (tmp_path / "labels.csv").write_text("image,label\n")
    for given, meant in (
        (str(tmp_path), f"a folder of class folders is folder:{tmp_path}"),
        (f"{tmp_path}/labels.csv", f"a CSV of image paths and labels is csv:{tmp_path}/labels"),
        ("flder:/data/train", "did you mean folder:/data/train?"),
        ("tfrecrd:/data/*.tfrec", "did you mean tfrecord:/data/*.tfrec?"),
        ("/no/such/folder", "use one of folder:PATH, tfds:NAME"),
    ):
        with pytest.raises(UserError) as bad:
            specs.parse_spec(given, field="config.data.train")
        message = str(bad.value)
        assert message.startswith(f"config.data.train={given!r} is not a dataset spec; ")
        assert meant in message and "\n" not in message, given


def test_parse_more_specs():
    assert specs.parse_spec("tfds:tf_flowers") == specs.Spec("tfds", "tf_flowers", "train")
    assert specs.parse_spec("tfds:tf_flowers:train[:80%]") == specs.Spec(
        "tfds", "tf_flowers", "train[:80%]"
    )
    assert specs.parse_spec("tfrecord:gs://b/train-*") == specs.Spec("tfrecord", "gs://b/train-*")
    assert specs.parse_spec("split:0.2") == specs.Spec("split", "", "0.2")
    for bad in ("split:0", "split:1.5", "split:ten"):
        with pytest.raises(UserError, match="config.data.validation=.*between 0 and 1"):
            specs.parse_spec(bad, field="config.data.validation")
    with pytest.raises(UserError, match="only for config.data.validation"):
        sources_lib.load_examples("split:0.1", field="config.data.train")


def test_tilde_is_the_home_folder(tmp_path, monkeypatch, fashion_dir):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_pngs(tmp_path / "photos" / "cat", 1)
    write_pngs(tmp_path / "photos" / "dog", 2)
    shutil.copytree(fashion_dir, tmp_path / "fm")
    record = tf.train.Example(
        features=tf.train.Features(
            feature={
                examples_lib.TFRECORD_IMAGE: tf.train.Feature(
                    bytes_list=tf.train.BytesList(
                        value=[(tmp_path / "photos/cat/0.png").read_bytes()]
                    )
                ),
                examples_lib.TFRECORD_LABEL: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[3])
                ),
            }
        )
    )
    with tf.io.TFRecordWriter(str(tmp_path / "train-0.tfrecord")) as writer:
        writer.write(record.SerializeToString())

    assert specs.parse_spec("folder:~/photos") == specs.Spec("folder", f"{tmp_path}/photos")
    assert sources_lib.load_examples("folder:~/photos").counts().tolist() == [1, 2]
    assert len(sources_lib.load_examples("tfrecord:~/train-*")) == 1
    assert len(sources_lib.load_examples("fashion_mnist:test:~/fm")) == 100
    with pytest.raises(UserError, match=f"{tmp_path}/nothing is not a directory"):
        sources_lib.load_examples("folder:~/nothing")
