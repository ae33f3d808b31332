"""The house rules, checked: SQL lives in the repository, state names in the
state machine, no module imports in a loop, and every file a comment points
to is in the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from handlers.workflow import EmailStatus, WorkflowState

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b")


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_sql_lives_only_in_the_storage_package() -> None:
    for path in sources("streams", "handlers"):
        if path.is_relative_to(ROOT / "streams" / "storage"):
            continue
        found = [s for s in string_constants(path) if SQL.search(s)]
        assert found == [], f"SQL in {path.relative_to(ROOT)}: {found}"


def test_no_state_name_literal_outside_handlers() -> None:
    states = {s.value for s in WorkflowState} | {EmailStatus.ORCHESTRATING.value}
    for path in sources("streams"):
        found = [s for s in string_constants(path) if s in states]
        assert found == [], f"state name literal in {path.relative_to(ROOT)}: {found}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions and TYPE_CHECKING
    included), as absolute dotted names, with the packages Python runs on the
    way whatever the spelling: ``import a.b.c``, ``from a.b import c`` and
    ``from a.b.c import x`` all count ``a``, ``a.b`` and ``a.b.c``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 2)}


def own_modules(path: Path) -> set[str]:
    """The modules of this repository's packages that ``path`` imports, less
    the packages that hold ``path`` itself (a module of ``streams.stages``
    reaching a sibling runs no code of the package it is already inside)."""
    me = module_name(path)
    holders = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
    names = set()
    for name in imported(path) - holders:
        file = ROOT / name.replace(".", "/")
        if file.with_suffix(".py").is_file() or (file / "__init__.py").is_file():
            names.add(name)
    return names


def roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


IO_LIBRARIES = {"faust", "mode", "aiohttp", "psycopg", "psycopg_pool", "httpx", "confluent_kafka", "aiokafka"}


def test_handlers_import_no_io_library_and_nothing_of_streams() -> None:
    for path in sources("handlers"):
        found = roots(imported(path)) & (IO_LIBRARIES | {"streams", "standins"})
        assert not found, f"{path.relative_to(ROOT)} imports {found}"


def test_stages_talk_to_the_world_only_through_their_ports() -> None:
    """The stages decide; Kafka, HTTP and SQL are the layers around them."""
    for path in sources("streams/stages"):
        found = roots(imported(path)) & IO_LIBRARIES
        outward = {n for n in own_modules(path)
                   if n.startswith(("streams.pipeline", "streams.web", "streams.kafka", "streams.cli",
                                    "streams.peers", "streams.observability"))}
        assert not found and not outward, f"{path.relative_to(ROOT)} imports {found | outward}"


def test_the_pipeline_never_imports_the_web_layer() -> None:
    for path in sources("streams/pipeline", "streams/storage", "streams/kafka", "streams/peers"):
        found = {n for n in own_modules(path) if n.startswith(("streams.web", "streams.cli"))}
        assert not found, f"{path.relative_to(ROOT)} imports {found}"


def test_nothing_imports_the_stand_ins() -> None:
    for path in sources("streams", "handlers"):
        assert "standins" not in roots(imported(path)), f"{path.relative_to(ROOT)} imports standins"


def assert_no_loop(graph: dict[str, set[str]], what: str) -> None:
    """Every path through ``graph`` (a name to the names it imports) ends;
    a loop fails with the whole of it spelled out."""

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"{what}: {' -> '.join(path + [node])}"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])

    for node in graph:
        visit(node, [])


def test_no_import_loop_anywhere() -> None:
    """Modules of ``streams`` and ``handlers`` import each other in a tree, imports
    inside functions included (a package counts as its ``__init__``)."""
    graph = {module_name(p): own_modules(p) - {module_name(p)} for p in sources("streams", "handlers")}
    assert_no_loop(graph, "import loop")


def layer(module: str) -> str:
    """The package of ``streams`` a module belongs to (``streams.stages``), or the
    module itself for the wiring at the top (``streams.runtime``); ``handlers``."""
    parts = module.split(".")
    if parts[0] == "handlers" or len(parts) < 2:
        return parts[0]
    return ".".join(parts[:2])


def test_packages_depend_on_each_other_in_one_direction() -> None:
    """Layers, not a web: if ``pipeline`` imports ``observability``, nothing in
    ``observability`` imports ``pipeline``, however indirectly."""
    graph: dict[str, set[str]] = {}
    for path in sources("streams", "handlers"):
        me = layer(module_name(path))
        graph.setdefault(me, set()).update(layer(n) for n in own_modules(path) if layer(n) not in (me, "streams"))
    assert_no_loop(graph, "packages import each other")


MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def test_modules_and_classes_stay_small_enough_to_read() -> None:
    for path in sources("streams"):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{where} has over {MAX_MODULE_LINES} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                assert size <= MAX_CLASS_LINES, f"{where}: class {node.name} has {size} lines"


def test_every_referenced_file_is_in_the_repository() -> None:
    outside = ("CONTRACTS" + ".md", "DESIGN" + ".md", "../" + "shared")  # documents that are not here
    texts = [p for p in [*sources("handlers", "streams", "tests", "bench"), ROOT / "schema.sql",
                         ROOT / "README.md", ROOT / "pyproject.toml", *(ROOT / "docs").glob("*.md")]
             if p.exists()]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert not [name for name in outside if name in text], path
        for ref in re.findall(r"\bdocs/[\w.-]+\.md\b", text):
            assert (ROOT / ref).is_file(), f"{path.relative_to(ROOT)} points to {ref}, which is not here"


def test_package_data_names_files_that_exist() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for package, files in config["tool"]["setuptools"]["package-data"].items():
        for name in files:
            assert list((ROOT / package).glob(name)), f"package-data names {package}/{name}, which is not here"


def test_the_contract_suite_calls_every_storage_method_of_the_fake() -> None:
    """The fake stands in for PostgreSQL in the stage tests only as far as the
    contract suite shows the two agree: each of its storage methods is called
    there, on both backends (the test helpers ``add_email``, ``start``,
    ``published`` and ``trail`` are the fake's own)."""
    import inspect

    from tests.support import fakes

    suite = (ROOT / "tests" / "integration" / "test_repository_contract.py").read_text(encoding="utf-8")
    helpers = {"add_email", "start", "published", "trail"}
    parts = (fakes.FakePhoneSlot, fakes.FakeSmsLedger, fakes.FakeTransaction, fakes.FakeSession, fakes.FakeRepository)
    methods = {name for part in parts for name, _ in inspect.getmembers(part, inspect.isfunction)
               if not name.startswith("_") and name not in helpers}
    assert len(methods) > 30
    assert sorted(m for m in methods if f".{m}(" not in suite) == []


def test_the_stage_tests_need_no_type_ignore() -> None:
    """The fake conforms to the storage Protocol the stages are typed against,
    so the stage tests hand it over as it is (mypy checks ``tests/`` too)."""
    text = (ROOT / "tests" / "unit" / "test_stages.py").read_text(encoding="utf-8")
    assert "type: ignore" not in text
