"""The factory portal in a real browser: a bad key is refused; a factory key uploads a CSV with two bad rows
and watches the job to its end, the bad rows listed with their reasons; its products are listed and one
deleted."""

import csv
import io
import zipfile

import httpx
import pytest
from helpers import screenshot
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from app.core.access import Principal

pytestmark = pytest.mark.browser


def test_a_factory_uploads_watches_and_tidies_its_catalogue(browser, server, catalogue, tmp_path):
    browser.set_window_size(1280, 1000)
    browser.get(server.url + "/portal")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "key").send_keys("sl_not_a_real_key")
    browser.find_element(By.CSS_SELECTOR, "#signin button").click()
    error = WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "signin-error")))
    assert "Key not recognised" in error.text
    browser.get_log("browser")  # the refused key's 401 is expected

    token = server.services.keys.create("portal test", "factory", ["F009"]).token
    key = browser.find_element(By.ID, "key")
    key.clear()
    key.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#signin button").click()
    WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "signed-in")))

    images = catalogue.parent / "images"
    rows = [
        f"F009,Portal Factory,Dongguan,F009-P{n},Portal product {n},cup,2.5,100,images/{name}"
        for n, name in enumerate(["F001-P001-1.jpg", "F002-P001-1.jpg", "F003-P001-1.jpg"])
    ]
    rows += [
        "F009,Portal Factory,Dongguan,F009-PX,Missing,cup,1,1,images/missing.jpg",
        "F001,Someone Else,Yiwu,F001-PZ,Not mine,cup,1,1,images/F004-P001-1.jpg",
    ]
    header = "factory_id,factory_name,region,product_id,title,category,price,moq,image\n"
    bundle = tmp_path / "catalogue.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.csv", header + "\n".join(rows) + "\n")
        for name in ["F001-P001-1.jpg", "F002-P001-1.jpg", "F003-P001-1.jpg", "F004-P001-1.jpg"]:
            archive.write(images / name, f"images/{name}")
    # A CSV without an image column is caught before it is sent.
    broken = tmp_path / "broken.csv"
    broken.write_text("factory_id,product_id,picture\nF009,F009-P1,https://example.com/a.jpg\n")
    browser.find_element(By.ID, "catalogue").send_keys(str(broken))
    problem = WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "preview-problem")))
    assert "no image column" in problem.text and not browser.find_element(By.ID, "send").is_enabled()
    # The ZIP's manifest is read in the browser: its columns and first rows are shown, and it may be sent.
    browser.find_element(By.ID, "catalogue").send_keys(str(bundle))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "send").is_enabled())
    columns = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#preview-rows th")]
    assert columns == header.strip().split(",")
    first = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#preview-rows tbody tr:first-child td")]
    assert first == rows[0].split(",") and len(browser.find_elements(By.CSS_SELECTOR, "#preview-rows tbody tr")) == 5
    assert not browser.find_element(By.ID, "preview-problem").is_displayed()
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "job-status").text.startswith(("done", "failed")))
    status = browser.find_element(By.ID, "job-status").text
    progress = browser.find_element(By.ID, "progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")
    reasons = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#errors tbody tr")]
    assert status.startswith("done: 5 of 5 rows · 3 added · 2 failed"), status
    assert len(reasons) == 2 and "missing.jpg" in reasons[0] and "may not write factory 'F001'" in reasons[1]
    # The failed rows download as a CSV with the reason beside each row, to fix and send again.
    link = WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "errors-download")))
    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    link.click()
    WebDriverWait(browser, 10).until(lambda d: list(downloads.glob("errors-*.csv")))
    (saved,) = downloads.glob("errors-*.csv")
    failed = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [row["product_id"] for row in failed] == ["F009-PX", "F001-PZ"] and "missing.jpg" in failed[0]["error"]
    screenshot(browser, "portal-job")

    # A search finds one of them; the factory sees it counted (counts only).
    product = server.services.catalog.list_products(factory_id="F009")[0]
    image = server.services.catalog.image_file(product.image_ids[0]).read_bytes()
    httpx.post(f"{server.url}/api/v1/search", files={"image": ("q.jpg", image, "image/jpeg")}, timeout=60)
    server.services.search_counts.flush()
    browser.find_element(By.ID, "factory").send_keys("F009")
    browser.find_element(By.CSS_SELECTOR, "#browse button").click()
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#products tbody tr")) >= 1)
    listed = [row.get_attribute("data-product") for row in browser.find_elements(By.CSS_SELECTOR, "#products tbody tr")]
    found = browser.find_element(By.CSS_SELECTOR, f"#products tr[data-product='{product.id}'] .found").text
    assert found.startswith("1 / 1 confident"), found
    # Edit: the price changes, in the table and in the catalogue.
    browser.find_element(By.CSS_SELECTOR, f"#products tr[data-product='{listed[1]}'] .edit").click()
    price = browser.find_element(By.CSS_SELECTOR, ".edit-form input[name=price]")
    price.clear()
    price.send_keys("7.25")
    browser.find_element(By.CSS_SELECTOR, ".edit-form button[type=submit]").click()
    row_text = f"return document.querySelector(\"#products tr[data-product='{listed[1]}']\")?.textContent || ''"
    WebDriverWait(browser, 10).until(lambda d: "7.25" in d.execute_script(row_text))  # the table is drawn anew
    assert server.services.catalog.get_product(listed[1]).price == 7.25
    browser.execute_script("window.confirm = () => true")
    browser.find_element(By.CSS_SELECTOR, f"#products tr[data-product='{listed[0]}'] .delete").click()
    shown = "return [...document.querySelectorAll('#products tbody tr')].map(r => r.dataset.product)"
    WebDriverWait(browser, 10).until(lambda d: listed[0] not in d.execute_script(shown))
    assert len(browser.execute_script(shown)) == len(listed) - 1
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_many_photos_are_searched_and_the_results_offered_as_csv(browser, server, catalogue, tmp_path):
    browser.get(server.url + "/portal")
    token = server.services.keys.create("batch", "search").token
    browser.execute_script("sessionStorage.clear()")
    browser.get(server.url + "/portal")  # signed out
    WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "key"))).send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#signin button").click()
    WebDriverWait(browser, 10).until(seen.visibility_of_element_located((By.ID, "signed-in")))
    browser.get_log("browser")  # a search key may not list ingest jobs: that 403 is expected
    bundle = tmp_path / "shots.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(catalogue.parent / "images" / "F002-P001-1.jpg", "one.jpg")
        archive.write(catalogue.parent / "images" / "F003-P004-1.jpg", "two.jpg")
    browser.find_element(By.ID, "batch-file").send_keys(str(bundle))
    browser.find_element(By.ID, "batch-send").click()
    link = WebDriverWait(browser, 60).until(seen.visibility_of_element_located((By.ID, "batch-download")))
    assert browser.find_element(By.ID, "batch-status").text.startswith("done: 2 of 2 photos · 0 failed")
    assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download").endswith(".csv")
    (job,) = server.services.queries.recent(Principal.system())[:1]  # what the link holds, read on the server
    answers = server.services.queries.results(job.id, Principal.system())
    assert [(a.name, a.answer["factories"][0]["factory_id"]) for a in answers] == [
        ("one.jpg", "F002"),
        ("two.jpg", "F003"),
    ]
