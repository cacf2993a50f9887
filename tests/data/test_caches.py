"""Where decoded pixels are cached: memory within the budget, else a keyed file."""

import numpy as np

from sft_tf.data import caches
from sft_tf.data import sources as sources_lib
from sft_tf.data.examples import Examples


def test_cache_plan_uses_memory_within_budget_else_a_keyed_file(image_folders, tmp_path):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    assert caches.cache_plan(examples, 32, "auto", 1, str(tmp_path), "train") == "memory"
    disk = caches.cache_plan(examples, 512, "auto", 1, str(tmp_path), "train")
    assert disk.startswith(f"{tmp_path}/train-")
    assert caches.cache_plan(examples, 500, "auto", 1, str(tmp_path), "train") != disk
    assert caches.cache_plan(examples, 32, "off", 1, str(tmp_path), "train") == "off"


def test_shuffle_buffer_is_full_in_memory_and_over_file_names_else_within_the_budget():
    files = Examples(("a",), np.zeros(1000, np.int32), paths=np.asarray(["a.png"] * 1000))
    pixels = Examples(("a",), np.zeros(1000, np.int32), pixels=np.zeros((1000, 2, 2, 3), np.uint8))
    assert caches.training_shuffle_buffer(files, 32, "off", 1, 8) == 1000  # names, not pixels
    assert caches.training_shuffle_buffer(pixels, 32, "memory", 1, 8) == 1000
    # 1 MB of 32 x 32 RGB pixels is 341 images; never below one batch.
    assert caches.training_shuffle_buffer(files, 32, "/tmp/cache", 1, 8) == 341
    assert caches.training_shuffle_buffer(files, 512, "/tmp/cache", 1, 8) == 8
    assert caches.resolve_cache(10.0, "auto", 10) == "memory"
    assert caches.resolve_cache(10.1, "auto", 10) == "disk"
    assert caches.resolve_cache(1.0, "off", 10) == "off"
