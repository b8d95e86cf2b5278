"""The repository stands alone: a plain `git clone` + `make test` must not need anything beside the clone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in two pieces so that this file does not name the folder it looks for.
SHARED = re.compile(r"\.\./" + "shared|" + "shared/" + "fixtures")


def _python_files() -> list[Path]:
    return sorted(path for folder in ("tests", "bench", "emulators") for path in (ROOT / folder).rglob("*.py"))


def _parents_depth(node: ast.Subscript) -> int | None:
    """N in `Path(__file__).resolve().parents[N]`; `.parent` steps after it are counted by the caller."""
    if isinstance(node.value, ast.Attribute) and node.value.attr == "parents" and isinstance(node.slice, ast.Constant):
        value = node.slice.value
        return value if isinstance(value, int) else None
    return None


def _escapes(path: Path, root: Path = ROOT) -> list[str]:
    """Paths built from `__file__` that climb above the repository root, and literal paths beside the clone."""
    found: list[str] = []
    text = path.read_text(encoding="utf-8")
    if SHARED.search(text):
        found.append(f"{path.relative_to(root)} names the folder beside the clone")
    depth_of_file = len(path.relative_to(root).parts) - 1  # folders between the root and the file
    for node in ast.walk(ast.parse(text)):
        extra = 0
        while isinstance(node, ast.Attribute) and node.attr == "parent":
            extra += 1
            node = node.value
        depth = _parents_depth(node) if isinstance(node, ast.Subscript) else None
        # parents[0] is the file's folder; parents[depth_of_file] is the root.
        if depth is not None and depth + extra > depth_of_file:
            found.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)} climbs above the repository")
    return found


def test_no_test_or_bench_path_leaves_the_repository() -> None:
    problems = [problem for path in _python_files() for problem in _escapes(path)]
    assert problems == []


def test_the_check_sees_a_path_that_climbs_out(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    bad = tmp_path / "tests" / "probe.py"
    bad.write_text('from pathlib import Path\nX = Path(__file__).resolve().parents[1].parent / "elsewhere"\n')
    good = tmp_path / "tests" / "fine.py"
    good.write_text('from pathlib import Path\nX = Path(__file__).resolve().parents[1] / "tests"\n')
    assert any("climbs above" in problem for problem in _escapes(bad, tmp_path))
    assert _escapes(good, tmp_path) == []


def test_fixtures_are_in_the_repository() -> None:
    assert (ROOT / "tests" / "fixtures" / "graph" / "delta_page_1.json").is_file()
    assert (ROOT / "tests" / "fixtures" / "ews" / "EWS_SAMPLES.md").is_file()
