"""End to end: ``signbridge ui`` started as a user starts it, on a loopback port, loaded in headless Chromium;
a real digits photo is uploaded on the Predict page and its predicted class must appear. A screenshot is saved
(to $SIGNBRIDGE_SCREENSHOTS when set, else the test's temporary folder)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from signbridge.metadata import find_models, read_metadata
from tests.conftest import REPO
from tests.ui.test_pages import photo_with_a_hand


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs Chromium and ChromeDriver (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    return browser, driver


@pytest.fixture
def ui_server(trained_models, tmp_path):
    port = free_port()
    log = open(tmp_path / "ui.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "signbridge", "ui", "--models_dir", str(trained_models),
                               "--configs_dir", str(REPO / "configs"), "--port", str(port), "--address", "127.0.0.1"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError((tmp_path / "ui.log").read_text())
        time.sleep(0.5)
    yield url
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
    log.close()


def test_a_photo_gets_its_class_in_chromium(ui_server, trained_models, tmp_path, hand_model):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    screenshots = Path(os.environ.get("SIGNBRIDGE_SCREENSHOTS", tmp_path))
    screenshots.mkdir(parents=True, exist_ok=True)
    photo = photo_with_a_hand(trained_models)
    metadata = read_metadata(find_models(trained_models)[0])
    try:
        driver.get(ui_server)  # the Predict page is the start page
        wait = WebDriverWait(driver, 120)
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(photo))
        result = wait.until(expected_conditions.presence_of_element_located(
            (By.XPATH, "//*[contains(text(), 'Sign ')]/ancestor::*[@data-testid='stAlertContentSuccess'][1]")))
        time.sleep(1)  # let the drawn photo and the table render before the screenshot
        driver.save_screenshot(str(screenshots / "predict.png"))
        label = result.text.split("Sign", 1)[1].split("·")[0].strip()
    finally:
        driver.quit()
    assert label in metadata["classes"]
    assert label == photo.parent.name, f"{photo} (a training photo of class {photo.parent.name}) shown as {label}"
    assert (screenshots / "predict.png").stat().st_size > 10_000
