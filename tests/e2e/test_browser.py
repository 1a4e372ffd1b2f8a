"""/docs in a real browser: headless Chromium runs "Try it out" on POST /v1/recommendations.

The API is ``recsys serve`` (lexical engine, sample corpus). Debian's ``chromium`` and
``chromium-driver`` are driven through selenium with explicit paths, so nothing is
downloaded. Skipped when they are absent, failed under CI=true (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve import ServeProcess, write_sample_corpus

pytestmark = pytest.mark.browser

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("RECSYS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RECSYS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,2000",
)
#: Seconds the page may take to show an element or an answer.
WAIT = 60
QUERY = {"text": "Which radio telescope found pulsars in globular clusters?", "k": 3}


def _require(path: str, package: str) -> None:
    if shutil.which(path) is None:
        reason = f"{path} is not installed (Debian package {package}; .ci/run installs it)"
        if IN_CI:
            pytest.fail(reason + ", and CI=true requires it", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    settings = {"RECSYS_ENGINE": "lexical", "RECSYS_SOURCE": str(write_sample_corpus(tmp_path / "corpus.jsonl"))}
    process = ServeProcess(tmp_path, settings).start()
    try:
        process.wait_ready(timeout=120)
        yield process
    finally:
        process.stop()


def test_try_it_out_on_post_recommendations(browser: Any, server: ServeProcess) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{server.url}/docs")

    # The operation's block, found by its method and path; open it.
    block_path = ("//div[contains(@class, 'opblock-post')]"
                  "[.//*[contains(@class, 'opblock-summary-path') and @data-path='/v1/recommendations']]")
    block = wait.until(ready.presence_of_element_located((By.XPATH, block_path)))
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()

    # "Try it out", our request body, "Execute".
    wait.until(ready.element_to_be_clickable((By.XPATH, block_path + "//button[contains(@class, 'try-out__btn')]"))
               ).click()
    body = wait.until(ready.visibility_of_element_located((By.XPATH, block_path + "//textarea[contains(@class, "
                                                                                  "'body-param__text')]")))
    body.clear()
    body.send_keys(json.dumps(QUERY))
    # The optional Prefer header starts empty (respond-async would answer 202 with a task),
    # so a plain "Execute" waits for the recommendations.
    prefers = block.find_elements(By.CSS_SELECTOR, "tr[data-param-name='Prefer'] input")
    assert len(prefers) == 1 and prefers[0].get_attribute("value") == ""
    block.find_element(By.CSS_SELECTOR, "button.execute").click()

    # The live response: status 200 and a body with recommendations.
    status_path = (block_path + "//table[contains(@class, 'live-responses-table')]"
                                "/tbody//td[contains(@class, 'response-col_status')]")
    status = wait.until(ready.visibility_of_element_located((By.XPATH, status_path)))
    wait.until(lambda _: status.text.strip() != "")
    response_body = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table .response-col_description pre.microlight"
    ).text
    assert status.text.strip().startswith("200"), f"Swagger UI shows {status.text!r}: {response_body}"
    result = json.loads(response_body)
    assert result["engine"]["name"] == "lexical"
    assert result["recommendations"][0]["publication_id"] == "astro-04"
    assert len(result["recommendations"]) == QUERY["k"]
