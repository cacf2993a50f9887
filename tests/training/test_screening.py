"""The up-front screening keeps each image decoded for the pipelines where the pixel cache would
hold it anyway: exactly the pixels the pipelines decode, on real files of every format."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.data import caches, decode, sources
from sft_tf.data import scan as scan_lib
from sft_tf.data.examples import Examples
from sft_tf.training import screening
from sft_tf.training.inputs import make_dataset
from tests.helpers import exif_jpeg, photo, pil_bytes, solid, tiny_config, write_messy_folder

SIZE = 32


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Good JPEG/PNGs, odd formats, phone photos turned by EXIF, large JPEGs, and 3
    undecodable files."""
    root = tmp_path_factory.mktemp("messy")
    bad = write_messy_folder(root)
    pixels = solid(h=20, w=36)
    pixels[:, :8] = 0  # a dark left edge shows which way the photo was turned
    (root / "dog" / "phone.jpg").write_bytes(exif_jpeg(pixels, 6))
    # Large JPEGs, which decode scaled down: a turned phone photo, grey, CMYK.
    large = Image.fromarray(photo(150, 100))
    (root / "fox" / "large_phone.jpg").write_bytes(exif_jpeg(photo(100, 150), 8))
    (root / "fox" / "large_grey.jpg").write_bytes(pil_bytes(large.convert("L"), "JPEG"))
    (root / "cat" / "large_cmyk.jpg").write_bytes(pil_bytes(large.convert("CMYK"), "JPEG"))
    return root, bad


def _screen(root, keep):
    examples = sources.load_examples(f"folder:{root}")
    limit = scan_lib.DEFAULT_MAX_IMAGE_PIXELS
    return examples, screening.screen_splits({"train": examples}, "skip", limit, keep=keep)["train"]


@pytest.mark.parametrize("method", decode.RESIZE_METHODS)
def test_kept_pixels_are_the_pipelines_own_decode(messy, method):
    root, bad = messy
    config = tiny_config(data__train=f"folder:{root}", data__resize_method=method)
    config.model.image_size = SIZE
    listed, kept = _screen(root, screening.decoded_to_keep(config))
    assert len(kept) == len(listed) - len(bad)  # the undecodable files dropped, pixels with them
    assert kept.decoded_as == (SIZE, method) and kept.decoded.shape == (len(kept), SIZE, SIZE, 3)
    expected = [decode.decode_image(tf.io.read_file(p), SIZE, method).numpy() for p in kept.paths]
    np.testing.assert_array_equal(kept.decoded.numpy(), np.stack(expected))
    subset = kept.take(np.asarray([5, 1]))
    np.testing.assert_array_equal(subset.decoded.numpy(), np.stack([expected[5], expected[1]]))
    assert kept.decoded_at(SIZE + 1, method) is None  # other sizes decode the files


def test_pipelines_read_the_kept_pixels_and_give_the_same_batches(messy, tmp_path):
    root = shutil.copytree(messy[0], tmp_path / "data")
    config = tiny_config(data__train=f"folder:{root}", data__augment="flip")
    config.model.image_size, config.data.global_batch_size = SIZE, 8
    _, plain = _screen(root, None)
    _, kept = _screen(root, screening.decoded_to_keep(config))
    assert plain.decoded is None

    def batches(examples):
        training = make_dataset(config, examples, training=True, until_epoch=2)
        evaluation = make_dataset(config, examples, training=False, one_hot=False)
        return [*training.as_numpy_iterator(), *evaluation.as_numpy_iterator()]

    expected = batches(plain)
    shutil.rmtree(root)  # the kept split's pipelines never read the files again
    got = batches(kept)
    assert len(got) == len(expected) > 2
    for a, b in zip(got, expected):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_only_what_the_memory_cache_would_hold_is_kept(messy, fashion_dir):
    root, _ = messy
    config = tiny_config(data__train=f"folder:{root}")
    listed = sources.load_examples(f"folder:{root}")
    assert screening.decoded_to_keep(config)(listed) == (config.model.image_size, "resize")
    for field, value in (("cache", "off"), ("cache", "disk"), ("cache_memory_mb", 0)):
        changed = tiny_config(data__train=f"folder:{root}", **{f"data__{field}": value})
        assert screening.decoded_to_keep(changed)(listed) is None, field
    # 512 images of 32 x 32: 1.5 MB of pixels fit a 2 MB budget once (the pipeline's memory
    # cache) but not twice (the split and a subset taken from it): not kept.
    many = Examples(("a",), np.zeros(512, np.int32), paths=np.asarray(["a.png"] * 512))
    config.data.cache_memory_mb = 2
    assert caches.cache_mode(many, 32, "auto", 2) == "memory"
    assert screening.decoded_to_keep(config)(many) is None
    config.data.cache_memory_mb = 3
    assert screening.decoded_to_keep(config)(many) == (32, "resize")
    # In-memory pixels need no decoding.
    in_memory = sources.load_examples(f"fashion_mnist:test:{fashion_dir}")
    assert screening.decoded_to_keep(config)(in_memory) is None


def test_a_leakage_drop_that_empties_training_or_a_class_names_the_step(tmp_path):
    """data.on_leakage=drop with test the same images as train: said as what it is, not as a
    batch larger than an empty split (or, for one class, a class trained on nothing)."""
    from sft_tf.errors import UserError
    from tests.helpers import make_image_folder

    train = make_image_folder(tmp_path / "train", per_class=2)
    limit = scan_lib.DEFAULT_MAX_IMAGE_PIXELS
    splits = {"train": sources.load_examples(f"folder:{train}")}
    splits["test"] = sources.load_examples(f"folder:{train}")
    with pytest.raises(UserError) as error:
        screening.screen_splits(splits, "skip", limit, "drop")
    assert str(error.value) == (
        "config.data.on_leakage='drop' removed all 6 decodable training images: each is "
        "identical to, or a near-duplicate of, a validation or test image; check that the "
        "training and the validation/test specs are not the same data, or set "
        "config.data.on_leakage=warn"
    )
    # Only the test folder's cats repeat training images: the cat class is emptied.
    test = make_image_folder(tmp_path / "test", per_class=2, seed=5)
    shutil.rmtree(test / "cat")
    shutil.copytree(train / "cat", test / "cat")
    splits["test"] = sources.load_examples(f"folder:{test}")
    with pytest.raises(UserError, match=r"removed every training image of class\(es\) 'cat' \(2\)"):
        screening.screen_splits(splits, "skip", limit, "drop")
    kept = screening.screen_splits(splits, "skip", limit, "warn")
    assert kept["train"].counts().tolist() == [2, 2, 2]
