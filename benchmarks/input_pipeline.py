"""Input-pipeline benchmark: the four ratios of issue 3, measured in one run, offline.

  .venv/bin/python benchmarks/input_pipeline.py [--workdir=/tmp/sft_tf_bench] [--images=5000]

It writes Fashion-MNIST as JPEG class folders (the five target classes of
configs/fashion_mnist.py), pretrains the source backbone once (reused on later runs), and prints:

  1. steady-state training images/s through the real pipeline (JPEG files, decode, cache,
     shuffle, batch, prefetch) / images/s on the same batches held as in-memory tensors;
  2. wall time of the whole two-phase `train` / wall time of the Keras transfer-learning
     guide's recipe (image_dataset_from_directory + two compile/fit calls), same backbone,
     image size, epochs and data, with both test accuracies;
  3. phase-1 time with the frozen-base feature cache / without it;
  4. peak RSS of listing + scanning + two cached epochs over a 5k and a 50k image folder,
     with the in-memory pixel cache, the on-disk one, and none.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sft_tf.commands import (
    pretrain,
    train,
)
from sft_tf.config import validation
from sft_tf.data import examples as examples_lib
from sft_tf.data import pipeline
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from sft_tf.model import backbones, classifier, unfreeze
from sft_tf.model import weights as weights_lib
from sft_tf.training import feature_store, head_cache
from sft_tf.training.layout import BACKBONE_FILE

BATCH = 64
IMAGE_SIZE = 32


def write_jpeg_folder(root: Path, examples: examples_lib.Examples, count: int) -> Path:
    """root/<class>/<i>.jpg for the first `count` examples (skipped when already written)."""
    marker = root / ".complete"
    if marker.is_file() and int(marker.read_text()) == count:
        return root
    for i in range(count):
        name = examples.class_names[examples.labels[i]].replace("/", "-").replace(" ", "_")
        path = root / name / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        # tf.io rather than PIL: the benchmark needs nothing beyond the package's own deps.
        path.write_bytes(tf.io.encode_jpeg(examples.pixels[i], quality=90).numpy())
    marker.write_text(str(count))
    return root


def fashion_folders(workdir: Path, config, images: int, big: int) -> dict[str, Path]:
    classes = examples_lib.parse_classes(config.data.classes)
    pick = examples_lib.select_classes(
        sources_lib.load_examples("fashion_mnist:train"), classes, "classes"
    )
    test = examples_lib.select_classes(
        sources_lib.load_examples("fashion_mnist:test"), classes, "classes"
    )
    rng = np.random.default_rng(0)
    pick = pick.take(np.sort(rng.permutation(len(pick))[:images]))
    every = sources_lib.load_examples("fashion_mnist:train")  # 60k: enough for the 50k RSS folder
    return {
        "train": write_jpeg_folder(workdir / f"train{images}", pick, len(pick)),
        "test": write_jpeg_folder(workdir / "test", test, 2000),
        "rss_small": write_jpeg_folder(workdir / "rss5k", every, 5000),
        "rss_big": write_jpeg_folder(workdir / f"rss{big // 1000}k", every, big),
    }


def timed_fit(model, dataset, epochs: int, steps: int | None = None) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    return time.perf_counter() - start


def phase2_model(backbone_weights: str, num_classes: int) -> keras.Model:
    model = classifier.build_classifier(
        "MobileNetV2", num_classes, IMAGE_SIZE, weights=backbone_weights, alpha=0.35
    )
    unfreeze.unfreeze_top_blocks(classifier.get_base(model), "MobileNetV2", 2)
    model.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy())
    return model


# --- 1. pipeline vs in-memory tensors ---------------------------------------------------------


def ratio_pipeline(folder: Path, weights: str, repeats: int = 5) -> dict:
    """Steady-state img/s through the pipeline and through the same batches as tensors.

    This host's speed drifts by tens of percent from one minute to the next (a shared
    machine: back-to-back timings of the same fit gave ratios of 0.91 and 1.36), so the two
    are timed alternately `repeats` times, 2 epochs each, and each side keeps its best time.
    """
    examples = sources_lib.load_examples(f"folder:{folder}")
    ds = pipeline.build_dataset(examples, IMAGE_SIZE, BATCH, training=True, seed=0, until_epoch=2)
    steps = len(examples) // BATCH
    model = phase2_model(weights, len(examples.class_names))
    timed_fit(model, ds, 1, steps)  # fills the pixel cache and traces the step
    images, labels = zip(*ds.take(steps).as_numpy_iterator())
    tensors = tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(labels))).cache()
    timed_fit(model, tensors, 1)
    pipeline_s, memory_s = [], []
    for _ in range(repeats):
        memory_s.append(timed_fit(model, tensors, 2))
        pipeline_s.append(timed_fit(model, ds, 2, steps))
    seen = 2 * len(images) * BATCH
    return {
        "pipeline_img_s": seen / min(pipeline_s),
        "in_memory_img_s": seen / min(memory_s),
        "ratio": min(memory_s) / min(pipeline_s),
        "ratio_of_medians": float(np.median(memory_s) / np.median(pipeline_s)),
    }


# --- 2. sft-tf train vs the Keras guide's recipe ----------------------------------------------


def keras_guide_recipe(folders: dict, weights: str, epochs1: int, epochs2: int) -> dict:
    """https://keras.io/guides/transfer_learning/: frozen base + head, then the whole base at
    a low learning rate, with BatchNorm kept in inference mode (training=False)."""
    start = time.perf_counter()
    load = dict(image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH, seed=0, verbose=False)
    train_ds = keras.utils.image_dataset_from_directory(folders["train"], **load)
    test_ds = keras.utils.image_dataset_from_directory(folders["test"], shuffle=False, **load)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    num_classes = len(test_ds.class_names)
    base = backbones.build_base("MobileNetV2", IMAGE_SIZE, weights=None, alpha=0.35)
    weights_lib.load_backbone_weights(base, weights, "MobileNetV2", {"alpha": 0.35})
    base.trainable = False
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(train_ds, epochs=epochs1, verbose=0)
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-5), loss, metrics=["accuracy"])
    model.fit(train_ds, epochs=epochs2, verbose=0)
    accuracy = model.evaluate(test_ds, verbose=0)[1]
    return {"seconds": time.perf_counter() - start, "test_accuracy": float(accuracy)}


def ratio_train(folders: dict, config, weights: str, workdir: Path, repeats: int = 3) -> dict:
    """Wall time of `sft-tf train` and of the Keras guide's recipe, alternated `repeats` times
    (this host's speed drifts), each side's best time; accuracies of the last repeat."""
    c = copy.deepcopy(config)
    c.model.weights = weights
    c.data.train = f"folder:{folders['train']}"
    c.data.test = f"folder:{folders['test']}"
    c.data.classes = None
    c.data.examples_per_class = None
    c.data.augment = ""  # the guide's recipe runs without augmentation here too
    c.data.global_batch_size = BATCH
    c.data.cache_dir = str(workdir / "cache")
    c.phase1.epochs, c.phase2.epochs = 5, 5
    c.export.dir = ""
    validation.validate(c, "train")
    ours_s, guide_s = [], []
    for _ in range(repeats):
        # A fresh workdir: an earlier run's finished workdir would make `run` a no-op.
        shutil.rmtree(workdir / "run_train", ignore_errors=True)
        start = time.perf_counter()
        metrics = train.run(c, workdir / "run_train")
        ours_s.append(time.perf_counter() - start)
        keras.backend.clear_session()
        guide = keras_guide_recipe(folders, weights, c.phase1.epochs, c.phase2.epochs)
        guide_s.append(guide["seconds"])
        keras.backend.clear_session()
    ours = {"seconds": min(ours_s), "test_accuracy": metrics["phase2"]["test"]["accuracy"]}
    guide["seconds"] = min(guide_s)
    return {
        "sft_tf": ours,
        "keras_guide": guide,
        "ratio": ours["seconds"] / guide["seconds"],
        "all_seconds": {"sft_tf": ours_s, "keras_guide": guide_s},
    }


# --- 3. phase 1 with and without the feature cache --------------------------------------------


def ratio_feature_cache(folder: Path, weights: str, epochs: int, repeats: int = 3) -> dict:
    # As `sft-tf train` does before phase 1 (its "data" stage, not timed here): the up-front
    # scan decodes every image once and keeps the pixels the pixel cache would hold anyway;
    # both phase-1 variants below read them.
    examples = sources_lib.load_examples(f"folder:{folder}")
    scan = scan_lib.scan_images(examples, keep=(IMAGE_SIZE, "resize"))
    examples = scan_lib.drop_bad(scan_lib.keep_decoded(examples, scan), scan)
    n = len(examples.class_names)
    steps = len(examples) // BATCH

    def frozen():
        return classifier.build_classifier(
            "MobileNetV2", n, IMAGE_SIZE, weights=weights, alpha=0.35
        )

    def without_cache() -> float:
        model = frozen()
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy())
        start = time.perf_counter()
        model.fit(
            pipeline.build_dataset(examples, IMAGE_SIZE, BATCH, True, seed=0, until_epoch=epochs),
            epochs=epochs,
            steps_per_epoch=steps,
            shuffle=False,
            verbose=0,
        )
        return time.perf_counter() - start

    def with_cache() -> float:
        model = frozen()
        start = time.perf_counter()
        batch = feature_store.extraction_batch(IMAGE_SIZE, BATCH)  # as `sft-tf train` extracts
        pooled = head_cache.extract(
            model, pipeline.build_dataset(examples, IMAGE_SIZE, batch, False, cache="off")
        )
        head = head_cache.head_of(model)
        # As train.py compiles it: one call per epoch.
        head.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(),
            steps_per_execution=steps,
        )
        head.fit(
            head_cache.feature_dataset(pooled, examples.labels, BATCH, True, seed=0, epochs=epochs),
            epochs=epochs,
            steps_per_epoch=steps,
            shuffle=False,
            verbose=0,
        )
        return time.perf_counter() - start

    # Alternated, best of `repeats` each: this host's speed drifts from minute to minute.
    timings = {"without": [], "with": []}
    for _ in range(repeats):
        timings["without"].append(without_cache())
        timings["with"].append(with_cache())
        keras.backend.clear_session()
    best = {key: min(values) for key, values in timings.items()}
    return {
        "epochs": epochs,
        "without_s": best["without"],
        "with_s": best["with"],
        "ratio": best["with"] / best["without"],
        "ratio_of_medians": statistics.median(timings["with"])
        / statistics.median(timings["without"]),
        "all_seconds": timings,
    }


def ratio_peak_rss(folders: dict, workdir: Path) -> dict:
    # In benchmarks/peak_rss.py: each measurement is a fresh process.
    import peak_rss

    small_and_big = {key: folders[key] for key in ("rss_small", "rss_big")}
    return peak_rss.measure(small_and_big, workdir, IMAGE_SIZE, BATCH)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/sft_tf_bench")
    parser.add_argument("--images", type=int, default=5000, help="training images (5 classes)")
    parser.add_argument("--big", type=int, default=50000, help="images in the big RSS folder")
    # configs/fashion_mnist.py trains phase 1 for 20 epochs.
    parser.add_argument("--phase1_epochs", type=int, default=20)
    parser.add_argument("--only_rss", action="store_true", help="just the peak-RSS part (4)")
    parser.add_argument("--only", default="", help="run one ratio: 1, 2 or 3")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "configs"))
    import fashion_mnist as demo_config

    config = demo_config.get_config()
    if args.only_rss:
        folders = fashion_folders(workdir, config, args.images, args.big)
        print(json.dumps(ratio_peak_rss(folders, workdir), indent=2))
        return
    config.pretrain.epochs = 2
    t0 = time.perf_counter()
    folders = fashion_folders(workdir, config, args.images, args.big)
    print(f"[setup] JPEG folders ready in {time.perf_counter() - t0:.0f} s", flush=True)
    pretrain.pretrain(config, workdir / "source")
    weights = str(workdir / "source" / BACKBONE_FILE)

    if args.only:
        run = {
            "1": lambda: ratio_pipeline(folders["train"], weights),
            "2": lambda: ratio_train(folders, config, weights, workdir),
            "3": lambda: ratio_feature_cache(folders["train"], weights, args.phase1_epochs),
        }[args.only]
        print(f"[{args.only}]", json.dumps(run()), flush=True)
        return
    results = {}
    results["1_pipeline_vs_in_memory"] = ratio_pipeline(folders["train"], weights)
    print("[1]", json.dumps(results["1_pipeline_vs_in_memory"]), flush=True)
    keras.backend.clear_session()
    results["3_feature_cache"] = ratio_feature_cache(folders["train"], weights, args.phase1_epochs)
    print("[3]", json.dumps(results["3_feature_cache"]), flush=True)
    keras.backend.clear_session()
    results["2_train_vs_keras_guide"] = ratio_train(folders, config, weights, workdir)
    print("[2]", json.dumps(results["2_train_vs_keras_guide"]), flush=True)
    results["4_peak_rss"] = ratio_peak_rss(folders, workdir)
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_summary(results)


def print_summary(results: dict) -> None:
    r1, r2, r3 = (results[k] for k in sorted(results)[:3])
    print("\nInput pipeline benchmark (2-core CPU numbers in docs/benchmarks.md):")
    print(
        f"1. pipeline / in-memory tensors, steady-state img/s: {r1['ratio']:.3f} "
        f"({r1['pipeline_img_s']:.0f} vs {r1['in_memory_img_s']:.0f} img/s, best of 5 each; "
        f"ratio of medians {r1['ratio_of_medians']:.3f}; target >= 0.95)"
    )
    print(
        f"2. sft-tf train / Keras guide recipe, wall time: {r2['ratio']:.3f} "
        f"({r2['sft_tf']['seconds']:.0f} s vs {r2['keras_guide']['seconds']:.0f} s, best of 3 "
        "each; test accuracy "
        f"{r2['sft_tf']['test_accuracy']:.3f} vs {r2['keras_guide']['test_accuracy']:.3f}; "
        "target <= 0.4 at equal or better accuracy)"
    )
    print(
        f"3. phase 1 with / without feature cache ({r3['epochs']} epochs): {r3['ratio']:.3f} "
        f"({r3['with_s']:.1f} s vs {r3['without_s']:.1f} s, best of 3 alternating each; ratio "
        f"of medians {r3['ratio_of_medians']:.3f}; target <= 0.1)"
    )
    print("4. peak RSS (list + scan + 2 epochs):")
    for key, value in results["4_peak_rss"].items():
        print(
            f"   {key:>12} images: {value['peak_rss_mb']:.0f} MB "
            f"(decoded pixels {value['decoded_pixels_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
