"""Layers, enforced (issue #14): the apps import each other only at module level, where the import
contracts of pyproject.toml (`lint-imports`, run by `make lint`) see every edge."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accessctl", "orgs", "keys", "accessgroups")

# Where Django or Celery needs an import inside a function, by (file, imported module).
ALLOWED = {
    # AppConfig.ready: receivers are connected once every app is loaded.
    ("accessgroups/apps.py", ".signals"),
    ("keys/apps.py", ".signals"),
    ("orgs/apps.py", ".signals"),
    # A Celery task calls its service and the service enqueues the task: one side imports lazily.
    ("accessgroups/bulk_jobs.py", ".tasks"),
    ("keys/usage_apply.py", ".tasks"),
}


def _function_level_app_imports() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for function in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom):
                        module = "." * node.level + (node.module or node.names[0].name)
                    elif isinstance(node, ast.Import):
                        module = node.names[0].name
                    else:
                        continue
                    if module.startswith(".") or module.split(".")[0] in APPS:
                        found.add((path.relative_to(ROOT).as_posix(), module))
    return found


def test_the_apps_import_each_other_only_at_module_level():
    assert _function_level_app_imports() - ALLOWED == set()


def test_every_allowed_function_level_import_is_still_needed():
    assert ALLOWED - _function_level_app_imports() == set()
