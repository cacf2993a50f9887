"""`sft-tf COMMAND --help`, and what needs no TensorFlow: required flags, local data paths,
config values, and rerunning a finished `train`, answered in a fraction of a second before
TensorFlow's multi-second import.

Imports nothing heavy: the CLI calls it before TensorFlow is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sft_tf.config import files, schema, values
from sft_tf.data import specs
from sft_tf.distribute import tf_config
from sft_tf.errors import UserError
from sft_tf.lock import WorkdirLock
from sft_tf.serving import layout
from sft_tf.training import state as state_lib

HELP = {"--help", "-h", "help", "-help"}  # the words that ask for help


@dataclasses.dataclass(frozen=True)
class Verb:
    """What `sft-tf VERB --help` shows.

    Attributes:
      summary: one line.
      usage: the command line, required flags first.
      flags: the flags the verb reads.
      fields: the config fields most often set for it, with a few words each.
      example: a complete command.
      required: flags that must be given.
    """

    summary: str
    usage: str
    flags: tuple[str, ...]
    fields: tuple[tuple[str, str], ...] = ()
    example: str = ""
    required: tuple[str, ...] = ()


_DATA = (
    ("data.train", "training images: folder:PATH, csv:PATH[:SPLIT], tfrecord:GLOB, tfds:NAME"),
    ("data.validation", "split:FRACTION of train, or a spec like data.train"),
    ("data.test", "the held-out test images (same spec forms)"),
)
_TRAIN_FIELDS = (
    *_DATA,
    ("model.backbone", "a keras.applications name, e.g. MobileNetV2, EfficientNetB0"),
    ("model.weights", "imagenet (downloads once), a .weights.h5 file, or '' for random"),
    ("model.image_size", "input side in pixels"),
    ("data.global_batch_size", "images per step over all replicas"),
    ("data.augment", "none, flip, or e.g. flip,rotate,zoom,mixup"),
    ("phase1.epochs", "epochs of the head alone on the frozen base"),
    ("phase2.epochs", "epochs with the top blocks open (0: phase 1 only)"),
    ("phase2.unfreeze_blocks", "how many top blocks phase 2 opens (-1: all)"),
    ("export.dir", "where saved_models/NAME/VERSION goes"),
)
_RUN_FLAGS = ("config", "workdir", "strategy", "tpu")

VERBS: dict[str, Verb] = {
    "train": Verb(
        "fine-tune in two phases (head, then top blocks), evaluate, export",
        "sft-tf train --config=configs/NAME.py --workdir=DIR [--config.FIELD=VALUE ...]",
        (*_RUN_FLAGS, "restart", "allow_config_change"),
        _TRAIN_FIELDS,
        "sft-tf train --config=configs/folder.py --workdir=runs/pets "
        "--config.data.train=folder:$HOME/pets/train --config.data.test=folder:$HOME/pets/test",
        ("config", "workdir"),
    ),
    "pretrain": Verb(
        "train a backbone from scratch on a source task, for train to start from",
        "sft-tf pretrain --config=configs/NAME.py --workdir=DIR",
        _RUN_FLAGS,
        (
            ("pretrain.train", "the source task's training images (a spec like data.train)"),
            ("pretrain.test", "its test images"),
            ("pretrain.epochs", "epochs of training from scratch"),
            ("model.backbone", "the architecture to pretrain"),
            ("model.image_size", "input side in pixels"),
        ),
        "sft-tf pretrain --config=configs/fashion_mnist.py --workdir=runs/source",
        ("config", "workdir"),
    ),
    "evaluate": Verb(
        "test-set metrics of a workdir's model, or of an export",
        "sft-tf evaluate --workdir=DIR | --model=saved_models/NAME --config=configs/NAME.py",
        ("workdir", "model", "version", "config"),
        (("data.test", "the test images (with --model)"),),
        "sft-tf evaluate --workdir=runs/pets",
    ),
    "export": Verb(
        "(re)export a workdir's model as a new version (an interrupted run: its newest checkpoint)",
        "sft-tf export --workdir=DIR [--config.export.FIELD=VALUE ...]",
        ("workdir",),
        (
            ("export.tflite", "also a TFLite model, e.g. for a run trained without one"),
            ("export.tflite_quantization", "float16, dynamic_range or int8"),
            ("export.onnx", "also an ONNX model"),
            ("export.dir", "another export root for this version"),
        ),
        "sft-tf export --workdir=runs/pets --config.export.tflite=true "
        "--config.export.tflite_quantization=int8",
        required=("workdir",),
    ),
    "predict": Verb(
        "top-k class names and scores for image files, from an export or a run's newest one",
        "sft-tf predict --model=saved_models/NAME [--version=N] | --workdir=DIR [--json] IMAGE...",
        ("model", "workdir", "version", "json"),
        example="sft-tf predict --model=saved_models/pets photo1.jpg photo2.png",
    ),
    "demo": Verb(
        "offline demo: pretrain, fine-tune, from-scratch baseline, export, predict",
        "sft-tf demo --config=configs/fashion_mnist.py --workdir=DIR",
        ("config", "workdir"),
        (("phase1.epochs", "head epochs"), ("phase2.epochs", "top-block epochs")),
        "sft-tf demo --config=configs/fashion_mnist.py --workdir=runs/demo",
        ("config", "workdir"),
    ),
    "audit": Verb(
        "check every data split: counts, bad files, duplicates and near-duplicates, leakage, "
        "likely label errors, outliers",
        "sft-tf audit --config=configs/NAME.py --workdir=DIR",
        ("config", "workdir"),
        (
            *_DATA,
            ("model.weights", "the base whose features judge label errors and outliers"),
            ("data.on_leakage", "fail, warn or drop: images shared between splits"),
            ("data.exclude", "a file of image paths to leave out (e.g. exclude_suggested.txt)"),
        ),
        "sft-tf audit --config=configs/folder.py --workdir=runs/pets-audit "
        "--config.data.train=folder:$HOME/pets/train",
        ("config", "workdir"),
    ),
    "benchmark": Verb(
        "size, accuracy and batch-1 latency of an export's variants, measured here",
        "sft-tf benchmark --model=saved_models/NAME [--version=N]",
        ("model", "version"),
        example="sft-tf benchmark --model=saved_models/pets",
        required=("model",),
    ),
}


def command_help(command: str, flag_help: Mapping[str, str]) -> str:
    """The text `sft-tf COMMAND --help` prints: its flags, main config fields and an example."""
    verb = VERBS[command]
    lines = [f"sft-tf {command}: {verb.summary}", "", f"Usage: {verb.usage}", "", "Flags:"]
    for name in verb.flags:
        mark = " (required)" if name in verb.required else ""
        lines.append(f"  --{name:<22}{flag_help[name]}{mark}")
    if verb.fields:
        defaults = schema.base_config()
        lines += ["", "Most used config fields (--config.FIELD=VALUE; default in brackets):"]
        width = max(24, *(len(field) + 2 for field, _ in verb.fields))
        for field, meaning in verb.fields:
            section, name = field.split(".")
            lines.append(f"  {field:<{width}}{meaning} [{defaults[section][name]!r}]")
        lines.append("  All fields and their meaning: sft_tf/config/schema.py")
    if verb.example:
        lines += ["", "Example:", f"  {verb.example}"]
    return "\n".join(lines) + "\n"


def preflight(
    command: str, flag: Callable[[str], object], config, args: Sequence[str] = ()
) -> None:
    """The checks that need no TensorFlow: required flags, local data paths that are not there
    (remote ones are checked when read), a workdir that cannot be created, every config value
    out of range (`values.check_values`), and the export or run a reading command (predict,
    evaluate, export, benchmark) is pointed at. `args`: the positional arguments.

    Raises:
      UserError: naming the flag or config field.
    """
    for name in VERBS[command].required:
        if not flag(name):
            raise UserError(f"`sft-tf {command}` needs --{name}")
    _check_what_is_read(command, flag, args)
    strategy = flag("strategy") or (config.runtime.strategy if config is not None else "")
    if strategy == "multi_worker":
        tf_config.check_tf_config()
    if command == "export" and config is not None:  # the run's config with export overrides
        values.check_values(config, command)
    if config is None or command not in ("train", "audit", "pretrain", "demo"):
        return
    fields = ["data.train", "data.validation", "data.test"]
    if command in ("pretrain", "demo"):
        fields += ["pretrain.train", "pretrain.test"]
    for field in fields:
        section, name = field.split(".")
        value = config[section][name]
        if value:
            _check_local_path(specs.parse_spec(value, f"config.{field}"), f"config.{field}", value)
    values.check_values(config, "train" if command == "demo" else command)
    if flag("workdir"):
        values.check_writable(flag("workdir"), "--workdir")


def _check_what_is_read(command: str, flag: Callable[[str], object], args: Sequence[str]) -> None:
    """The same errors the reading commands raise later, without TensorFlow's import first:
    no images to predict, neither --model nor --workdir, a local export with no version, a
    local workdir with no run in it."""
    model, workdir = flag("model"), flag("workdir")
    if command == "predict" and not args:
        raise UserError("`sft-tf predict` needs image files or folders after the flags")
    if command in ("predict", "evaluate") and not (model or workdir):
        raise UserError(f"`sft-tf {command}` needs --workdir or --model")
    local = lambda path: "://" not in str(path)  # noqa: E731  (remote ones: when read)
    if command in ("predict", "evaluate", "benchmark") and model and local(model):
        layout.resolve_export(model, flag("version"))
    elif command == "predict" and workdir and local(workdir):
        layout.run_export(workdir)
    elif command in ("evaluate", "export") and workdir and local(workdir):
        files.load(Path(workdir) / "config.json")  # as the command reads it: a run's?


def finished_train(command: str, flag: Callable[[str], object], config) -> bool:
    """`sft-tf train` on the workdir of a complete run with the same config: says so and
    returns True (the CLI exits 0 without loading TensorFlow). False when there is work to do
    or to check; multi-worker runs (each worker has its own output folder) and remote
    workdirs are left to the run itself, which answers the same.

    Raises:
      UserError: the run is complete but was trained with another config, or another process
        holds the workdir.
    """
    if command != "train" or config is None or flag("restart"):
        return False
    workdir = str(flag("workdir"))
    if (flag("strategy") or config.runtime.strategy) == "multi_worker" or "://" in workdir:
        return False
    lock = WorkdirLock()
    try:
        lock.acquire(workdir, create=False)  # a run working in it now is refused, as later
        finished = state_lib.finished_run(Path(workdir), config)
    finally:
        lock.release()
    if finished is None:
        return False
    state_lib.announce_finished_run(workdir, config)
    return True


def _check_local_path(spec: specs.Spec, field: str, value: str) -> None:
    if "://" in spec.path:
        return
    if spec.kind == "folder" and not os.path.isdir(spec.path):
        raise UserError(f"{field}={value!r}: {spec.path} is not a directory")
    if spec.kind == "csv" and not os.path.isfile(spec.path):
        what = "is a folder; give the CSV file itself" if os.path.isdir(spec.path) else "not found"
        raise UserError(f"{field}={value!r}: {spec.path} {what}")
