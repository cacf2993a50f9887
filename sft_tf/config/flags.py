"""Help for the --config flags before and after absl parses them: which file was given, and
the closest real field to a mistyped --config.a.b override."""

from __future__ import annotations

import difflib

from sft_tf.config import schema


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
