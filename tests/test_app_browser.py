"""End to end in a real headless Chromium: `workbench app` serves a real tiny study; the Pareto page
draws its points, a sidebar filter removes some, a lasso opens the Compare page (training and
validation curves overlaid, a log axis, a CSV download), and a filter on the Parameters page shows
on its parallel coordinates. On a synthetic store: hiding dominated designs and picking a design on
the front against its neighbours. Screenshots are saved.

The parallel-coordinates filter is driven through the page's filter widgets, not a brush dragged on
the figure: plotly does not report a parcoords brush back to Streamlit, so the widgets are what
filters the table; the test checks that the figure shows their bands (``constraintrange``).

Uses Debian's chromium at /usr/bin/chromium driven by Playwright's Python package (no browser
download). Without it the test skips, unless WORKBENCH_REQUIRE_BROWSER=1 (set by .ci/run), which
turns the skip into a failure. Screenshots go to $WORKBENCH_SCREENSHOTS if set, else tmp_path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers_app import CHROMIUM as CHROMIUM_PATH
from helpers_app import CHROMIUM_ARGS, serve_app, session_store

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(CHROMIUM_PATH)
POINTS = ".js-plotly-plot .scatterlayer .trace path.point"

pytestmark = pytest.mark.browser


def require_browser() -> None:
    """Skip (or, under WORKBENCH_REQUIRE_BROWSER=1, fail) when Chromium or Playwright is missing."""
    reason = None
    if not CHROMIUM.is_file():
        reason = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (pip install playwright; no browser download)"
    if reason is None:
        return
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; WORKBENCH_REQUIRE_BROWSER=1 requires the browser test to run")
    pytest.skip(reason)


@pytest.fixture
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`workbench app` on the real tiny-study store, on a free port of 127.0.0.1."""
    require_browser()
    with serve_app(session_store("real", tmp_path_factory)) as url:
        yield url


@pytest.fixture
def synthetic_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`workbench app` on the synthetic store (two studies of 400 trials: long fronts)."""
    require_browser()
    with serve_app(session_store("synthetic", tmp_path_factory)) as url:
        yield url


# The data and layout plotly drew, of the first figure whose first trace has ``type``.
FIGURE = """type => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.data && g.data[0].type === type);
  return gd ? {data: gd.data.map(t => ({name: t.name, x: t.x, constraintranges: (t.dimensions || [])
    .map(d => d.constraintrange || null)})), xaxis: gd._fullLayout.xaxis ? gd._fullLayout.xaxis.type : null} : null;
}"""


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_pareto_page_in_chromium_filters_points(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = screenshot_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{app_url}/pareto", wait_until="domcontentloaded")
            page.wait_for_selector(POINTS, timeout=60_000)
            caption = page.get_by_text(re.compile(r"complete trials plotted"))
            expect(caption).to_contain_text("6 of 6 complete trials plotted", timeout=30_000)
            page.wait_for_timeout(500)  # let plotly finish its transitions before the picture
            before = page.locator(POINTS).count()
            page.screenshot(path=shots / "pareto-before-filter.png")

            sidebar = page.get_by_test_id("stSidebar")
            kinds = sidebar.get_by_test_id("stMultiSelect").filter(has_text="memory.kind")
            kinds.get_by_role("button", name="Remove dense").click()
            expect(caption).to_contain_text("4 of 6 complete trials plotted", timeout=30_000)
            page.wait_for_function(f"document.querySelectorAll({POINTS!r}).length < {before}", timeout=30_000)
            page.wait_for_timeout(500)
            after = page.locator(POINTS).count()
            page.screenshot(path=shots / "pareto-after-filter.png")

            assert page.get_by_test_id("stException").count() == 0
            assert page.locator(".js-plotly-plot .main-svg").count() >= 1

            # Lasso every point, then open the selection in the Compare page.
            box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
            assert box is not None
            x0, y0, x1, y1 = (
                box["x"] + 3,
                box["y"] + 3,
                box["x"] + box["width"] - 3,
                box["y"] + box["height"] - 3,
            )
            page.mouse.move(x0, y0)
            page.mouse.down()
            for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
                page.mouse.move(x, y, steps=8)
            page.mouse.up()
            expect(page.get_by_text("Selection (4)")).to_be_visible(timeout=30_000)
            page.screenshot(path=shots / "pareto-selected.png")
            page.get_by_role("button", name="Compare", exact=True).click()
            expect(page.get_by_role("heading", name="Compare trials")).to_be_visible(timeout=30_000)
            page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=30_000)
            # Validation and training curves of the 4 trials overlaid: 8 lines.
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length === 8",
                timeout=30_000,
            )
            page.get_by_text("log x", exact=True).click()
            page.wait_for_function(
                f"({FIGURE})('scatter') && ({FIGURE})('scatter').xaxis === 'log'", timeout=30_000
            )
            page.wait_for_timeout(500)
            page.screenshot(path=shots / "compare-selected.png")

            # The metrics table downloads as a CSV that pandas reads.
            with page.expect_download(timeout=30_000) as download:
                page.get_by_test_id("stDownloadButton").filter(has_text="CSV").first.click()
            csv = tmp_path / download.value.suggested_filename
            download.value.save_as(csv)
            metrics = pd.read_csv(csv)
            assert csv.name == "compare_metrics_table.csv"
            assert "validation perplexity" in metrics["metric"].tolist() and len(metrics.columns) == 6

            # Parameters: a filter on memory.kind shows as a band on the parallel coordinates.
            page.goto(f"{app_url}/params", wait_until="domcontentloaded")
            page.wait_for_function(f"({FIGURE})('parcoords') !== null", timeout=60_000)
            page.get_by_text("Filter designs").click()
            kinds = page.get_by_test_id("stMultiSelect").filter(has_text="memory.kind")
            kinds.get_by_role("button", name="Remove dense").click()
            expect(page.get_by_text("4 of 6 complete trials pass the filters")).to_be_visible(timeout=30_000)
            page.wait_for_function(
                f"JSON.stringify(({FIGURE})('parcoords').data[0].constraintranges[0]) === '[[0.6,1.4]]'",
                timeout=30_000,
            )
            page.wait_for_timeout(500)
            page.screenshot(path=shots / "params-filtered.png")
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
    # 6 trials + the front's markers before; the 2 dense trials (one on the front) gone after.
    assert before > after >= 4
    for name in ("pareto-before-filter.png", "pareto-after-filter.png", "compare-selected.png"):
        assert (shots / name).stat().st_size > 20_000, name


def test_pareto_page_in_chromium_hides_dominated_and_picks_a_front_design(
    synthetic_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    shots = screenshot_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{synthetic_url}/pareto", wait_until="domcontentloaded")
            page.wait_for_selector(POINTS, timeout=60_000)
            caption = page.get_by_text(re.compile(r"complete trials plotted"))
            expect(caption).to_contain_text("800 of 800 complete trials plotted", timeout=30_000)
            front = int(re.search(r"(\d+) on the front", caption.inner_text()).group(1))

            page.get_by_text("hide dominated designs").click()
            expect(caption).to_contain_text(f"{800 - front} dominated hidden", timeout=30_000)
            drawn = (
                "() => document.querySelector('.js-plotly-plot')._fullData.filter(t => t.customdata && "
                "!t.name.startsWith('front')).reduce((n, t) => n + t.x.length, 0)"
            )
            page.wait_for_function(f"({drawn})() === {front}", timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=shots / "pareto-front-only.png")

            # Pick the third design of the first study's front: its neighbours and config diff appear.
            picker = page.get_by_test_id("stSelectbox").filter(has_text="Design on the front")
            options = page.get_by_role("option")
            # The tables above it lay out after the scroll: a click while they do lands and closes.
            picker.scroll_into_view_if_needed()
            for _ in range(5):
                picker.click()
                try:
                    options.nth(2).wait_for(timeout=3_000)
                    break
                except PlaywrightTimeout:
                    page.keyboard.press("Escape")
            third = options.nth(2).inner_text().split(" · ")[0]
            options.nth(2).click()
            table = page.get_by_test_id("stDataFrame").nth(1)
            expect(table).to_contain_text("Δ previous", timeout=30_000)
            ringed = (
                "() => document.querySelector('.js-plotly-plot').data.find(t => t.name === 'front · picked')"
            )
            page.wait_for_function(f"({ringed})() !== undefined", timeout=30_000)
            expect(page.get_by_test_id("stCode")).to_contain_text(f"retrain-{third.split('#')[1]}")
            page.get_by_text("A front design and its neighbours").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=shots / "pareto-picked.png")
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
