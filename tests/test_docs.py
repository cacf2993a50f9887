"""The docs say only what the code has: every `sft-tf` command shown parses, every file and
symbol cited exists, the generated reference pages list every config field and flag, and
README.md stays a front page.

Fast and without TensorFlow of its own: the CLI's flags come from importing `sft_tf.cli`
(absl and ml_collections), symbols from reading the package's source with `ast`.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sft_tf"
README = ROOT / "README.md"
README_MAX_LINES = 150
# The pages on disk; CHANGELOG.md is history and may name what is gone.
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@functools.cache
def _reference():
    """docs/hooks/reference.py, the mkdocs hook that generates the reference pages."""
    path = ROOT / "docs" / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as mkdocs loads a hook (dataclasses need it)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _documents() -> dict[str, str]:
    """{name: markdown} of every page: those on disk and the generated reference."""
    documents = {_relative(path): path.read_text() for path in PAGES}
    for uri, page in _reference().PAGES.items():
        documents[f"docs/{uri} (generated)"] = page()
    return documents


# --- Code in Markdown --------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
_SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")


def _code(text: str) -> list[tuple[int, str, bool]]:
    """(line, code, is a fenced block) for every fenced block and inline code span."""
    pieces = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start(1)) + 1
        pieces.append((line, match.group(1), True))
    prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in _SPAN.finditer(prose):
        line = prose.count("\n", 0, match.start()) + 1
        pieces.append((line, match.group(1).replace("\n", " "), False))
    return pieces


# --- (a) Every command line parses ---------------------------------------------------------------

# The program's name followed by a space or the end: "sft-tf: error ..." is a message.
_COMMAND = re.compile(r"(?:(?<![\w/.-])|\.venv/bin/)(?:sft-tf|python -m sft_tf)(?=\s|$)")
_HELP_FLAGS = {"help", "helpfull", "helpshort", "helpxml", "h"}  # absl's, defined by app.run
_SHELL_OPERATOR = re.compile(r"\s(?:\||;|&&|\|\||>|2>)\s")


def _placeholder(word: str) -> bool:
    """DIR, NAME, FIELD, N, IMAGE...: an upper-case word stands for what the reader fills in."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\.\.)?", word))


def _command_lines(code: str, block: bool) -> list[list[str]]:
    """The argument lists after each `sft-tf` in `code` (continued lines joined)."""
    code = code.replace("\\\n", " ")
    lines = code.splitlines() if block else [code]
    commands = []
    for line in lines:
        starts = list(_COMMAND.finditer(line))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(line)
            rest = _SHELL_OPERATOR.split(line[match.end() : end])[0]
            try:
                tokens = shlex.split(rest, comments=True)
            except ValueError:  # an unbalanced quote in prose: the words as they are
                tokens = rest.split()
            tokens = [t.strip("[]").rstrip(".,;)") for t in tokens]
            commands.append([t for t in tokens if t and t != "..."])
    return commands


def _all_commands() -> list[tuple[str, list[str], bool]]:
    found = []
    for name, text in _documents().items():
        for line, code, block in _code(text):
            for tokens in _command_lines(code, block):
                found.append((f"{name}:{line}: sft-tf {' '.join(tokens)}", tokens, block))
    return found


COMMANDS = _all_commands()


def _config_field_problem(verb: str, override: str) -> str | None:
    """What is wrong with `--config.PATH[=VALUE]`, if anything."""
    from sft_tf.config import flags as config_flags
    from sft_tf.errors import UserError
    from sft_tf.training.state import EXPORT_FIELDS

    path, _, value = override[len("--config.") :].partition("=")
    parts = path.split(".")
    if all(re.fullmatch(r"[a-z]", part) for part in parts):  # --config.a.b=VALUE
        return None
    known = []
    for part in parts:
        if _placeholder(part) or part == "*":
            break
        known.append(part)
    if not known:
        return None
    problem = config_flags.unknown_config_field([f"--config.{'.'.join(known)}=x"])
    if problem:
        return problem
    if verb == "export" and not f"{'.'.join(known)}.".startswith(EXPORT_FIELDS):
        return f"`sft-tf export` takes config.name and config.export.* only, not {path}"
    if len(known) == len(parts) and value.lower() == "none":
        try:
            config_flags.split_unsets([override])
        except UserError as e:
            return str(e)
    return None


def _config_file_problem(value: str) -> str | None:
    """--config=PATH[:ARG]: a file relative to the repository's root, or a packaged name."""
    from sft_tf.config import files

    path = value.partition(":")[0]
    if any(_placeholder(part) for part in re.split(r"[/.]", path)):
        return None  # configs/NAME.py
    if (ROOT / path).is_file():
        return None
    resolved = Path(files.resolve_config_spec(path))  # --config=tiny: sft_tf/configs/tiny.py
    if resolved.is_absolute() and resolved.is_file():
        return None
    return f"--config={value}: {path} does not exist"


def _flag_problem(token: str) -> str | None:
    from absl import flags

    import sft_tf.cli  # noqa: F401  (defines the flags)

    name, has_value, value = token.lstrip("-").partition("=")
    if name in _HELP_FLAGS and not has_value:
        return None
    if name not in flags.FLAGS:
        negated = name.removeprefix("no")
        if negated in flags.FLAGS and flags.FLAGS[negated].boolean and not has_value:
            return None
        return f"--{name} is not a flag of sft-tf"
    if name == "config":
        return _config_file_problem(value) if has_value else None
    if has_value and not _placeholder(value) and "$" not in value:
        try:
            copy.deepcopy(flags.FLAGS[name]).parse(value)
        except (flags.Error, ValueError) as e:
            return f"--{name}={value}: {e}"
    return None


@pytest.mark.parametrize(("where", "tokens", "block"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_shown_parses(where, tokens, block):
    """The verb exists, every flag is one of the CLI's, every --config.FIELD is a schema field,
    every --config file exists. A command in a code block is a whole command line: it also has
    the verb's required flags."""
    from sft_tf.commands import usage

    if not tokens:
        return  # the program's name in prose
    verb = None if tokens[0].startswith("-") else tokens[0]
    if verb is not None and (_placeholder(verb) or verb in usage.HELP or verb.endswith(":")):
        return  # sft-tf COMMAND --help, or a title: "sft-tf train: fine-tune ..."
    assert verb is None or verb in usage.VERBS, f"{verb!r} is not an sft-tf command"
    problems = []
    for token in tokens[1:] if verb else tokens:
        if token.startswith("--config."):
            problems.append(_config_field_problem(verb, token))
        elif token.startswith("-"):
            problems.append(_flag_problem(token))
    if block and verb:
        given = {t.lstrip("-").partition("=")[0] for t in tokens if t.startswith("-")}
        missing = [f"--{flag}" for flag in usage.VERBS[verb].required if flag not in given]
        problems.append(f"missing {', '.join(missing)}" if missing else None)
    assert not [p for p in problems if p]


def test_commands_are_found():
    """The scan sees the commands it should (README's own-folder command, a continued line)."""
    readme = [tokens for where, tokens, _ in COMMANDS if where.startswith("README.md:")]
    assert ["train", "--config=configs/folder.py"] in [t[:2] for t in readme]
    continued = _command_lines("sft-tf train --config=configs/tiny.py \\\n    --workdir=x", True)
    assert continued == [["train", "--config=configs/tiny.py", "--workdir=x"]]
    assert _flag_problem("--no_such_flag") and _flag_problem("--config=configs/missing.py")
    assert not _flag_problem("--config=tiny") and not _flag_problem("--config=configs/NAME.py")
    assert _config_field_problem("train", "--config.phase2.learnin_rate=1")
    assert _config_field_problem("export", "--config.phase2.epochs=1")
    assert _config_field_problem("train", "--config.model.backbone=None")
    assert not _config_field_problem("train", "--config.model.alpha=None")


# --- (b) Every file and symbol cited exists ------------------------------------------------------

_ROOTS = r"(?:sft_tf|tests|configs|benchmarks|notebooks|docs)"
_PACKAGES = r"(?:commands|config|data|distribute|evaluation|model|serving|training)"
_PATH = re.compile(rf"(?<![\w./<-])((?:{_ROOTS}/|{_PACKAGES}/(?=\w+\.py))[\w./-]*)(?::(\w+))?")


def _sources() -> dict[str, str]:
    """The texts whose cites are checked: the pages, and the package's docstrings and comments
    (all of its source text: a message that names a file must name a real one too)."""
    texts = dict(_documents())
    for path in sorted(PACKAGE.rglob("*.py")):
        texts[_relative(path)] = path.read_text()
    return texts


def _cited_paths() -> list[tuple[str, str, str | None]]:
    cites = []
    for name, text in _sources().items():
        for match in _PATH.finditer(text):
            path = match.group(1).rstrip(".")
            if "*" in path or any(_placeholder(p) for p in re.split(r"[/.]", path)):
                continue  # configs/*.py, saved_models/NAME
            if not path.startswith(
                ("sft_tf/", "tests/", "configs/", "benchmarks/", "docs/", "notebooks/")
            ):
                path = f"sft_tf/{path}"  # training/phases.py: a module of the package
            line = text.count("\n", 0, match.start()) + 1
            cites.append((f"{name}:{line}", path, match.group(2)))
    return cites


@functools.cache
def _module_names(path: Path) -> frozenset[str]:
    """Every name a module defines or imports, at any depth (classes' members included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return frozenset(names)


def test_cited_files_exist():
    """`sft_tf/...py`, `tests/...py`, `configs/...py`, `benchmarks/...py` (and `path.py:name`)."""
    missing = []
    for where, path, symbol in _cited_paths():
        target = ROOT / path.rstrip("/")
        if not target.exists():
            missing.append(f"{where}: {path}")
        elif symbol and target.suffix == ".py" and symbol not in _module_names(target):
            missing.append(f"{where}: {path}:{symbol} ({symbol} is not defined there)")
    assert not missing


@functools.cache
def _modules() -> dict[str, Path]:
    """{dotted name: file} of every sft_tf module and package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


@functools.cache
def _config_paths() -> frozenset[str]:
    from sft_tf.config import schema

    paths = set()

    def walk(node, prefix):
        for key in node:
            paths.add(prefix + key)
            if hasattr(node[key], "keys"):
                walk(node[key], f"{prefix}{key}.")

    walk(schema.base_config(), "")
    return frozenset(paths)


def _is_config_field(dotted: str) -> bool:
    path = dotted.removeprefix("config.").removesuffix(".*")
    return path in _config_paths()


def _resolves(dotted: str) -> bool:
    """Whether `a.b.c` names something in sft_tf: a module, then names the module defines."""
    parts = dotted.split(".")
    modules = _modules()
    for prefix in ("", "sft_tf."):
        candidates = [n for n in modules if n == prefix + parts[0] or n.endswith("." + parts[0])]
        for candidate in candidates:
            rest = parts[1:]
            while rest and f"{candidate}.{rest[0]}" in modules:  # into sub-packages
                candidate = f"{candidate}.{rest[0]}"
                rest = rest[1:]
            if all(name in _module_names(modules[candidate]) for name in rest):
                return True
    return False


_EXTENSIONS = {"json", "csv", "txt", "md", "py", "h5", "pb", "png", "jpg", "tflite", "onnx"}
_DOTTED = re.compile(r"(?:config\.)?[a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\.\*)?")


def _symbol_cites() -> list[tuple[str, str]]:
    """Backticked `module.name` and `config.field` references in the pages."""
    cites = []
    for name, text in _documents().items():
        for line, code, block in _code(text):
            if block:
                continue
            dotted = re.sub(r"(=.*|\(\))$", "", code.strip())
            if not _DOTTED.fullmatch(dotted) or dotted.rsplit(".", 1)[-1] in _EXTENSIONS:
                continue
            cites.append((f"{name}:{line}", dotted))
    return cites


def test_cited_symbols_exist():
    """A backticked dotted name whose first part is an sft_tf module or a config section is a
    module path (`caches.DISK_GROUP`, `sft_tf.data.decode.resize`) or a config field
    (`data.cache`, `export.*`); names of other libraries (`tf.data`) are left alone."""
    modules = {name.rsplit(".", 1)[-1] for name in _modules()}
    sections = {p for p in _config_paths() if "." not in p}
    wrong = []
    for where, dotted in _symbol_cites():
        first = dotted.removeprefix("config.").split(".")[0]
        if first not in modules | sections | {"sft_tf"}:
            continue
        if not (_is_config_field(dotted) or _resolves(dotted)):
            wrong.append(f"{where}: {dotted}")
    assert not wrong


def test_private_names_cited_in_the_package_exist():
    """A backticked `_name` in a docstring or comment of sft_tf names a function, class or
    variable the package still has."""
    defined = set().union(*(_module_names(path) for path in PACKAGE.rglob("*.py")))
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for match in re.finditer(r"`(_[a-z]\w*)(?:\(\))?`", path.read_text()):
            if match.group(1) not in defined:
                line = path.read_text().count("\n", 0, match.start()) + 1
                wrong.append(f"{_relative(path)}:{line}: {match.group(1)}")
    assert not wrong


# --- Generated reference, site and front page ----------------------------------------------------


def test_config_reference_lists_every_field_with_its_default():
    page = _reference().config_page()
    sections = _reference().read_schema()
    listed = {field.path for section in sections for field in section.fields}
    leaves = {p for p in _config_paths() if not any(q.startswith(p + ".") for q in _config_paths())}
    assert listed == leaves  # the walk over schema.py saw every field base_config() has
    for path in leaves:
        assert f"| `{path}` |" in page
    commented = [f.path for s in sections for f in s.fields if f.comment]
    assert len(commented) > len(leaves) * 3 // 4  # the comments were found


def test_cli_reference_lists_every_command_and_flag():
    from absl import flags

    from sft_tf import cli
    from sft_tf.commands import usage

    page = _reference().cli_page()
    for verb in usage.VERBS:
        assert f"## `sft-tf {verb}`" in page
        assert usage.VERBS[verb].summary in page
    for flag in flags.FLAGS.get_flags_for_module(cli):
        assert f"| `--{flag.name}` |" in page


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_the_nav_names_real_pages():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in PAGES if p != README}
    assert on_disk | set(_reference().PAGES) == set(nav)
    assert config["theme"]["name"] == "material" and config["theme"]["font"] is False


def test_readme_is_a_front_page():
    """Under 150 lines, starting with the two commands a new machine needs."""
    text = README.read_text()
    assert text.count("\n") <= README_MAX_LINES
    first = _FENCE.search(text)
    assert first.group(0).startswith("```sh")
    assert not text[: first.start()].strip("\n").count("\n")  # only the title above it
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]
