"""The preview page in a real headless Chromium: it loads, a seizure fixture renders its critical card,
the page breaks no Content-Security-Policy rule, and a screenshot is kept in .test-output/."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from live_server import serving
from preview_app import preview_app

pytestmark = pytest.mark.browser

OUTPUT_DIR = Path(__file__).resolve().parents[2] / ".test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when they are missing (tests and CI run as root)."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs apt-get as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env, timeout=900
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromedriver (the process it started) and the browser


def test_preview_renders_the_critical_seizure_card(
    browser: object, make_service: Callable[..., Flask], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    with serving(preview_app(make_service)) as url:
        driver.get(url + "/")  # type: ignore[attr-defined]
        assert "card preview" in driver.title  # type: ignore[attr-defined]
        fixtures = driver.find_elements(By.CSS_SELECTOR, "button.fixture")  # type: ignore[attr-defined]
        assert len(fixtures) >= 10
        driver.find_element(By.ID, "fixture-seizure-epilepsy").click()  # type: ignore[attr-defined]
        card = WebDriverWait(driver, 20).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "article.card.critical"))
        )
        assert "history of seizures" in card.find_element(By.CSS_SELECTOR, ".summary").text
        assert card.find_element(By.CSS_SELECTOR, ".indicator").text.lower() == "critical"
        # Detail rendered from markdown (bold), stylesheet applied (red indicator stripe).
        assert card.find_elements(By.CSS_SELECTOR, ".detail strong")
        assert card.value_of_css_property("border-left-color") in {"rgba(198, 40, 40, 1)", "rgb(198, 40, 40)"}
        reasons = card.find_elements(By.CSS_SELECTOR, ".override select option")
        assert len(reasons) >= 2
        meta = driver.find_element(By.ID, "result-meta").text  # type: ignore[attr-defined]
        assert "cards as expected" in meta

        OUTPUT_DIR.mkdir(exist_ok=True)
        screenshot = OUTPUT_DIR / "preview-seizure-epilepsy.png"
        assert driver.save_screenshot(str(screenshot))  # type: ignore[attr-defined]
        shutil.copy(screenshot, tmp_path / screenshot.name)
        assert screenshot.stat().st_size > 10_000

        # Suggestions are buttons; accepting one says what it would do.
        driver.find_element(By.ID, "fixture-child-38kg-15mg").click()  # type: ignore[attr-defined]
        button = WebDriverWait(driver, 20).until(
            expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button.suggestion"))
        )
        label = button.text
        button.click()
        assert f"Accepted: {label}" in driver.find_element(By.CSS_SELECTOR, ".card .status").text  # type: ignore[attr-defined]
        assert driver.save_screenshot(str(OUTPUT_DIR / "preview-suggestions.png"))  # type: ignore[attr-defined]

        # A Content-Security-Policy violation or a script error would be logged as SEVERE.
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
        assert not severe, severe
