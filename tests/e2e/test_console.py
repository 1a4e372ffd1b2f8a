"""The operator console in headless Chromium, on the end-to-end stack.

The stack of deploy/compose.yml on loopback (gunicorn, two worker pools with their own
metrics ports, lexical engine, a publications backend that answers each page slowly so
a build's progress can be watched). The page must show both pools, run a search with
highlighted evidence and "more like this", start a build with the token and show its
progress and outcome, and show a restarted pool's new processes; no request may leave
this host (Chromium's network log is checked, and every other host is unresolvable).

The test keeps a screenshot and the timings it saw (page load, a new worker, a build's
first progress) under its tmp dir (``artifacts/``, printed); with
``RECSYS_CONSOLE_SCREENSHOT=<path>`` it also writes the screenshot there (the one in
docs/). Timings are recorded, never asserted (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.backend import PublicationsBackend, demo_corpus
from tests.e2e.stack import TOKEN, Stack, flush_redis
from tests.e2e.test_browser import CHROMEDRIVER, CHROMIUM, FLAGS, _require
from tests.support.processes import wait_until
from tests.support.proxy import TcpProxy, via_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WAIT = 60
#: Seconds the backend takes per page of 20 publications (a build's fetch takes a few seconds).
PAGE_DELAY = 0.3


class SlowBackend(PublicationsBackend):
    def page(self, number: int) -> dict[str, Any]:
        time.sleep(PAGE_DELAY)
        return super().page(number)


@pytest.fixture(scope="module")
def backend() -> Iterator[PublicationsBackend]:
    server = SlowBackend(demo_corpus(), page_size=20)
    with server.serve():
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str, redis_url: str, rabbitmq_proxy: TcpProxy,
          redis_proxy: TcpProxy, backend: PublicationsBackend) -> Iterator[Stack]:
    flush_redis(redis_url)
    stack = Stack(tmp_path_factory.mktemp("console-stack"), broker_url=via_proxy(rabbitmq_url, rabbitmq_proxy),
                  results_url=via_proxy(redis_url, redis_proxy), source=backend.url, engine="lexical")
    try:
        stack.start(scheduler=False)
        # The API's start step builds the first engine.
        generation = wait_until(lambda: (engine := stack.engine()) and engine["generation"], timeout=240,
                                what="the first engine")
        stack.wait_converged(generation)
        yield stack
    finally:
        stack.close()
        flush_redis(redis_url)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Any host but this one is unresolvable; the network log below tells whether one was tried.
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def pool_metrics(stack: Stack, name: str) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_ports[name]}/metrics", timeout=10).text
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_console_shows_the_cluster_searches_and_builds(stack: Stack, browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders its sections at every refresh: read them in one script each.
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
    machines_js = ("return [...document.querySelectorAll('.machine')].map(m => ({dir: m.dataset.dataDir, "
                   "pids: [...m.querySelectorAll('tr.worker')].map(r => r.dataset.pid)}))")
    timings: dict[str, float] = {}
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()

    # The page loads, and shows the engine and both pools with two processes each.
    engine = stack.engine()
    assert engine is not None
    generation = engine["generation"]
    browser.get(f"{stack.api_url}/console")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    timings["page_load_ms"] = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;")
    timings["first_state_ms"] = browser.execute_script(
        "const r = performance.getEntriesByType('resource').find(e => e.name.endsWith('/v1/console/state'));"
        "return r ? r.responseEnd : null;")
    machines = wait.until(lambda d: len(found := d.execute_script(machines_js)) == 2 and found)
    assert sorted(Path(m["dir"]).name for m in machines) == ["machine-a", "machine-b"]
    assert [len(m["pids"]) for m in machines] == [2, 2]
    assert browser.find_element(By.ID, "converged").text == "converged"
    card = browser.execute_script("const c = document.querySelector('#engine .card');"
                                  "return {generation: c.dataset.generation, text: c.innerText};")
    assert card["generation"] == str(generation)
    assert engine["version"] in card["text"] and f"publications\n{engine['publications']}" in card["text"]

    # A search shows titles, scores and highlighted evidence; "more like this" searches by id.
    publication = next(iter(demo_corpus()))
    search = browser.find_element(By.ID, "search-input")
    search.send_keys(publication["title"] + Keys.ENTER)
    results = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result"))
    assert publication["id"] in [r.get_attribute("data-id") for r in results[:3]]
    assert results[0].find_elements(By.CSS_SELECTOR, ".evidence mark"), "the matched words are highlighted"
    assert results[0].find_element(By.CSS_SELECTOR, ".score").text
    results[0].find_element(By.CSS_SELECTOR, ".more-like-this").click()
    wait.until(lambda d: "“" in d.find_element(By.ID, "search-status").text)

    # The build button asks for the token, and the build shows its progress, then its outcome.
    browser.find_element(By.ID, "build-button").click()
    token = wait.until(lambda d: d.find_element(By.ID, "token-input").is_displayed()
                       and d.find_element(By.ID, "token-input"))
    token.send_keys(TOKEN)
    clicked = time.time()
    browser.find_element(By.ID, "token-ok").click()
    notice = wait.until(lambda d: "build started" in (t := d.find_element(By.ID, "notice").text) and t)
    task_id = notice.rsplit(" ", 1)[1]
    label = wait.until(lambda d: d.execute_script(
        f"const b = document.querySelector(\".build-running[data-task='{task_id}'] .bar\"); return b && b.textContent"))
    shown = time.time()
    assert label.split(":")[0] in {"fetch", "split", "encode", "index"}, label
    progress = stack.http.get(f"/v1/tasks/{task_id}").json().get("progress")
    timings["build_click_to_progress_s"] = round(shown - clicked, 2)
    if progress:
        timings["build_progress_started_to_shown_s"] = round(shown - _seconds(progress["started_at"]), 2)
    browser.save_screenshot(str(artifacts / "console-build.png"))
    wait = WebDriverWait(browser, 120, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    outcome = wait.until(lambda d: d.execute_script(
        f"const r = document.querySelector(\"#build-history tr[data-task='{task_id}']\"); return r && r.className"))
    assert "outcome-succeeded" in outcome
    stack.wait_converged(generation + 1)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#engine .card").get_attribute("data-generation")
               == str(generation + 1))

    # A restarted pool's new processes appear (and its old ones go).
    pool = stack.pools["b"]

    def shown_pids(d: Any) -> list[str]:
        return [pid for machine in d.execute_script(machines_js) if Path(machine["dir"]).name == "machine-b"
                for pid in machine["pids"]]

    old = set(shown_pids(browser)) | {str(pid) for pid in pool.pids()}
    pool.stop()
    pool.start()
    started = time.time()

    def first_new(d: Any) -> list[str] | None:
        return [pid for pid in shown_pids(d) if pid not in old] or None

    def settled(d: Any) -> list[str] | None:
        pids = shown_pids(d)
        return pids if len(pids) == 2 and not set(pids) & old else None

    try:
        fresh = wait.until(first_new)
        appeared = time.time()
        wait.until(settled)
    except TimeoutException:
        status = browser.find_element(By.ID, "status").text
        raise AssertionError(f"the restarted pool's processes did not appear: page says {status!r}, shows "
                             f"{browser.execute_script(machines_js)}, old pids {old}; "
                             f"browser log {browser.get_log('browser')}") from None
    timings["pool_start_to_first_worker_shown_s"] = round(appeared - started, 2)
    beats = {str(w["pid"]): w for m in stack.http.get("/v1/console/state").json()["cluster"]["machines"]
             for w in m["workers"]}
    timings["worker_heartbeat_to_shown_s"] = round(appeared - _seconds(beats[fresh[0]]["started_at"]), 2)

    # Each pool serves its own metrics, its two processes added up (the restarted pool's
    # metrics process may still be starting: a scraper retries, and so does this).
    stack.wait_converged(generation + 1)
    for name in ("a", "b"):
        wait_until(lambda name=name: pool_metrics(stack, name).get("recsys_worker_processes") == 2,
                   what=f"pool {name}'s metrics to count its 2 processes", timeout=30)

    # Nothing but this API was asked for anything.
    api = urlsplit(stack.api_url).netloc
    urls = [url for url in requested_urls(browser) if urlsplit(url).scheme in {"http", "https", "ws", "wss"}]
    assert f"{stack.api_url}/v1/console/state" in urls and f"{stack.api_url}/console/assets/console.js" in urls
    assert all(urlsplit(url).netloc == api for url in urls), [u for u in urls if urlsplit(u).netloc != api]

    browser.save_screenshot(str(artifacts / "console.png"))
    (artifacts / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    print(f"console artifacts in {artifacts}: {timings}")
    target = os.environ.get("RECSYS_CONSOLE_SCREENSHOT")
    if target:
        shutil.copyfile(artifacts / "console.png", target)
