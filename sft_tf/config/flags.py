"""Help for the --config flags before and after absl parses them: which file was given, the
closest real field to a mistyped --config.a.b override, and `--config.a.b=None` for the
fields the schema leaves unset."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ml_collections.config_flags import config_path  # the path walker the flags use

from sft_tf.config import files, schema
from sft_tf.errors import UserError
from sft_tf.training.state import EXPORT_FIELDS

RUN_CONFIG = Path(__file__).with_name("run_config.py")  # a run's config.json as a --config file


# Flags and config fields that hold a local path. The shell expands `~` only at the start of
# a word, so `--workdir=~/runs/t` reaches us as is; taken literally it would create a folder
# named `~` in the current one. Data specs expand it themselves (`data.specs`).
PATH_FLAGS = ("workdir", "model", "config")
PATH_FIELDS = (
    "model.weights",
    "data.tfds_data_dir",
    "data.exclude",
    "data.cache_dir",
    "export.dir",
)


def prepare_argv(argv: list[str]) -> list[str]:
    """argv as the flag parser should see it: `~` expanded in the path flags, and --config's
    packaged names (`--config=tiny`) resolved to their files.

    Raises:
      UserError: --config given more than once (the flags library would report its own
        internals: the second file's overrides defined twice).
    """
    configs = [a for a in argv if a.startswith("--config=") or a == "--config"]
    if len(configs) > 1:
        raise UserError(
            f"--config is given {len(configs)} times; give one config file and change its "
            "fields with --config.FIELD=VALUE"
        )
    out = list(argv)
    for i, arg in enumerate(out):
        name, eq, value = arg[2:].partition("=")
        if arg.startswith("--") and eq and name in PATH_FLAGS:
            value = files.resolve_config_spec(value) if name == "config" else _home(value)
            out[i] = f"--{name}={value}"
        elif arg.startswith("--") and not eq and name in PATH_FLAGS and i + 1 < len(out):
            nxt = out[i + 1]
            out[i + 1] = files.resolve_config_spec(nxt) if name == "config" else _home(nxt)
    return out


def _home(value: str) -> str:
    return os.path.expanduser(value) if value.startswith("~") else value


def expand_paths(config) -> None:
    """Expands a leading `~` in the config's path fields (set by a file or an override)."""
    for path in PATH_FIELDS:
        value = config_path.get_value(path, config)
        if value and value.startswith("~"):
            config_path.set_value(path, config, os.path.expanduser(value))


def config_file_arg(argv: list[str]) -> str | None:
    """The value of --config (before absl parses the flags; the last one wins), if given."""
    return _flag_arg(argv, "config")


def _flag_arg(argv: list[str], name: str) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg[len(f"--{name}=") :]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def export_overrides(argv: list[str]) -> list[str]:
    """`sft-tf export --workdir=DIR --config.export.FIELD=VALUE ...`: export settings for the
    new version that differ from the run's (a TFLite or ONNX file it was trained without,
    another export.dir or config.name). Returns argv with `--config=run_config.py:DIR` put
    before the overrides, so they are parsed against DIR/config.json; argv itself when the
    command is not `export` or has no overrides. DIR/config.json is not changed.

    Raises:
      UserError: a --config file given to export, an override of a field that decides what
        was trained (or export.calibrate, fitted when training ends), a mistyped field, or
        no --workdir.
    """
    if len(argv) < 2 or argv[1] != "export":
        return argv
    if config_file_arg(argv) is not None:
        raise UserError(
            "`sft-tf export` reads the run's config from --workdir (DIR/config.json); drop "
            "--config and set what differs with --config.export.FIELD=VALUE"
        )
    fields = [a[len("--config.") :].split("=")[0] for a in argv if a.startswith("--config.")]
    if not fields:
        return argv
    unknown = unknown_config_field(argv)
    if unknown:
        raise UserError(unknown)
    for field in fields:
        if field == "export.calibrate":
            raise UserError(
                "config.export.calibrate cannot change at export: the temperature is fitted on "
                "validation data when training ends; `sft-tf train --restart` with it trains again"
            )
        if not field.startswith(EXPORT_FIELDS):
            raise UserError(
                f"config.{field} cannot change at export: it is part of what the run trained; "
                "`sft-tf export` takes config.name and config.export.* overrides, and "
                "`sft-tf train --restart` trains again with other values"
            )
    workdir = _flag_arg(argv, "workdir")
    if not workdir:
        raise UserError("`sft-tf export` needs --workdir")
    # No run in DIR: loading this --config file (files.check_config_file) says so.
    return [*argv[:2], f"--config={RUN_CONFIG}:{workdir}", *argv[2:]]


def unknown_config_field(argv: list[str]) -> str | None:
    """The first --config.a.b override that names no field, with the closest real one."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=")[0].split(".")
        node = schema.base_config()
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


def split_unsets(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv without its `--config.a.b=None` overrides of optional fields, and those fields.

    The optional fields are the ones the schema leaves unset (None): model.alpha,
    data.examples_per_class, data.classes, the clipnorms, runtime.steps_per_execution... A
    config file may set them; `=None` on the command line unsets them again. ml_collections
    parses an override by the field's type, so it would read "None" as a broken number (or,
    for a text field, as the text "None"): the CLI sets these fields to None itself after
    parsing (`finish_config`). As with any flag, the last override of a field wins.

    Raises:
      UserError: `=None` as the last override of a field that must have a value.
    """
    overrides = [
        (i, *arg[len("--config.") :].split("=", 1))
        for i, arg in enumerate(argv)
        if arg.startswith("--config.") and "=" in arg
    ]
    defaults = schema.base_config()
    optional = {path for _, path, _ in overrides if _default(defaults, path) is None}
    last = {path: value for _, path, value in overrides}
    unset = [path for path, value in last.items() if value.lower() == "none" and path in optional]
    for path, value in last.items():
        if value.lower() == "none" and _default(defaults, path) not in (None, _NO_FIELD):
            raise UserError(
                f"config.{path} cannot be unset (None): it needs a value "
                "(sft_tf/config/schema.py lists each field and its default)"
            )
    # The flag parser sees no None (it cannot read one) and nothing of a field unset at the end;
    # a mistyped field stays for it to name the closest one.
    dropped = {
        i
        for i, path, value in overrides
        if path in unset or (value.lower() == "none" and path in optional)
    }
    return [arg for i, arg in enumerate(argv) if i not in dropped], unset


_NO_FIELD = object()


def _default(defaults, path: str):
    """The schema's default for config.<path>, or _NO_FIELD."""
    try:
        return config_path.get_value(path, defaults)
    except (KeyError, AttributeError, IndexError):
        return _NO_FIELD


def finish_config(config, unset: list[str]) -> None:
    """After parsing: sets each field `split_unsets` took out of argv to None, and expands a
    leading `~` in the path fields (whether a config file or an override set them)."""
    for path in unset:
        config_path.set_value(path, config, None)
    expand_paths(config)
