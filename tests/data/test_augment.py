"""Augmentations on real files: parsing, random-resized crop, RandAugment, MixUp/CutMix."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import pipeline
from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError


def test_unknown_augmentation_is_named():
    with pytest.raises(UserError, match=r"unknown \['blur'\]"):
        augment_lib.parse_augment("flip,blur", field="config.data.augment")


def test_random_resized_crop_differs_per_image():
    # Channel 0 rises left to right, channel 1 top to bottom: every box looks different.
    rows, columns = np.mgrid[0:32, 0:32].astype(np.float32) * 8
    image = np.stack([columns, rows, rows + columns], axis=-1)
    batch = tf.constant(np.stack([image] * 8))
    seeds = augment_lib.BatchSeeds(1)
    # Batch 1's draws: batch 0 happens to draw one box of ~100% of the area, centred (a
    # legitimate draw that leaves its image as it was).
    seeds.start(1)
    cropped = augment_lib.random_resized_crop(batch, seeds).numpy()
    assert cropped.shape == batch.shape
    # Each image got its own box: no two crops are the same, and none is the whole image.
    flat = cropped.reshape(8, -1)
    assert len({tuple(np.round(row, 3)) for row in flat}) == 8
    assert all(np.abs(row - image.ravel()).max() > 1 for row in flat)


@pytest.mark.parametrize("names", [["mixup"], ["cutmix"], ["mixup", "cutmix"]])
def test_mixing_blends_images_and_labels(image_folders, names):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    ds = pipeline.build_dataset(
        examples, 32, 16, True, seed=0, augment=["flip", *names], num_classes=3
    )
    images, labels = next(iter(ds))
    labels = labels.numpy()
    assert images.dtype == tf.uint8 and labels.shape == (16, 3)
    np.testing.assert_allclose(labels.sum(-1), 1.0, atol=1e-5)
    # Some examples now carry two classes.
    assert (labels.max(-1) < 0.999).any()


def test_mixing_without_one_hot_labels_is_refused(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    with pytest.raises(ValueError, match="one-hot"):
        pipeline.build_dataset(examples, 32, 16, True, augment=["mixup"])


def test_mixed_examples_weigh_by_their_label_mixture():
    weights = np.array([1.0, 3.0], np.float32)
    labels = tf.constant([0, 1, 0, 1])

    def swap_halves(images, one_hot):
        return images, 0.25 * one_hot + 0.75 * tf.reverse(one_hot, [0])

    _, soft, sample_weight = augment_lib.finish_batch(
        tf.zeros([4, 2, 2, 3], tf.uint8), labels, 2, weights, swap_halves
    )
    np.testing.assert_allclose(sample_weight, soft.numpy() @ weights)
    np.testing.assert_allclose(sample_weight, [2.5, 1.5, 2.5, 1.5])


def test_randaugment_changes_pixels_and_keeps_the_batch_contract(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['test']}")
    plain = pipeline.build_dataset(examples, 32, 6, training=True, seed=0)
    augmented = pipeline.build_dataset(
        examples, 32, 6, training=True, seed=0, augment=augment_lib.parse_augment("randaugment")
    )
    assert augmented.element_spec == plain.element_spec
    # The same seed gives the same examples in the same order: only the augmentation differs.
    for (images, labels), (changed, same_labels) in zip(plain.take(3), augmented.take(3)):
        np.testing.assert_array_equal(labels, same_labels)
        assert np.abs(changed.numpy().astype(int) - images.numpy().astype(int)).mean() > 1.0


@pytest.mark.parametrize("names", [["mixup"], ["cutmix"]])
def test_mixing_blends_multi_hot_targets(image_folders, names):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    # The same images with label sets: class c, plus label 3 on every other image.
    multi_hot = np.zeros((len(examples), 4), np.uint8)
    multi_hot[np.arange(len(examples)), examples.labels] = 1
    multi_hot[::2, 3] = 1
    tagged = dataclasses.replace(
        examples, class_names=(*examples.class_names, "odd"), labels=multi_hot
    )
    ds = pipeline.build_dataset(tagged, 32, 16, True, seed=0, augment=names, num_classes=4)
    _, targets = next(iter(ds))
    targets = targets.numpy()
    assert targets.shape == (16, 4) and targets.dtype == np.float32
    assert ((targets >= 0) & (targets <= 1)).all()
    # Mixed rows are soft between two label sets; the sets are not renormalised to sum to 1.
    assert ((targets > 0.001) & (targets < 0.999)).any() and (targets.sum(-1) > 1.001).any()
