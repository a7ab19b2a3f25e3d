"""The package reads top-down as the data path: no module imports a later stage.

The stages are the dependency order that README's "Layout" section lists. A space is compiled
against the model's analytic cost, so ``space`` comes after ``model``; the study ingests each
finished trial into the store, so ``store`` comes before ``study``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"
STAGES: tuple[tuple[str, ...], ...] = (
    ("errors", "pareto", "record"),
    ("memory",),
    ("config",),
    ("model",),
    ("space",),
    ("data",),
    ("train",),
    ("trial", "provenance", "early_stop"),
    ("store",),
    ("study", "progress", "workers"),
    ("explore",),
    ("cli", "__main__"),
)
STAGE_OF = {name: i for i, names in enumerate(STAGES) for name in names}
MAX_TOP_LEVEL_MODULES = 12


def top_level_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_stages(path: Path) -> set[str]:
    """The top-level workbench units ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "workbench":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from workbench import memory
                found.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "workbench" and len(parts) > 1:
                    found.add(parts[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_unit_has_a_stage() -> None:
    units = {top_level_name(p) for p in MODULES}
    assert units, f"no modules found under {PACKAGE}"
    assert units <= set(STAGE_OF), f"units without a stage: {sorted(units - set(STAGE_OF))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_later_stage(path: Path) -> None:
    own = STAGE_OF[top_level_name(path)]
    later = {name for name in imported_stages(path) if STAGE_OF.get(name, -1) > own}
    assert not later, f"{path.relative_to(ROOT)} (stage {own}) imports later stages: {sorted(later)}"


def test_the_top_level_stays_small() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules, f"no modules in {PACKAGE}"
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules
