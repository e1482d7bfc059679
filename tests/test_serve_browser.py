"""The page ``streamser serve`` serves, in a real headless Chromium: its fake microphone plays
speech.wav, the page streams it through an AudioWorklet and the WebSocket, and the estimates
that come back are counted and drawn."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from conftest import DATA_DIR, ROOT_DIR, require_tools
from serve_clients import health, page_url

from streamser.model.runtime import load_model
from streamser.server.config import ServeConfig
from streamser.server.server import BackgroundServer

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")

pytestmark = pytest.mark.system


@pytest.fixture
def browser() -> Iterator[object]:
    require_tools("chromium", "chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={SPEECH}",  # the fake microphone plays it (looped)
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(shutil.which("chromedriver"))))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_streams_the_microphone_and_draws_the_estimates(browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = load_model(TINY, "cpu")
    model.warm_up()
    with BackgroundServer(ServeConfig(port=0), model) as bg:
        driver = browser
        driver.get(page_url(bg.url))  # type: ignore[attr-defined]
        text = driver.find_element  # type: ignore[attr-defined]
        assert "microphone only on" in text(By.TAG_NAME, "body").text  # the HTTPS note
        text(By.ID, "start").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "state").text == "streaming")
        assert health(bg.url)["streams"] == 1
        wait.until(lambda d: int(d.find_element(By.ID, "points").text) >= 3)
        received = int(text(By.ID, "estimates").text)
        drawn = int(text(By.ID, "plot").get_attribute("data-drawn"))
        assert received >= drawn >= 3
        assert "on the server" in text(By.ID, "latency").text
        assert TINY in text(By.ID, "model").text
        assert text(By.ID, "warning").is_displayed() is False  # not the demo model
        assert text(By.ID, "error").is_displayed() is False
        # The plot is not blank: some pixels carry the traces' colours.
        painted = driver.execute_script(  # type: ignore[attr-defined]
            "const c = document.getElementById('plot');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
        )
        assert painted > 500
        text(By.ID, "stop").click()
        wait.until(lambda d: d.find_element(By.ID, "state").text.startswith("closed"))
        wait.until(lambda d: health(bg.url)["streams"] == 0)
