"""A real server on a small catalogue and a headless Chromium driving it (Debian's chromium and
chromium-driver; selenium from PyPI). Skipped, with the reason, where no browser is installed.

SOURCELENS_SCREENSHOTS=DIR saves the screenshots the README shows."""

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import live_server, module_services

from app.bootstrap import Services

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@dataclass
class Live:
    url: str
    services: Services


@pytest.fixture(scope="module")
def server(tmp_path_factory, effnet_embedder, catalogue, images_site) -> Iterator[Live]:
    services = module_services(
        tmp_path_factory,
        effnet_embedder,
        anonymous_search=True,
        allowed_hosts=["127.0.0.1"],
        embed_batch_size=16,
        url_allow_hosts=[images_site.removeprefix("http://")],
    )
    assert services.ingest.ingest_manifest(catalogue).added == 28
    with live_server(services) as url:
        yield Live(url, services)
    services.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("no Chromium here: `apt-get install chromium chromium-driver` runs the browser tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    """The browser on a fresh seller page; fails the test on any console error."""
    browser.set_window_size(1280, 1000)
    browser.get(server.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(server.url + "/")
    browser.get_log("browser")  # drop what came before
    yield browser
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
