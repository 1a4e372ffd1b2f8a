"""The operator console on the demo (``recsys serve``, lexical engine): how fast it loads.

    python benchmarks/console.py [--loads 10] [--states 200]

Starts ``recsys serve`` on a free port (lexical engine, the bundled demo corpus), waits for
its engine, then:

* loads ``/console`` ``--loads`` times in headless Chromium (Debian's chromium and
  chromedriver, as the browser tests use; a fresh profile each time, so nothing is cached)
  and reads the Navigation Timing of each load (``loadEventEnd``) and the moment the first
  state was drawn (``responseEnd`` of the first ``GET /v1/console/state``);
* times ``--states`` calls of ``GET /v1/console/state`` on one keep-alive connection.

Prints medians and maxima. Goal (issue 16): the page loads in under 1 s on the demo.
The delays of a new worker and of a build's progress are measured on the distributed stack
by ``tests/e2e/test_console.py`` (its ``artifacts/timings.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.serve import ServeProcess  # noqa: E402
from tests.e2e.test_browser import CHROMEDRIVER, CHROMIUM, FLAGS  # noqa: E402


def load_times(url: str, loads: int, folder: Path) -> list[tuple[float, float]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    found = []
    for n in range(loads):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={folder / f'profile-{n}'}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            driver.get(f"{url}/console")
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"))
            found.append(tuple(driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const s = performance.getEntriesByType('resource').find(e => e.name.endsWith('/v1/console/state'));"
                "return [n.loadEventEnd - n.startTime, s.responseEnd];")))
        finally:
            driver.quit()
    return found


def state_times(url: str, calls: int) -> list[float]:
    import httpx

    times = []
    with httpx.Client(base_url=url) as client:
        for _ in range(calls):
            started = time.perf_counter()
            client.get("/v1/console/state").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--states", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = ServeProcess(folder, {"RECSYS_ENGINE": "lexical"}).start()
        try:
            server.wait_ready(timeout=300)
            loads = load_times(server.url, args.loads, folder)
            states = state_times(server.url, args.states)
        finally:
            server.stop()
    page = [load for load, _ in loads]
    first = [state for _, state in loads]
    report = {
        "page_load_ms": {"median": round(statistics.median(page), 1), "max": round(max(page), 1)},
        "first_state_drawn_ms": {"median": round(statistics.median(first), 1), "max": round(max(first), 1)},
        "state_endpoint_ms": {"median": round(statistics.median(states), 2),
                              "p95": round(sorted(states)[int(0.95 * len(states)) - 1], 2)},
        "loads": len(page), "state_calls": len(states),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
