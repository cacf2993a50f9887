"""The `sft-tf` entry point: parses flags, validates, dispatches, maps errors to exit codes.
The usage text is `sft_tf.commands`' docstring; each verb lives in its module there."""

from __future__ import annotations

import importlib
import sys

from absl import app, flags
from ml_collections import config_flags

from sft_tf import commands, startup
from sft_tf.commands import usage
from sft_tf.config import files
from sft_tf.config import flags as config_help
from sft_tf.errors import UserError, file_system_failure, stdout_closed

USAGE = commands.__doc__  # the usage text lives beside the commands it describes
COMMANDS = tuple(usage.VERBS)
STRATEGIES = ["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"]

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, logs, weights, metrics.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, STRATEGIES, "Distribution strategy; overrides config.runtime.strategy."
)
_TPU = flags.DEFINE_string(
    "tpu", None, "TPU name or grpc:// address for --strategy=tpu; overrides config.runtime.tpu."
)
_MODEL = flags.DEFINE_string("model", None, "Export root (saved_models/NAME) or a version folder.")
_VERSION = flags.DEFINE_integer("version", None, "Export version (default: the newest).")
_RESTART = flags.DEFINE_bool("restart", False, "train: move an earlier run aside, start over.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "train: resume even if the config changed."
)
_JSON = flags.DEFINE_bool("json", False, "predict: print JSON instead of a table.")


def _require(value, flag: str, command: str):
    if not value:
        raise UserError(f"`sft-tf {command}` needs --{flag}")
    return value


def _config(command: str):
    """--config with --strategy/--tpu applied, validated for `command`."""
    from sft_tf.config import validation
    from sft_tf.distribute import strategy

    config = _require(_CONFIG.value, "config", command)
    config.runtime.strategy = _STRATEGY.value or config.runtime.strategy
    config.runtime.tpu = _TPU.value or config.runtime.tpu
    if config.runtime.strategy == "multi_worker":
        # Before validation builds a backbone: collectives are set up before TF's first op.
        strategy.build_strategy("multi_worker", announce=False)
    validation.validate(config, command)
    return config


def _dispatch(command: str, args: list[str]) -> int:
    # usage.preflight required --workdir where needed, checked train/pretrain/audit/demo's.
    workdir, model, version = _WORKDIR.value, _MODEL.value, _VERSION.value
    verbs = {
        "train": lambda m: m.run(
            _config(command), workdir, _RESTART.value, _ALLOW_CONFIG_CHANGE.value
        ),
        "pretrain": lambda m: m.pretrain(_config(command), workdir),
        "evaluate": lambda m: m.main(workdir, model, version, lambda: _config(command)),
        "export": lambda m: m.export_workdir(workdir, _CONFIG.value),
        "predict": lambda m: m.main(args, model, workdir, version, _JSON.value),
        "audit": lambda m: m.audit(_config(command), workdir),
        "demo": lambda m: m.run(_config(command), workdir),
        "benchmark": lambda m: m.main(model, version),
    }
    # Only the verb's own module is imported, after the checks that need no TensorFlow.
    status = verbs[command](importlib.import_module(f"sft_tf.commands.{command}"))
    return status if isinstance(status, int) else 0


def main(argv: list[str]) -> int:
    """absl entry point: argv[1] is the command, the rest are positional arguments."""
    if len(argv) < 2 or argv[1] not in COMMANDS:
        given = argv[1] if len(argv) > 1 else "nothing"
        return _error(f"expected a command ({', '.join(COMMANDS)}), got {given}; see sft-tf --help")
    try:
        flag = lambda name: flags.FLAGS[name].value  # noqa: E731
        usage.preflight(argv[1], flag, _CONFIG.value, argv[2:])
        if usage.finished_train(argv[1], flag, _CONFIG.value):
            return 0
        startup.import_tensorflow_quietly()  # after the checks that need no TensorFlow
        return _dispatch(argv[1], argv[2:])
    except UserError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        from sft_tf.training.callbacks import interrupted_line

        print(f"sft-tf: {interrupted_line(argv[1])}", file=sys.stderr)
        return 130  # the shell's code for a process ended by SIGINT
    except BrokenPipeError:  # stdout piped into `head` and the like, which stopped reading
        return stdout_closed()
    except OSError as e:  # disk full, permission denied: files are written by temp + rename
        return _error(f"could not write {e.filename or 'a file'}: {e.strerror or e}", 1)
    except Exception as e:
        failure = file_system_failure(e)
        if failure is None:
            raise  # a bug: the traceback is what a report needs
        return _error(f"could not write {failure[0]}: {failure[1]}", 1)


def _error(message: str, status: int = 2) -> int:
    print(f"sft-tf: error: {message}", file=sys.stderr)
    return status


def run() -> None:
    """Console-script entry point (`sft-tf`, `python -m sft_tf`)."""
    # absl's --help exits 1 and appends its own text; asking for help is not an error.
    if len(sys.argv) < 2 or sys.argv[1] in usage.HELP:
        print(USAGE, end="")
        sys.exit(0 if len(sys.argv) > 1 else 2)
    if sys.argv[1] in COMMANDS and usage.HELP.intersection(sys.argv[2:]):
        flag_help = {name: flags.FLAGS[name].help for name in flags.FLAGS}
        sys.exit(print(usage.command_help(sys.argv[1], flag_help), end=""))  # exit status 0
    # absl's usage messages print the __main__ module's docstring: make it this one.
    sys.modules["__main__"].__doc__ = USAGE
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors (exit 2) instead of tracebacks."""
    try:
        argv = config_help.export_overrides(config_help.prepare_argv(argv))  # ~, --config=NAME
        spec = config_help.config_file_arg(argv)
        if spec is not None:  # ml_collections reports a broken file as a traceback
            files.check_config_file(spec)
        argv, unset = config_help.split_unsets(argv)  # --config.a.b=None
        rest = flags.FLAGS(argv)
        if _CONFIG.value is not None:  # `=None` overrides applied, `~` in path fields expanded
            config_help.finish_config(_CONFIG.value, unset)
        return rest
    except UserError as e:
        message = str(e)
    except flags.Error as e:
        message = f"{e}".splitlines()[0]
    except (AttributeError, KeyError, TypeError):
        # ml_collections rejects unknown --config.a.b keys (the config is locked) this way.
        message = config_help.unknown_config_field(argv) or "bad --config override"
    sys.exit(_error(message))
