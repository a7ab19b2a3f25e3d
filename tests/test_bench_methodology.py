"""docs/METHODOLOGY.md's tables regenerate from the stored GPU runs, without a GPU."""

from __future__ import annotations

from pathlib import Path

from bench import methodology

ROOT = Path(__file__).resolve().parents[1]
JOURNALS = ROOT / "store" / "runs"


def test_the_tables_regenerate_from_the_stored_runs(tmp_path: Path) -> None:
    doc = tmp_path / "METHODOLOGY.md"
    assert methodology.main(["--journals", str(JOURNALS), "--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    store = methodology.store_from_journals(JOURNALS, tmp_path / "m.duckdb")
    designs = store.designs("methodology")
    assert sorted(designs["n_seeds"]) == [5, 5, 5]
    for _, d in designs.iterrows():
        assert f"{d['val_ppl_mean']:.2f} [{d['val_ppl_ci95_low']:.2f}, {d['val_ppl_ci95_high']:.2f}]" in text
    assert "lr the probes chose" in text and text.count("| yes |") + text.count("| no |") == 3
    committed = (ROOT / "docs" / "METHODOLOGY.md").read_text(encoding="utf-8")
    block = text[text.index(methodology.BEGIN) : text.index(methodology.END)]
    assert block in committed, "docs/METHODOLOGY.md is stale: run python -m bench.methodology"


def test_seeds_needed_grow_with_the_square_of_the_spread() -> None:
    one, _ = methodology.seeds_to_separate(0.02)
    four, _ = methodology.seeds_to_separate(0.04)
    assert 3.5 <= four / one <= 4.5
