"""The one error tree and the one code table (recsys.errors), checked on the source.

* every exception class of recsys, recsys_api, recsys_workers and the plugins is a
  RecsysError defined in an errors module;
* every RecsysError's code is in ERRORS, with that code's status and title;
* the tree in recsys.errors' docstring and the table in docs/api.md say the same.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import recsys.errors
from recsys.errors import ERRORS, InternalError, RecsysError, error_class

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "recsys", ROOT / "recsys_api", ROOT / "recsys_workers",
            *sorted(p for p in (ROOT / "plugins").glob("*/recsys_engine_*") if p.is_dir())]

#: Exception classes that are not RecsysErrors, each with the reason.
NOT_RECSYS_ERRORS = {
    # The HTTP form every error takes at the edge (a falcon.HTTPError); http_error builds it from a code.
    "recsys_api.errors.ApiError",
    # Private to recsys/config.py, which the settings rework replaces (not this module's to move).
    "recsys.config._Invalid",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "plugins":  # plugins/<distribution>/<package>/...
        rel = path.relative_to(ROOT.joinpath(*rel.parts[:2]))
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in package.rglob("*.py"))


def _exception_classes() -> list[tuple[str, type[BaseException]]]:
    """Every exception class defined in the packages' modules (found with ast, so that
    a module that cannot be imported without a deployment's settings is still read)."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        if not names:
            continue
        module = importlib.import_module(_module_name(path))
        for name in names:
            cls = getattr(module, name)
            if inspect.isclass(cls) and issubclass(cls, BaseException):
                found.append((f"{module.__name__}.{name}", cls))
    return found


def _nested_exception_classes() -> list[str]:
    """Classes defined inside functions or classes whose bases look like exceptions."""
    looks_like = re.compile(r"(Error|Exception|Exceeded|Timeout|Interrupt)$")
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and id(node) not in top:
                bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
                if any(looks_like.search(base) for base in bases):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({', '.join(bases)})")
    return found


def test_every_exception_class_is_a_recsys_error_in_an_errors_module():
    classes = _exception_classes()
    assert "recsys.errors.RecsysError" in dict(classes)  # the walk sees the tree itself
    offenders = [
        f"{name} ({', '.join(b.__name__ for b in cls.__mro__[1:-1])})"
        for name, cls in classes
        if name not in NOT_RECSYS_ERRORS
        and not (issubclass(cls, RecsysError) and cls.__module__.rsplit(".", 1)[-1] == "errors")
    ]
    assert not offenders, "move these into recsys/errors.py (or a package's errors module) as RecsysErrors:\n" \
        + "\n".join(offenders)
    assert not _nested_exception_classes()


def _recsys_error_classes() -> list[type[RecsysError]]:
    return [cls for _, cls in _exception_classes() if issubclass(cls, RecsysError)]


def test_every_code_is_in_the_table_with_its_status_and_title():
    for cls in _recsys_error_classes():
        kind = ERRORS.get(cls.code)
        assert kind is not None, f"{cls.__name__}: code {cls.code!r} is not in recsys.errors.ERRORS"
        assert issubclass(cls, kind) or cls is RecsysError, f"{cls.__name__} is not under {kind.__name__}"
        assert (cls.status, cls.title) == (kind.status, kind.title), cls.__name__


def test_the_table_lists_each_code_once_with_the_class_that_introduces_it():
    for code, cls in ERRORS.items():
        assert cls.code == code
        assert "code" in vars(cls), f"{cls.__name__} inherits {code!r}; list the class that sets it"
        assert 100 <= cls.status <= 599 and cls.title
    assert error_class("from_a_newer_worker") is InternalError
    assert (RecsysError.code, RecsysError.status, RecsysError.title) == ("internal", 500, "Internal error")


def _tree_rows() -> dict[str, tuple[str, str]]:
    """``{class: (code, status)}`` from the tree drawn in recsys.errors' docstring."""
    rows = {}
    for line in (recsys.errors.__doc__ or "").splitlines():
        match = re.match(r"^\s+[│ ]*(?:├──|└──)?\s*([A-Z]\w+)(?:\s+([a-z_]+)\s+(\d{3}))?\s", line + " ")
        if match and ("──" in line or line.strip().startswith("RecsysError")):
            rows[match.group(1)] = (match.group(2) or "", match.group(3) or "")
    return rows


def test_the_docstring_tree_draws_every_class_with_its_code_and_status():
    rows = _tree_rows()
    for cls in _recsys_error_classes():
        assert cls.__name__ in rows, f"{cls.__name__} is missing from the tree in recsys/errors.py"
        code, status = rows[cls.__name__]
        if "code" in vars(cls):
            assert (code, status) == (cls.code, str(cls.status)), cls.__name__
        else:
            assert not code, f"{cls.__name__} keeps its parent's code: draw it without one"
    assert set(rows) == {cls.__name__ for cls in _recsys_error_classes()}


def _docs_table() -> dict[str, tuple[int, str]]:
    """``{code: (status, title)}`` from the code table of docs/api.md."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \| (\d{3}) \| ([^|]+?) \|", line)
        if match:
            rows[match.group(1)] = (int(match.group(2)), match.group(3).strip())
    return rows


def test_docs_api_md_shows_the_table():
    assert _docs_table() == {code: (cls.status, cls.title) for code, cls in ERRORS.items()}
