"""Configs as files: checking a --config file, config.json written and read back, digests."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

from sft_tf.config.schema import base_config
from sft_tf.errors import UserError
from sft_tf.files import write_text_atomic
from sft_tf.log import say


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Returns the config as plain JSON-able dicts (placeholders left unset become None)."""
    return json.loads(config.to_json_best_effort())


def save(config: ml_collections.ConfigDict, path: str | Path) -> None:
    """Writes the resolved config as JSON (temp file + rename, so it is never half-written)."""
    write_text_atomic(path, json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def _merge(
    target: ml_collections.ConfigDict, values: Mapping[str, Any], prefix: str, unknown: list
) -> None:
    for key, value in values.items():
        if key not in target:
            unknown.append(f"{prefix}{key}")
        elif isinstance(value, Mapping):
            _merge(target[key], value, f"{prefix}{key}.", unknown)
        else:
            target[key] = value


def load(path: str | Path) -> ml_collections.ConfigDict:
    """Reads a config.json written by `save` back onto the schema (so new fields get defaults)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; is this a workdir written by `sft-tf train`?")
    config, unknown = base_config(), []
    _merge(config, json.loads(path.read_text()), "config.", unknown)
    if unknown:
        # Versions before 2026-12-07 did not check config files, so a typo such as
        # c.phase2.epoch reached config.json while the run trained with the default.
        say(
            f"{path}: ignoring {', '.join(unknown)}: not fields of this sft_tf version (earlier "
            "versions accepted typos in config files and trained with the defaults)"
        )
    config.lock()
    return config


def check_config_file(spec: str) -> None:
    """Loads a --config file the way ml_collections will; one-line UserError when it cannot.

    spec: the flag's value, `PATH` or `PATH:ARGUMENT` (passed to get_config).

    Raises:
      UserError: the file is missing, does not compile, raises, has no get_config(), or
        get_config() does not return a ConfigDict. The message names the file and the line.
    """
    path, _, argument = spec.partition(":")
    field = f"--config={spec}"
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".py") and n[0] not in "._")
        listed = f": {', '.join(names)}" if names else " (it has no .py files)"
        raise UserError(f"{field}: {path} is a folder; give one of its config files{listed}")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        close = difflib.get_close_matches(os.path.basename(path), names, n=1)
        hint = f"did you mean {os.path.join(os.path.dirname(path), close[0])}?" if close else ""
        fix = hint or f"give the path of a config file or a packaged name ({packaged_names()})"
        raise UserError(f"{field}: no such file {path}; {fix}")
    try:
        code = compile(Path(path).read_bytes(), path, "exec")
    except SyntaxError as e:
        raise UserError(
            f"{field}: syntax error in {path} line {e.lineno}: {e.msg}; fix the file"
        ) from None
    namespace: dict[str, Any] = {"__file__": path, "__name__": "sft_tf_config_check"}
    try:
        exec(code, namespace)
        get_config = namespace.get("get_config")
        if not callable(get_config):
            raise UserError(
                f"{field}: {path} defines no get_config(); a config file's get_config() returns "
                "config_lib.base_config() with changes (see configs/tiny.py)"
            )
        result = get_config(argument) if argument else get_config()
    except UserError:
        raise
    except Exception as e:
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        where = f" line {lines[-1]}" if lines else ""
        raise UserError(
            f"{field}: {path}{where} raised {type(e).__name__}: {e}; fix the file"
        ) from None
    if not isinstance(result, ml_collections.ConfigDict):
        raise UserError(
            f"{field}: get_config() in {path} returned {type(result).__name__}, not a "
            "ConfigDict; end it with `return config`"
        )
    unknown = unknown_fields(result, base_config())
    if unknown:
        raise UserError(f"{field}: {path} sets {unknown}; fix the file")


def unknown_fields(
    config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict, prefix: str = "config."
) -> str | None:
    """The first field of `config` the schema does not have, with the closest real name.

    A config file starts from the unlocked `base_config()`, so `c.phase2.epoch = 7` adds a
    field nobody reads instead of failing: the run would train with the default and record
    the stray key in config.json. Checking the result against a fresh schema catches it
    whatever line of the file set it.
    """
    for key in config:
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema.keys()), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            return f"{prefix}{key}, which is not a config field{hint}"
        value, default = config[key], schema[key]
        if isinstance(value, ml_collections.ConfigDict) and isinstance(
            default, ml_collections.ConfigDict
        ):
            found = unknown_fields(value, default, f"{prefix}{key}.")
            if found:
                return found
    return None


# Configs shipped inside the package, so `--config=tiny` works from any folder; the repo's
# top-level configs/ is a link to this folder, so `--config=configs/tiny.py` keeps working.
PACKAGED = Path(__file__).resolve().parent.parent / "configs"


def packaged_names() -> str:
    """The packaged config names, comma separated (for messages)."""
    return ", ".join(sorted(p.stem for p in PACKAGED.glob("[!_]*.py")))


def resolve_config_spec(spec: str) -> str:
    """`--config`'s value with a packaged config's name (`tiny`, `tiny.py`) or a
    `configs/NAME.py` path given outside the repo turned into that file's path; anything that
    names an existing file or folder, or no packaged config, is returned unchanged. `~` is
    expanded. The `:ARGUMENT` tail (passed to get_config) is kept."""
    path, colon, argument = spec.partition(":")
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        name = Path(path).name if Path(path).parent in (Path("."), Path("configs")) else ""
        packaged = PACKAGED / (name if name.endswith(".py") else f"{name}.py")
        if name and packaged.is_file():
            path = str(packaged)
    return f"{path}{colon}{argument}"


def digest(*parts: ml_collections.ConfigDict | int | str) -> str:
    """A short hash of config sections, to tell whether an earlier result still applies."""
    text = json.dumps(
        [to_dict(p) if isinstance(p, ml_collections.ConfigDict) else p for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
