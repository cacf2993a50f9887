"""sft-tf: fine-tune a pretrained keras.applications image model and export it for TF Serving.

Usage: sft-tf COMMAND [--flags] [FILES...]

Commands:
  train      fine-tune in two phases (head, then top blocks), evaluate, export
             sft-tf train --config=configs/NAME.py --workdir=DIR [--config.a.b=VALUE ...]
  pretrain   train a backbone from scratch on a source task, for train to start from
             sft-tf pretrain --config=configs/NAME.py --workdir=DIR
  evaluate   test-set metrics of a workdir's model, or of an export
             sft-tf evaluate --workdir=DIR | --model=saved_models/NAME --config=configs/NAME.py
  export     (re)export a finished workdir's model as a new version
             sft-tf export --workdir=DIR
  predict    top-k class names and scores for image files, from an export only
             sft-tf predict --model=saved_models/NAME [--version=N] [--json] IMAGE...
  demo       offline demo: pretrain, fine-tune, from-scratch baseline, export, predict
             sft-tf demo --config=configs/fashion_mnist.py --workdir=runs/demo
  audit      check every data split: per-class counts, bad files, duplicates, leakage;
             writes DIR/audit.json, exit status 1 on an empty class, one class or leakage
             sft-tf audit --config=configs/NAME.py --workdir=DIR

All flags: sft-tf --helpfull. Config fields and their meaning: sft_tf/config_lib.py.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from sft_tf.errors import UserError

COMMANDS = ("train", "pretrain", "evaluate", "export", "predict", "demo", "audit")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, logs, weights, metrics.")
_STRATEGY = flags.DEFINE_enum(
    "strategy",
    None,
    ["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"],
    "Distribution strategy; overrides config.runtime.strategy.",
)
_TPU = flags.DEFINE_string(
    "tpu", None, "TPU name or grpc:// address for --strategy=tpu; overrides config.runtime.tpu."
)
_MODEL = flags.DEFINE_string("model", None, "Export root (saved_models/NAME) or a version folder.")
_VERSION = flags.DEFINE_integer("version", None, "Export version for predict (default: newest).")
_RESTART = flags.DEFINE_bool(
    "restart", False, "train: move an existing run in --workdir aside and start over."
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "train: resume even if the config differs from the saved one."
)
_JSON = flags.DEFINE_bool("json", False, "predict: print JSON instead of a table.")


def _require(value, flag: str, command: str):
    if not value:
        raise UserError(f"`sft-tf {command}` needs --{flag}")
    return value


def _workdir(command: str) -> str:
    """--workdir, checked to be creatable before any work starts."""
    from sft_tf import config_lib

    workdir = _require(_WORKDIR.value, "workdir", command)
    config_lib.check_writable(workdir, "--workdir")
    return workdir


def _config(command: str):
    from sft_tf import config_lib

    config = _require(_CONFIG.value, "config", command)
    if _STRATEGY.value:
        config.runtime.strategy = _STRATEGY.value
    if _TPU.value:
        config.runtime.tpu = _TPU.value
    if config.runtime.strategy == "multi_worker":
        from sft_tf import strategy

        # Before validation, which may build a backbone: collective ops can only be set up
        # before TensorFlow runs its first op. train.run reuses this (cached) strategy.
        strategy.build_strategy("multi_worker", announce=False)
    config_lib.validate(config, command)
    return config


def _print_predictions(results: list[dict], as_json: bool) -> None:
    """Predictions on stdout (a table, or JSON with an "error" field for bad files); one line
    per bad file on stderr in both modes, "sft-tf: FILE: why", after the table."""
    good = [r for r in results if "error" not in r]
    if as_json:
        print(json.dumps(results, indent=2))
    elif good:
        width = max(len(r["file"]) for r in good)
        for r in good:
            ranked = "  ".join(f"{c} {s:.3f}" for c, s in zip(r["classes"], r["scores"]))
            print(f"{r['file']:<{width}}  {ranked}")
    sys.stdout.flush()
    for r in results:
        if "error" in r:
            print(f"sft-tf: {r['file']}: {r['error']}", file=sys.stderr)


def _dispatch(command: str, args: list[str]) -> int:
    # Imported here so `sft-tf --help` and flag errors answer without loading TensorFlow.
    from sft_tf import export, train

    if command == "train":
        train.run(
            _config(command),
            _workdir(command),
            restart=_RESTART.value,
            allow_config_change=_ALLOW_CONFIG_CHANGE.value,
        )
    elif command == "pretrain":
        train.pretrain(_config(command), _workdir(command))
    elif command == "evaluate":
        if _MODEL.value:
            path = export.resolve_export(_MODEL.value, _VERSION.value)
            metrics = train.evaluate_export(path, _config(command))
        else:
            metrics = train.evaluate_workdir(
                _require(_WORKDIR.value, "workdir or --model", command)
            )
        print(json.dumps({k: v for k, v in metrics.items() if k != "confusion_matrix"}, indent=2))
    elif command == "export":
        path = train.export_workdir(_require(_WORKDIR.value, "workdir", command))
        print(f"Exported {path}")
    elif command == "predict":
        if not args:
            raise UserError("`sft-tf predict` needs image files or folders after the flags")
        if _MODEL.value:
            root = _MODEL.value
        else:
            workdir = Path(_require(_WORKDIR.value, "model or --workdir", command))
            metrics_path = workdir / "metrics.json"
            if not metrics_path.is_file():
                raise UserError(f"{metrics_path} not found; pass --model=saved_models/NAME")
            root = json.loads(metrics_path.read_text()).get("export") or ""
            if not root:
                raise UserError(f"{workdir} has no export; pass --model=saved_models/NAME")
        results = export.predict_files(export.resolve_export(root, _VERSION.value), args)
        _print_predictions(results, _JSON.value)
        return 1 if any("error" in r for r in results) else 0
    elif command == "audit":
        return train.audit(_config(command), _workdir(command))
    elif command == "demo":
        from sft_tf import demo

        demo.run(_config("train"), _workdir(command))
    return 0


def main(argv: list[str]) -> int:
    """absl entry point: argv[1] is the command, the rest are positional arguments."""
    if len(argv) < 2 or argv[1] not in COMMANDS:
        given = argv[1] if len(argv) > 1 else "nothing"
        print(
            f"sft-tf: error: expected a command ({', '.join(COMMANDS)}), got {given}; "
            "see sft-tf --help",
            file=sys.stderr,
        )
        return 2
    try:
        return _dispatch(argv[1], argv[2:])
    except UserError as e:
        print(f"sft-tf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sft-tf: {_interrupted(argv[1])}", file=sys.stderr)
        return 130  # the shell's code for a process ended by SIGINT
    except OSError as e:
        # Disk full, permission denied, ...: checkpoints and exports are written by temp file
        # + rename, so what was there before is intact; say which path failed and why.
        where = e.filename or "a file"
        print(f"sft-tf: error: could not write {where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:
        # TensorFlow's file system (checkpoints, SavedModels, gs://) reports the same failures
        # as its own errors, "PATH; Permission denied"; anything else is a bug: re-raised.
        failure = _file_system_failure(e)
        if failure is None:
            raise
        print(f"sft-tf: error: could not write {failure[0]}: {failure[1]}", file=sys.stderr)
        return 1


def _interrupted(command: str) -> str:
    """The one line for Ctrl-C: where the run was and how to go on."""
    from sft_tf import checkpoint

    where = checkpoint.interrupted_at()
    if command == "train" and where:
        return f"interrupted in {where}; rerun the same command to resume"
    if command in ("train", "pretrain", "demo"):
        return "interrupted; rerun the same command to go on"
    return "interrupted"


# What an OS reports when a write fails for lack of room or rights, as TF quotes it.
_WRITE_FAILURES = frozenset(
    os.strerror(code)
    for code in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.ENOTDIR,
        errno.EISDIR,
    )
)


def _file_system_failure(error: Exception) -> tuple[str, str] | None:
    """(path, reason) when `error` is a TensorFlow file-system write failure, else None."""
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return None
    # "{{function_node ...}} PATH; REASON [Op:SaveV2]" from ops, "PATH; REASON" from gfile.
    match = re.fullmatch(r"(?:\{\{.*?\}\}\s*)?(.+); ([^;]+?)(?:\s*\[Op:\w+\])?", error.message)
    if match is None or match.group(2) not in _WRITE_FAILURES:
        return None
    return match.group(1), match.group(2)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes for GPUs with its C++ start-up chatter muted.

    TF 2.21 logs those lines before its log level applies, so TF_CPP_MIN_LOG_LEVEL cannot
    hide them, and they would bury one-line error messages. Set TF_CPP_MIN_LOG_LEVEL=0 to see
    them again. Python errors raised by the import are still shown.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # probes CUDA, which logs when absent
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run() -> None:
    """Console-script entry point (`sft-tf`, `python -m sft_tf`)."""
    # absl's --help exits 1 and appends its own text; asking for help is not an error.
    if len(sys.argv) < 2 or sys.argv[1] in ("--help", "-h", "help", "-help"):
        print(__doc__, end="")
        sys.exit(0 if len(sys.argv) > 1 else 2)
    _import_tensorflow_quietly()
    # absl routes TF's Python logging to stderr at INFO under app.run: keep warnings and up
    # from absl, errors from TF (its retracing notes and SavedModel chatter are not actionable).
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    # absl's usage messages print the __main__ module's docstring: make it this one.
    sys.modules["__main__"].__doc__ = __doc__
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors (exit 2) instead of tracebacks."""
    from sft_tf import config_lib

    spec = _config_file(argv)
    try:
        if spec is not None:  # ml_collections reports a broken file as a traceback
            config_lib.check_config_file(spec)
        return flags.FLAGS(argv)
    except UserError as e:
        _exit_with(str(e))
    except flags.Error as e:
        _exit_with(f"{e}".splitlines()[0])
    except (AttributeError, KeyError, TypeError):
        # ml_collections rejects unknown --config.a.b keys (the config is locked) this way.
        _exit_with(_unknown_config_field(argv) or "bad --config override; see sft-tf --help")
    return []  # not reached


def _config_file(argv: list[str]) -> str | None:
    """The value of --config (before absl parses the flags; the last one wins), if given."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            value = arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def _unknown_config_field(argv: list[str]) -> str | None:
    """The first --config.a.b override that names no field, with the closest real one."""
    from sft_tf import config_lib

    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=")[0].split(".")
        node = config_lib.base_config()
        for i, part in enumerate(path):
            fields = list(node.keys()) if hasattr(node, "keys") else []
            if part in fields:
                node = node[part]
                continue
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f"did you mean config.{'.'.join([*path[:i], close[0]])}?" if close else ""
            choices = f"fields here: {', '.join(fields)}" if fields else "it is not a section"
            return f"config.{'.'.join(path[: i + 1])} is not a config field; {hint or choices}"
    return None


def _exit_with(message: str) -> None:
    print(f"sft-tf: error: {message}", file=sys.stderr)
    sys.exit(2)
