"""How long the app takes to show the Pareto page of a store with 10,000 trials.

    python bench/app_load.py [--trials 10000] [--repeat 3] [--store PATH] [--no-browser]

Builds a synthetic store (``tests/helpers_app.write_synthetic_store``: complete trials with
parameters, curves, routing and provenance, written straight into the schema), then measures:

* **AppTest, cold process** -- wall time from launching a fresh Python process to the Pareto page
  rendered by ``streamlit.testing.v1.AppTest`` with all points in its figure: interpreter start,
  imports (streamlit, plotly, duckdb, pandas), then the first script run, straight onto the
  Pareto page: store queries, parameter pivot, fronts, figure, serialisation. Nothing cached.
* **AppTest, warm process** -- the same process, caches cleared, a new AppTest session: what a
  running server pays for the first visitor after new data (the new session reuses the first
  one's scan of installed Streamlit components, which a server makes once at startup).
* **Browser** (Debian chromium via Playwright, if present) -- ``workbench app`` serving the store:
  from ``page.goto(/pareto)`` to plotly having drawn all points (the graph div's ``_fullData``
  holds them and the caption says so). "first": the first page load after the server started
  (the server runs the script for the first time); "new browser profile": later loads with an
  empty browser cache (the browser fetches and compiles Streamlit's and plotly.js's bundles);
  "reload": later loads with those bundles cached, as for a researcher who keeps the app open.

Prints one line per measurement and a Markdown table for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from helpers_app import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402  (tests/ is on the path only now)

CHILD = r"""
import json, sys, time
start = float(sys.argv[1])
t_python = time.time()
from streamlit.testing.v1 import AppTest
import streamlit as st
t_import = time.time()

def pareto_points(at):
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return sum(len(t.get("customdata", [])) for t in spec["data"] if not t["name"].startswith("front"))

at = AppTest.from_file(sys.argv[2], default_timeout=120)
t_first = time.time()
at.switch_page("views/pareto.py").run()  # the first run lands on the Pareto page
assert not at.exception, [e.value for e in at.exception]
points = pareto_points(at)
t_pareto = time.time()

st.cache_data.clear()
st.cache_resource.clear()
warm = AppTest.from_file(sys.argv[2], default_timeout=120)
# An AppTest scans every installed distribution for Streamlit components on its first run (seconds
# in a large environment); a server does it once at startup, so the warm run reuses the first scan.
if hasattr(at, "_bidi_component_manager") and hasattr(warm, "_bidi_component_manager"):
    warm._bidi_component_manager = at._bidi_component_manager
w0 = time.time()
warm.switch_page("views/pareto.py").run()
warm_s = time.time() - w0
assert pareto_points(warm) == points
print(json.dumps({"total": t_pareto - start, "python": t_python - start, "imports": t_import - t_python,
                  "pareto_run": t_pareto - t_first, "points": points, "warm_pareto_run": warm_s}))
"""

DRAWN = """n => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData) return false;
  const drawn = gd._fullData.filter(t => t.customdata && !t.name.startsWith('front'))
                            .reduce((s, t) => s + t.x.length, 0);
  return drawn === n;
}"""


def build_store(path: Path, trials: int) -> Path:
    from helpers_app import write_synthetic_store

    if not path.exists():
        t = time.perf_counter()
        write_synthetic_store(path, trials)
        print(f"built {path} with {trials} trials in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return path


def apptest(store: Path) -> dict[str, float]:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "PYTHONPATH": str(REPO)}
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, repr(start), str(REPO / "app" / "streamlit_app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def browser(store: Path, trials: int, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"first": [], "new_browser": [], "reload": []}
    with serve_app(store) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i in range(repeat + 1):  # a new browser profile each time: nothing cached
            context = chromium.new_context(viewport={"width": 1400, "height": 1000})
            times["first" if i == 0 else "new_browser"].append(load(context.new_page(), url, trials))
            context.close()
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        load(context.new_page(), url, trials)
        for _ in range(repeat):  # the same profile: app and plotly.js bundles in the HTTP cache
            times["reload"].append(load(context.new_page(), url, trials))
        context.close()
        chromium.close()
    return times


def load(page: Any, url: str, trials: int) -> float:
    """Seconds from navigating to /pareto until plotly has drawn every point."""
    t = time.perf_counter()
    page.goto(f"{url}/pareto", wait_until="commit")
    page.wait_for_function(DRAWN, arg=trials, timeout=120_000, polling=20)
    page.get_by_text(f"{trials} of {trials} complete trials plotted").wait_for(timeout=60_000)
    elapsed = time.perf_counter() - t
    page.close()
    return elapsed


def device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, default=None, help="reuse (or create) this synthetic store")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="wb-bench-")) / f"synthetic-{args.trials}.duckdb"
    build_store(store, args.trials)

    runs = []
    for i in range(args.repeat):
        r = apptest(store)
        assert r["points"] == args.trials, r
        runs.append(r)
        print(
            f"AppTest cold process {i + 1}: {r['total']:.2f}s to the rendered Pareto page "
            f"(python {r['python']:.2f}, streamlit imports {r['imports']:.2f}, Pareto page run "
            f"{r['pareto_run']:.2f}); warm process, cold cache: {r['warm_pareto_run']:.2f}s",
            flush=True,
        )
    rows = [
        ("AppTest, cold process (launch → Pareto page rendered)", [r["total"] for r in runs]),
        ("AppTest, warm process, cleared caches (Pareto page run)", [r["warm_pareto_run"] for r in runs]),
    ]
    if not args.no_browser and Path(CHROMIUM).is_file():
        times = browser(store, args.trials, args.repeat)
        print(f"browser: {json.dumps(times)}", flush=True)
        rows += [
            ("Chromium, first load after server start (goto → points drawn)", times["first"]),
            ("Chromium, new browser profile, running server", times["new_browser"]),
            ("Chromium, reload (app and plotly.js bundles cached)", times["reload"]),
        ]

    print()
    print(f"Date: {dt.date.today().isoformat()}; device: {device()}; store: {args.trials:,} trials.")
    print(f"Command: `python bench/app_load.py --trials {args.trials} --repeat {args.repeat}`")
    print()
    print("| measurement | median (s) | max (s) | runs |")
    print("|---|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} | {len(values)} |")


if __name__ == "__main__":
    main()
