"""Help for the --config flags before and after absl parses them: which file was given, the
closest real field to a mistyped --config.a.b override, and `--config.a.b=None` for the
fields the schema leaves unset."""

from __future__ import annotations

import difflib

from ml_collections.config_flags import config_path  # the path walker the flags use

from sft_tf.config import schema
from sft_tf.errors import UserError


def config_file_arg(argv: list[str]) -> str | None:
    """The value of --config (before absl parses the flags; the last one wins), if given."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            value = arg[len("--config=") :]
        elif arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


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
    parsing (`apply_unsets`). As with any flag, the last override of a field wins.

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


def apply_unsets(config, unset: list[str]) -> None:
    """Sets each field `split_unsets` took out of argv to None (in the parsed `config`)."""
    for path in unset:
        config_path.set_value(path, config, None)
