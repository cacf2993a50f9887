"""The tf.data pipeline on real files: static shapes, shuffling, exact resume, caches."""

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import caches, pipeline
from sft_tf.data import sources as sources_lib
from sft_tf.data.examples import Examples
from sft_tf.errors import UserError


def test_training_pipeline_static_shapes_shuffles_and_drops_remainder(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    ds = pipeline.build_dataset(
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
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    # Every augmentation at once, MixUp/CutMix included (they need one-hot labels).
    options = dict(
        batch_size=8, training=True, seed=3, augment=augment_lib.AUGMENTATIONS, num_classes=3
    )
    whole = list(pipeline.build_dataset(examples, 32, until_epoch=3, **options))
    resumed = list(pipeline.build_dataset(examples, 32, start=(1, 4), until_epoch=3, **options))
    assert len(whole) == 3 * 6 and len(resumed) == 8
    for (x1, y1), (x2, y2) in zip(whole[6 + 4 :], resumed):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    # Different epochs and batches really differ (the test above would pass on a constant).
    assert not np.array_equal(whole[0][0], whole[6][0])
    assert not np.array_equal(whole[0][1], whole[6][1])


def test_eval_pipeline_keeps_order_and_every_example(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['test']}")
    ds = pipeline.build_dataset(examples, 24, batch_size=5, training=False)
    labels = np.concatenate([y.numpy() for _, y in ds])
    np.testing.assert_array_equal(labels, examples.labels)
    images = next(iter(ds))[0].numpy()
    # A red "cat" image stays red after decode and resize.
    assert images[0, ..., 0].mean() > images[0, ..., 2].mean() + 50


def test_pipeline_rejects_fewer_examples_than_a_batch(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['test']}")
    with pytest.raises(UserError, match="fewer than one batch"):
        pipeline.build_dataset(examples, 32, batch_size=64, training=True)


def test_disk_cache_recovers_from_a_run_killed_while_writing_it(image_folders, tmp_path):
    examples = sources_lib.load_examples(f"folder:{image_folders['test']}")
    plan = caches.cache_plan(examples, 24, "disk", 0, str(tmp_path), "test")
    ds = pipeline.build_dataset(examples, 24, 6, False, cache=plan)
    iterator = iter(ds)
    next(iterator)  # a partial first epoch holds the cache's lock file, as a killed run leaves it
    assert list(tmp_path.glob("test-*.lockfile"))
    # Without the clean-up in cache_plan this raises "concurrent caching iterator".
    again = pipeline.build_dataset(
        examples,
        24,
        6,
        False,
        cache=caches.cache_plan(examples, 24, "disk", 0, str(tmp_path), "test"),
    )
    assert sum(len(y) for _, y in again) == len(examples)
    del iterator


@pytest.mark.parametrize("cache", ["disk", "off"])
def test_disk_cache_and_no_cache_give_the_same_pixels(image_folders, tmp_path, cache):
    examples = sources_lib.load_examples(f"folder:{image_folders['test']}")
    plan = caches.cache_plan(examples, 24, cache, 0, str(tmp_path / "new" / "cache"), "test")
    reference = np.concatenate([x for x, _ in pipeline.build_dataset(examples, 24, 6, False)])
    for _ in range(2):  # the second pass reads the cache file
        got = np.concatenate(
            [x for x, _ in pipeline.build_dataset(examples, 24, 6, False, cache=plan)]
        )
        np.testing.assert_array_equal(got, reference)
    assert bool(list(tmp_path.glob("new/cache/test-*"))) == (cache == "disk")
    # Training with the bounded (disk) or file-name (off) shuffle still visits every example once.
    ds = pipeline.build_dataset(examples, 24, 2, True, cache=plan, memory_budget_mb=0)
    labels = np.concatenate([y for _, y in ds.take(len(examples) // 2)])
    assert sorted(labels.tolist()) == sorted(examples.labels.tolist())


def test_disk_cache_in_groups_keeps_every_example_in_order(tmp_path):
    """The disk cache holds groups of `caches.DISK_GROUP` examples (a bounded writer index):
    two full groups and a partial one read back as the uncached examples, in order."""
    count = 2 * caches.DISK_GROUP + 37
    rng = np.random.default_rng(0)
    examples = Examples(
        ("a", "b", "c"),
        (np.arange(count) % 3).astype(np.int32),
        pixels=rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8),
        origin="pixels",
    )
    plan = caches.cache_plan(examples, 8, "disk", 0, str(tmp_path), "train")

    def read(cache):
        batches = list(pipeline.build_dataset(examples, 8, 100, False, cache=cache))
        return [np.concatenate([b[i] for b in batches]) for i in (0, 1)]

    reference = read("off")
    for _ in range(2):  # writes the cache file, then reads it
        for got, want in zip(read(plan), reference, strict=True):
            np.testing.assert_array_equal(got, want)
    assert len(reference[1]) == count and list(tmp_path.glob("train-*.index"))
