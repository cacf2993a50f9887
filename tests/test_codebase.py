"""The house rules a newcomer relies on: small modules and functions, a thin CLI, tests that
mirror the package and never import one another."""

import ast

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "sft_tf"
MODULES = sorted(PACKAGE.rglob("*.py"))
TESTS = sorted((REPO / "tests").rglob("test_*.py"))
# The schema lists every field with its comment: long by design, and read as a table.
EXEMPT_FUNCTIONS = {("sft_tf/config/schema.py", "base_config")}


def _name(path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_stay_under_400_lines(path):
    assert path.read_text().count("\n") <= 400


def _code_lines(function: ast.FunctionDef) -> int:
    """Lines of a function from its `def` to its end, its docstring not counted."""
    first = function.body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    docstring = first.end_lineno - first.lineno + 1 if is_doc else 0
    return function.end_lineno - function.lineno + 1 - docstring


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_functions_stay_under_60_lines(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({_code_lines(node)} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _code_lines(node) > 60
        and (_name(path), node.name) not in EXEMPT_FUNCTIONS
    ]
    assert not long


def test_the_cli_only_parses_and_dispatches():
    assert (PACKAGE / "cli.py").read_text().count("\n") <= 150


@pytest.mark.parametrize("path", TESTS, ids=_name)
def test_no_test_module_imports_another(path):
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [m for m in imported if m.startswith("tests") and ".test_" in f".{m}"]


def test_tests_mirror_the_package():
    """tests/PKG/test_NAME.py tests sft_tf/PKG/NAME.py; end-to-end runs live in scenarios/."""
    unmatched = []
    for path in TESTS:
        parts = path.relative_to(REPO / "tests").parts
        if parts[0] in ("scenarios", "test_codebase.py", "test_docs.py"):  # the house, the docs
            continue
        module = PACKAGE.joinpath(*parts[:-1], parts[-1].removeprefix("test_"))
        if not module.is_file():
            unmatched.append(_name(path))
    assert not unmatched


BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


def _sft_tf_names(tree: ast.Module) -> dict[str, object]:
    """{local name: the sft_tf module or object it is bound to} for a script's imports."""
    import importlib

    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sft_tf"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):  # a submodule not imported by its package
                    importlib.import_module(f"{node.module}.{alias.name}")
                bound[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sft_tf."):
                    importlib.import_module(alias.name)
    return bound


@pytest.mark.parametrize("path", BENCHMARKS, ids=_name)
def test_benchmarks_use_names_the_package_still_has(path):
    """The benchmarks are run by hand, not by the suite: a renamed module or function must
    still fail here rather than in the next person's benchmark run."""
    tree = ast.parse(path.read_text())
    bound = _sft_tf_names(tree)
    missing = [
        f"{node.value.id}.{node.attr} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in bound
        and not hasattr(bound[node.value.id], node.attr)
    ]
    assert not missing


def _module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, modules: set[str]) -> set[str]:
    """The sft_tf modules `path` imports anywhere in it: at the top, inside functions (a lazy
    import hides a circle, it does not remove it) and under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sft_tf"):
            for alias in node.names:  # `from pkg import module` names a module, else an object
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sft_tf"))
    return found & modules


def test_no_import_circles():
    """Module A imports B and B imports A (or a longer loop): neither reads on its own, and
    the order of imports starts to matter. Each circle found is listed."""
    modules = {_module_name(p): p for p in MODULES}
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    circles, done = [], set()

    def visit(name, trail):
        if name in trail:
            circles.append(" -> ".join([*trail[trail.index(name) :], name]))
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not circles


# Modules without a test file of their own, each with the reason.
EXEMPT_FROM_TEST_FILES = {
    "__init__.py": "package markers and the usage text: nothing of their own to test",
    "sft_tf/__main__.py": "`python -m sft_tf` calls cli.run; tests/test_cli.py runs it",
    "sft_tf/config_lib.py": "a re-export of config.schema for config files",
    "sft_tf/configs/*.py": "config files, checked by tests/config",
}


def _exempt(path) -> bool:
    name = _name(path)
    return any(
        path.name == pattern or name == pattern or path.match(pattern)
        for pattern in EXEMPT_FROM_TEST_FILES
    )


def test_every_module_has_its_test_file():
    """sft_tf/PKG/NAME.py is tested in tests/PKG/test_NAME.py (sft_tf/NAME.py in
    tests/test_NAME.py), unless EXEMPT_FROM_TEST_FILES says why not."""
    missing = []
    for path in MODULES:
        if _exempt(path):
            continue
        parts = path.relative_to(PACKAGE).parts
        test = REPO.joinpath("tests", *parts[:-1], f"test_{parts[-1]}")
        if not test.is_file():
            missing.append(f"{_name(path)} (no {_name(test)})")
    assert not missing


def test_every_exemption_still_names_a_module():
    """An exemption outliving its module (or a typo in one) would hide the next one."""
    for pattern in EXEMPT_FROM_TEST_FILES:
        assert any(p.name == pattern or p.match(pattern) for p in MODULES), pattern
