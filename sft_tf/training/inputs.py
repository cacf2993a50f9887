"""From `config.data` to what training consumes: the splits (listed, screened, sampled, held
out) and their tf.data pipelines, split over the strategy's replicas and workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np
import tensorflow as tf

from sft_tf.data import audit as audit_lib
from sft_tf.data import augment as augment_lib
from sft_tf.data import balance as balance_lib
from sft_tf.data import caches, csv_source, exclude, pipeline, specs
from sft_tf.data import examples as examples_lib
from sft_tf.data import sources as sources_lib
from sft_tf.distribute import workers
from sft_tf.errors import UserError
from sft_tf.log import say
from sft_tf.training import screening


def load_split(
    spec: str,
    field: str,
    classes: str | None,
    classes_field: str,
    data: ml_collections.ConfigDict | None = None,
    multi_label: bool | None = None,
) -> examples_lib.Examples | None:
    """Lists one split and applies the class subset; None for an empty spec.

    data: `config.data` (TFDS dir, CSV columns, label format); multi_label overrides its
    data.multi_label (source pretraining is single-label).
    """
    if not spec:
        return None
    options = sources_lib.ReadOptions()
    if data is not None:
        options = sources_lib.ReadOptions(
            tfds_data_dir=data.tfds_data_dir,
            multi_label=data.multi_label if multi_label is None else multi_label,
            label_delimiter=data.label_delimiter,
            csv_columns=csv_source.CsvColumns(
                data.csv_image_column, data.csv_label_column, data.csv_split_column
            ),
        )
    examples = sources_lib.load_examples(spec, field=field, options=options)
    return examples_lib.select_classes(
        examples, examples_lib.parse_classes(classes), field=classes_field
    )


def list_target_splits(config: ml_collections.ConfigDict) -> dict[str, examples_lib.Examples]:
    """The listed (not yet decoded) splits of `config.data`, checked to share one class list.

    A split:FRACTION validation set is not made here but by `sample_and_hold_out`, after
    undecodable images are gone.
    """
    d = config.data
    listed = {}
    excluded = exclude.read_list(d.exclude, "config.data.exclude") if d.exclude else set()
    for name in ("train", "validation", "test"):
        if name == "validation" and d.validation.startswith("split:"):
            continue
        split = load_split(d[name], f"config.data.{name}", d.classes, "config.data.classes", d)
        if split is not None:
            listed[name] = split
    if excluded:
        missing = exclude.unmatched(excluded, list(listed.values()))
        if missing:
            say(
                f"Warning: {len(missing)} line(s) of {d.exclude} name no image of the data "
                f"(e.g. {missing[0]}); list images as the audit names them, by path absolute "
                "or relative to the current folder"
            )
        for name, split in listed.items():
            listed[name] = kept = exclude.without(split, excluded)
            if len(kept) < len(split):
                say(f"  {name}: left out {len(split) - len(kept)} image(s) listed in {d.exclude}")
                _check_exclusion_left(split, kept, f"config.data.{name}", d.exclude)
    for name in ("validation", "test"):
        if name in listed:
            examples_lib.check_same_classes(
                listed["train"].class_names, listed[name], f"config.data.{name}"
            )
    return listed


def _check_exclusion_left(
    split: examples_lib.Examples, kept: examples_lib.Examples, field: str, listing: str
) -> None:
    """UserError when data.exclude leaves a split, or a class of it, without images (said
    here: later it would read as undecodable images or a batch too large)."""
    counts = zip(split.class_names, split.counts(), kept.counts())
    emptied = [f"{name!r} ({had})" for name, had, left in counts if had and not left]
    if split.multi_label and not field.endswith(".train"):
        emptied = []  # a multi-label test set may lack a label (the audit's rule)
    if len(kept) and not emptied:
        return
    what = (
        f"all {len(split)} images of {field}"
        if not len(kept)
        else f"every image of class(es) {', '.join(emptied)} of {field}"
    )
    raise UserError(
        f"config.data.exclude={listing!r} leaves out {what} ({split.origin}); remove those "
        "lines from the file, or check that it lists the images you meant"
    )


def sample_and_hold_out(
    config: ml_collections.ConfigDict, splits: dict[str, examples_lib.Examples]
) -> dict[str, examples_lib.Examples]:
    """Few-shot sampling, then the split:FRACTION hold-out, both seeded by config.seed.

    Sampling first: validation comes out of the labels the run really has, and no example is
    in both.
    """
    d = config.data
    splits = dict(splits)
    splits["train"] = examples_lib.sample_per_class(
        splits["train"], d.examples_per_class, config.seed, "config.data.examples_per_class"
    )
    if d.validation.startswith("split:"):
        fraction = float(specs.parse_spec(d.validation, "config.data.validation").split)
        splits["train"], splits["validation"] = examples_lib.holdout(
            splits["train"], fraction, config.seed, "config.data.validation"
        )
    warning = audit_lib.imbalance_warning(splits["train"], audit_lib.IMBALANCE_WARNING)
    if warning:
        evened = d.class_weighting != "none" or d.resample != "none"
        say(warning + ("" if evened else "; config.data.class_weighting=balanced evens it out"))
    return splits


def load_target_splits(config: ml_collections.ConfigDict):
    """The train/validation/test examples of `config.data`: one class list, decodable images."""
    d = config.data
    splits = screening.screen_splits(
        list_target_splits(config),
        d.on_bad_image,
        d.max_image_pixels,
        d.on_leakage,
        keep=screening.decoded_to_keep(config),
        image_size=config.model.image_size,
    )
    splits = sample_and_hold_out(config, splits)
    return splits["train"], splits.get("validation"), splits.get("test")


def make_dataset(
    config,
    examples,
    training: bool,
    augment: bool = True,
    batch_size: int | None = None,
    one_hot: bool = True,
    class_weights: np.ndarray | None = None,
    resample: str = "none",
    **stream,
) -> tf.data.Dataset:
    """The pipeline for `examples` as `config.data` says.

    one_hot: labels as the trainers' loss takes them (False: int labels, for evaluation).
    class_weights: per-class training weights (`training_class_weights`, from the whole training
    split even when `examples` is one worker's shard). resample: `data.resample`. Both only apply
    when `training`. stream: `start`, `until_epoch`, `epoch_batches` and `sources` of
    `pipeline.build_dataset`.
    """
    d = config.data
    cache_dir = caches.cache_root(d.cache_dir)
    ds = pipeline.build_dataset(
        examples,
        image_size=config.model.image_size,
        batch_size=batch_size or d.global_batch_size,
        training=training,
        seed=config.seed,
        augment=augment_lib.parse_augment(d.augment) if (training and augment) else (),
        resize_method=d.resize_method,
        cache=caches.cache_plan(
            examples,
            config.model.image_size,
            d.cache,
            d.cache_memory_mb,
            cache_dir,
            f"{d.resize_method}-{'train' if training else 'eval'}",
        ),
        memory_budget_mb=d.cache_memory_mb,
        num_classes=len(examples.class_names) if one_hot else 0,
        class_weights=class_weights,
        resample=resample,
        **stream,
    )
    return ds


def training_class_weights(config, train: examples_lib.Examples) -> np.ndarray | None:
    """`data.class_weighting` for the training split (None: unweighted): per-class weights of
    whole examples, or for multi-label data per-label weights of positive targets (the loss's,
    see `recipe.compile_phase`)."""
    return balance_lib.class_weights(
        config.data.class_weighting,
        train.class_names,
        train.counts(),
        field="config.data.class_weighting",
        examples=len(train) if train.multi_label else None,
    )


def sample_weights(config, train: examples_lib.Examples) -> np.ndarray | None:
    """The per-class weights the input pipeline gives each example (none for multi-label
    data: its weights are the loss's)."""
    return None if train.multi_label else training_class_weights(config, train)


def train_input(
    config, strategy, examples, balance: bool = True, sources: dict | None = None
) -> tuple[Callable, int]:
    """Training batches split over the strategy's replicas, and the steps per epoch.

    Returns a function of ((epoch, step), until_epoch) giving the batches from that step of
    the run until that epoch (one stream per fit: a resumed run starts mid-way, see
    `pipeline.epoch_stream`), and the steps per epoch to give fit as steps_per_epoch. The streams
    share one decode and cache.

    One worker (one device, Mirrored, a single-host TPU): Keras splits each global batch over
    the replicas, so a 2-replica run sees exactly the batches of a one-device run. Several
    workers: files and records get one input pipeline per worker that reads only its own
    shard; in-memory pixels have no files to split, so every worker builds the same pipeline
    and tf.distribute keeps each worker's part of every global batch (auto-shard by data).
    balance: apply data.class_weighting and data.resample (the target task's; not for source
    training). sources: where the decoded, cached examples are kept (`pipeline.build_dataset`),
    for others to read (`decoded_pixels`).
    """
    global_batch = config.data.global_batch_size
    listed_weights = training_class_weights(config, examples) if balance else None
    weights = sample_weights(config, examples) if balance else None
    resample = config.data.resample if balance else "none"
    if listed_weights is not None:
        what = "Positive-label weights" if examples.multi_label else "Class weights"
        listed = ", ".join(f"{n} {w:.3g}" for n, w in zip(examples.class_names, listed_weights))
        say(f"{what} ({config.data.class_weighting}): {listed}")
    if resample != "none":
        say(f"Training draws the classes equally often (data.resample={resample})")
    options = {"class_weights": weights, "resample": resample}
    if examples.pixels is None and workers.input_pipelines(strategy) > 1:
        steps = workers.file_shard_steps(strategy, len(examples), global_batch)

        def by_file(start: tuple[int, int], until: int) -> tf.distribute.DistributedDataset:
            return workers.distribute_by_file(
                strategy,
                lambda indices, batch, epoch_batches, shard_start: make_dataset(
                    config,
                    examples.take(indices),
                    training=True,
                    batch_size=batch,
                    epoch_batches=epoch_batches,
                    start=shard_start,
                    until_epoch=until,
                    **options,
                ),
                len(examples),
                global_batch,
                log=say,
                start=start,
            )

        return by_file, steps

    sources = {} if sources is None else sources

    def by_data(start: tuple[int, int], until: int) -> tf.data.Dataset:
        ds = make_dataset(
            config,
            examples,
            training=True,
            start=start,
            until_epoch=until,
            sources=sources,
            **options,
        )
        return workers.shard_by_data(ds)

    return by_data, len(examples) // global_batch


def describe_splits(title: str, **splits: examples_lib.Examples | None) -> None:
    """Prints `title`, then a line for each split given (None: not in this run)."""
    say(title)
    for name, split in splits.items():
        if split is not None:
            say(describe_split(name, split))


def describe_split(name: str, examples: examples_lib.Examples) -> str:
    counts = examples.counts()
    kind, each = (
        ("labels", "positives per label") if examples.multi_label else ("classes", "per class")
    )
    return (
        f"  {name:<10} {len(examples):>6} images, {len(examples.class_names)} {kind} "
        f"({counts.min()}-{counts.max()} {each}) from {examples.origin}"
    )


def check_batch_fits(examples: examples_lib.Examples, batch_size: int, field: str) -> None:
    """Training needs one whole batch: say so before anything is written."""
    if not len(examples):  # the steps before say what emptied it; this is the last guard
        raise UserError(
            f"{field} has no images left after exclusion, screening, sampling and hold-out; "
            "the lines above say what each step removed"
        )
    if len(examples) < batch_size:
        raise UserError(
            f"config.data.global_batch_size={batch_size} is larger than {field} "
            f"({len(examples)} images after sampling and hold-out); lower it to <= "
            f"{len(examples)} or add images"
        )


@dataclasses.dataclass
class Pipelines:
    """A run's tf.data pipelines.

    Attributes:
      train_input: ((epoch, step), until_epoch) -> the training batches from there on
        (`train_input`); steps: training steps per epoch.
      val_ds, test_ds: the evaluation pipelines (None without that split). One test pipeline
        serves every evaluation of a run, so its pixel cache is filled once.
      sources: the training stream's decoded examples (`decoded_pixels`).
    """

    train_input: Callable
    steps: int
    val_ds: tf.data.Dataset | None
    test_ds: tf.data.Dataset | None
    sources: dict = dataclasses.field(default_factory=dict)

    def decoded_pixels(self, examples: examples_lib.Examples) -> tf.data.Dataset | None:
        """The training stream's decoded, cached (image, label) examples of `examples`, in
        their order (None when it has none: several workers, class-balanced streams)."""
        for kept, dataset in self.sources.values():
            if kept is examples:
                return dataset
        return None


def build_pipelines(config, strategy, train, validation, test) -> Pipelines:
    """The training stream and the evaluation pipelines of a run's splits."""
    sources: dict = {}
    stream, steps = train_input(config, strategy, train, sources=sources)
    return Pipelines(
        train_input=stream,
        steps=steps,
        sources=sources,
        val_ds=make_dataset(config, validation, training=False) if validation else None,
        test_ds=make_dataset(config, test, training=False, one_hot=False) if test else None,
    )
