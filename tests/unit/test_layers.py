"""Import rules between packages, checked by parsing every module (no import is run):
`mmsearch/index/` and `mmsearch/store/` never import each other (`mmsearch/view/` joins
them), and only `mmsearch/index/` imports faiss."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mmsearch"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth (functions and TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the file's package
                base = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level]
                found.add(".".join([*base, node.module]))
            else:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _imports_package(imported: set[str], package: str) -> list[str]:
    return sorted(m for m in imported if m == package or m.startswith(package + "."))


@pytest.mark.parametrize(("folder", "forbidden"), [("index", "mmsearch.store"),
                                                   ("store", "mmsearch.index"),
                                                   ("store", "mmsearch.view"),
                                                   ("index", "mmsearch.view")])
def test_store_and_index_do_not_import_each_other(folder, forbidden):
    assert modules_under(folder)
    bad = {str(p.relative_to(PACKAGE)): _imports_package(imports_of(p), forbidden)
           for p in modules_under(folder)}
    assert not {k: v for k, v in bad.items() if v}


def test_only_the_index_package_imports_faiss():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if _imports_package(imports_of(p), "faiss"))
    assert users and all(u.startswith("index/") for u in users), users


def test_the_checker_sees_imports_in_functions_and_relative_ones(tmp_path):
    probe = PACKAGE / "index" / "flat.py"
    assert "faiss" in imports_of(probe)
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from mmsearch.store.store import Store\n")
    assert _imports_package(imports_of(fake), "mmsearch.store") == [
        "mmsearch.store.store", "mmsearch.store.store.Store"]
