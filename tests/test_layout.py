"""The house rules, checked: SQL lives in the repository, state names in the
state machine, no module imports in a loop, and every file a comment points
to is in the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from handlers.workflow import EmailStatus, WorkflowState

ROOT = Path(__file__).resolve().parent.parent
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


def test_no_sql_outside_the_storage_modules() -> None:
    for name in ("stages.py", "api.py", "web.py", "health.py", "agents.py", "consumer.py", "poller.py",
                 "doctor.py", "kafka_tools.py", "cli.py", "metrics.py", "dashboard.py", "charts.py"):
        found = [s for s in string_constants(ROOT / "streams" / name) if SQL.search(s)]
        assert found == [], f"SQL in streams/{name}: {found}"


def test_no_state_name_literal_outside_handlers() -> None:
    states = {s.value for s in WorkflowState} | {EmailStatus.ORCHESTRATING.value}
    for path in sources("streams"):
        found = [s for s in string_constants(path) if s in states]
        assert found == [], f"state name literal in {path.relative_to(ROOT)}: {found}"


def test_handlers_import_no_io_library() -> None:
    io = {"faust", "aiohttp", "psycopg", "psycopg_pool", "httpx", "confluent_kafka", "aiokafka", "streams"}
    for path in sources("handlers"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & io, f"{path.relative_to(ROOT)} imports {roots & io}"


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports at module level (TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = f"{package}.{node.module}" if node.module else package
                names = [base] if node.module else [f"{package}.{a.name}" for a in node.names]
            elif node.module and node.module.startswith(package + "."):
                names = [node.module]
            else:
                continue
            found.update(n for n in names if (ROOT / (n.replace(".", "/") + ".py")).exists())
    return found


def test_no_import_loop_in_streams() -> None:
    graph = {".".join(p.relative_to(ROOT).with_suffix("").parts): _imports(p, "streams")
             for p in (ROOT / "streams").glob("*.py")}

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import loop: {' -> '.join(path + [node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, path + [node])

    for module in graph:
        visit(module, [])


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
            assert (ROOT / package / name).is_file(), f"package-data names {package}/{name}, which is not here"
