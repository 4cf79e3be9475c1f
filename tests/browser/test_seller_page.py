"""The seller page in a real browser: search by file and paste, the crop box and subjects, filters and the
URL, paging, more-like-this, the factory page, the no-match state, errors, a phone-sized screen."""

import base64
import runpy
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import jpeg_bytes, screenshot
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from app.catalog.types import NewProduct
from app.core.access import Principal
from app.demo.sample_catalogue import Design, render_product

pytestmark = pytest.mark.browser
WAIT = 30


# Keeps the text fields of every form the page sends, in window.__bodies.
RECORD_FORMS = """window.__bodies = []; const send = window.fetch;
window.fetch = (u, o) => {
  if (o && o.body instanceof FormData) window.__bodies.push(
    [...o.body.entries()].filter(e => typeof e[1] == 'string'));
  return send(u, o);
};"""


def wait(driver, condition, timeout: float = WAIT):
    return WebDriverWait(driver, timeout).until(condition)


def image_path(catalogue: Path, name: str) -> str:
    return str(catalogue.parent / "images" / name)


def write(tmp_path: Path, image: Image.Image, name: str = "photo.jpg") -> str:
    path = tmp_path / name
    path.write_bytes(jpeg_bytes(image))
    return str(path)


def alert_shown(driver) -> bool:
    return driver.find_element(By.ID, "alert").get_attribute("hidden") is None


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def results_for(driver, before: str = "") -> list[str]:
    """Waits for a finished search (a status other than `before` and not "Searching…"); the factory ids."""
    wait(driver, lambda d: status(d) not in (before, "Searching…", "") or alert_shown(d))
    assert not alert_shown(driver), driver.find_element(By.ID, "alert").text
    return [
        card.get_attribute("data-factory")
        for card in driver.find_elements(By.CSS_SELECTOR, "#cards .card[data-factory]")
    ]


def choose(driver, path: str) -> list[str]:
    before = status(driver)
    driver.find_element(By.ID, "file").send_keys(path)
    wait(driver, lambda d: d.find_element(By.ID, "photo").get_attribute("hidden") is None)
    return results_for(driver, before)


def url_params(driver) -> dict[str, list[str]]:
    return parse_qs(urlparse(driver.current_url).query)


def test_the_empty_page_invites_a_photo(page):
    drop = page.find_element(By.ID, "drop")
    assert drop.is_displayed() and "Drop, paste or choose a photo" in drop.text
    assert page.find_elements(By.CSS_SELECTOR, "#cards .card") == []
    favicon = page.execute_script("return fetch('/static/favicon.svg').then(r => r.status)")
    assert favicon == 200
    screenshot(page, "seller-empty")


def test_a_photo_finds_its_factory_with_evidence_in_words(page, catalogue):
    factories = choose(page, image_path(catalogue, "F002-P003-1.jpg"))
    assert factories and factories[0] == "F002", (
        status(page),
        page.get_log("browser"),
        page.find_element(By.ID, "results").text,
    )
    card = page.find_element(By.CSS_SELECTOR, "#cards .card")
    text = card.text
    assert "same product" in text and "% similar" in text and "matching points" in text
    assert "Yiwu" in text or "region" in text.lower() or card.find_element(By.CSS_SELECTOR, ".meta").text
    assert "price" in text and "MOQ" in text
    assert card.find_elements(By.CSS_SELECTOR, ".outline")  # the matched region, outlined without hovering
    assert status(page).startswith("Factories 1–")
    screenshot(page, "seller-result")


def test_a_pasted_screenshot_searches_like_a_file(page, catalogue):
    data = base64.b64encode(Path(image_path(catalogue, "F003-P001-1.jpg")).read_bytes()).decode()
    page.execute_script(
        """const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "pasted.jpg", {type: "image/jpeg"}));
        document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer}));""",
        data,
    )
    assert results_for(page)[0] == "F003"


def test_a_file_that_is_not_an_image_is_refused_without_a_request(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.find_element(By.ID, "file").send_keys(str(notes))
    alert = wait(page, seen.visibility_of_element_located((By.ID, "alert")))
    assert "not an image" in alert.text
    requests = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert not any("/api/v1/search" in name or "/api/v1/subjects" in name for name in requests)


def test_subjects_and_the_crop_box_choose_what_is_searched(page, catalogue, tmp_path):
    left = Image.open(image_path(catalogue, "F001-P002-1.jpg"))
    right = Image.open(image_path(catalogue, "F004-P003-1.jpg")).resize((220, 220))
    photo = Image.new("RGB", (760, 420), (255, 255, 255))
    photo.paste(left.crop((12, 12, left.width - 12, left.height - 12)), (20, 40))
    photo.paste(right.crop((6, 6, 214, 214)), (520, 110))
    first = choose(page, write(tmp_path, photo))
    chips = page.find_elements(By.CSS_SELECTOR, "#subjects .chip")
    assert len(chips) == 2 and chips[0].get_attribute("aria-pressed") == "true"
    assert first[0] == "F001"
    before = status(page)
    chips[1].click()
    assert results_for(page, before)[0] == "F004"
    # Dragging the box sends its new place as the search's bbox.
    crop = page.find_element(By.ID, "crop")
    box_before = crop.get_attribute("aria-valuetext")
    page.execute_script(RECORD_FORMS)
    ActionChains(page).click_and_hold(crop).move_by_offset(-30, -10).release().perform()
    wait(page, lambda d: d.execute_script("return window.__bodies.length") >= 1)
    assert crop.get_attribute("aria-valuetext") != box_before
    sent = dict(page.execute_script("return window.__bodies[0]"))
    assert "bbox" in sent and len(sent["bbox"].split(",")) == 4
    # The keyboard does the same: Shift+arrows resize.
    crop.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT)
    wait(page, lambda d: d.execute_script("return window.__bodies.length") >= 2)


def test_filters_come_from_the_catalogue_and_live_in_the_url(page, catalogue):
    choose(page, image_path(catalogue, "F002-P001-1.jpg"))
    options = [o.get_attribute("value") for o in page.find_elements(By.CSS_SELECTOR, "#category option")]
    assert "" in options and len(options) > 2
    category = options[1]
    before = status(page)
    page.find_element(By.CSS_SELECTOR, f"#category option[value='{category}']").click()
    results_for(page, before)
    assert url_params(page)["category"] == [category]
    page.refresh()
    wait(page, lambda d: d.find_element(By.ID, "category").get_attribute("value") == category)
    results_for(page)  # the photo came back from sessionStorage, and the search ran again


def test_paging_and_back(page, catalogue, server):
    page.get(server.url + "/?per=1&weak=1")
    choose(page, image_path(catalogue, "F001-P001-1.jpg"))
    assert "Page 1 of" in page.find_element(By.ID, "pager").text
    before = status(page)
    page.find_element(By.ID, "next").click()
    results_for(page, before)
    assert url_params(page)["page"] == ["2"] and status(page).startswith("Factories 2–2 of")
    page.back()
    wait(page, lambda d: "page" not in url_params(d))
    wait(page, lambda d: status(d).startswith("Factories 1–1 of"))


def test_more_like_this_and_the_factory_page(page, catalogue):
    choose(page, image_path(catalogue, "F003-P002-1.jpg"))
    before = status(page)
    page.find_element(By.CSS_SELECTOR, "#cards .match .similar").click()
    results_for(page, before)
    assert "like" in url_params(page) and status(page).startswith("Factories with products like that image")
    page.find_element(By.CSS_SELECTOR, "#cards .factory-link").click()
    wait(page, seen.visibility_of_element_located((By.CSS_SELECTOR, ".factory-page")))
    assert "factory" in url_params(page) and len(page.find_elements(By.CSS_SELECTOR, ".factory-page .product")) == 4
    screenshot(page, "factory-page")
    page.find_element(By.ID, "back").click()
    wait(page, seen.visibility_of_element_located((By.ID, "cards")))
    assert "factory" not in url_params(page)


def test_no_confident_match_explains_and_offers_weak_matches(page, tmp_path):
    stranger = render_product(Design(seed=424_242, palette=((20, 190, 80), (10, 10, 120), (240, 240, 20))), size=320)
    assert choose(page, write(tmp_path, stranger)) == []
    banner = page.find_element(By.ID, "banner")
    assert banner.is_displayed() and "No confident match" in banner.text and "another view" in banner.text
    before = status(page)
    page.find_element(By.ID, "show-weak").click()
    assert results_for(page, before)
    assert "weak match" in page.find_element(By.CSS_SELECTOR, "#cards .card .level").text


def test_a_server_error_keeps_the_photo_and_offers_retry(page, catalogue):
    choose(page, image_path(catalogue, "F001-P001-1.jpg"))
    page.execute_script(
        "const send = window.fetch; window.fetch = (u, o) => String(u).includes('/search') ? "
        "Promise.resolve(new Response(JSON.stringify({detail: 'boom'}), {status: 503})) : send(u, o);"
    )
    page.find_element(By.ID, "go").click()
    alert = wait(page, seen.visibility_of_element_located((By.ID, "alert")))
    assert "boom" in alert.text and page.find_element(By.ID, "retry").is_displayed()
    assert page.find_element(By.ID, "preview").is_displayed()
    page.get_log("browser")  # the stubbed 503 is not the page's error


def test_a_rate_limited_search_counts_down(page, catalogue):
    choose(page, image_path(catalogue, "F001-P001-1.jpg"))
    page.execute_script(
        "const send = window.fetch; window.fetch = (u, o) => String(u).includes('/search') ? Promise.resolve("
        "new Response(JSON.stringify({detail: 'slow down'}), {status: 429, headers: {'Retry-After': '2'}}))"
        " : send(u, o);"
    )
    page.find_element(By.ID, "go").click()
    alert = wait(page, seen.visibility_of_element_located((By.ID, "alert")))
    assert "try again in 0:0" in alert.text and not page.find_element(By.ID, "go").is_enabled()
    wait(page, lambda d: d.find_element(By.ID, "go").is_enabled(), timeout=6)


def test_a_phone_sized_screen_fits_without_sideways_scrolling(page, catalogue):
    page.set_window_size(390, 844)
    choose(page, image_path(catalogue, "F002-P003-1.jpg"))
    width, client = page.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width <= client
    small = page.execute_script(
        "return [...document.querySelectorAll('button, input, select, .button')].filter(e => e.offsetParent)"
        ".filter(e => !e.classList.contains('remove') && e.type !== 'checkbox' && e.type !== 'file')"
        ".filter(e => e.getBoundingClientRect().height < 44).map(e => e.id || e.className || e.tagName)"
    )
    assert small == []
    screenshot(page, "seller-phone")
    # The filters wait in a full-screen sheet: opened by one button, which then counts the filters chosen.
    assert not page.find_element(By.ID, "filters").is_displayed()
    page.find_element(By.ID, "filters-open").click()
    sheet = page.find_element(By.ID, "filters")
    assert sheet.is_displayed() and (sheet.rect["width"], sheet.rect["height"]) == (
        390,
        page.execute_script("return innerHeight"),
    )
    assert page.switch_to.active_element.get_attribute("id") == "filters-close"
    category = page.find_elements(By.CSS_SELECTOR, "#category option")[1].get_attribute("value")
    before = status(page)
    page.find_element(By.CSS_SELECTOR, f"#category option[value='{category}']").click()
    page.find_element(By.ID, "filters-close").click()
    results_for(page, before)
    assert not sheet.is_displayed() and page.find_element(By.ID, "filters-open").text == "Filters (1)"
    assert url_params(page)["category"] == [category]
    page.find_element(By.ID, "filters-open").send_keys(Keys.ENTER)
    assert sheet.is_displayed()
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not sheet.is_displayed() and page.switch_to.active_element.get_attribute("id") == "filters-open"


def test_every_control_is_reachable_by_keyboard(page):
    reached = set()
    body = page.find_element(By.TAG_NAME, "body")
    for _ in range(25):
        body.send_keys(Keys.TAB)
        reached.add(page.execute_script("return document.activeElement.id || document.activeElement.className"))
    assert {"drop", "text", "region", "category", "min_price", "max_price", "max_moq", "weak", "go"} <= reached


def test_a_photo_by_its_web_address(page, images_site):
    before = status(page)
    page.find_element(By.ID, "image-url").send_keys(f"{images_site}/F003-P004-1.jpg")
    page.find_element(By.CSS_SELECTOR, "#by-url button").click()
    assert results_for(page, before)[0] == "F003"
    assert images_site in page.find_element(By.ID, "remote").text
    page.find_element(By.ID, "clear").click()
    page.find_element(By.ID, "image-url").send_keys("not a web address")
    page.find_element(By.CSS_SELECTOR, "#by-url button").click()
    assert "not a web address" in wait(page, seen.visibility_of_element_located((By.ID, "alert"))).text


def test_each_product_of_a_photo_is_answered_and_more_options_reach_the_request(page, catalogue, tmp_path):
    left = Image.open(image_path(catalogue, "F001-P001-1.jpg"))
    right = Image.open(image_path(catalogue, "F003-P002-1.jpg")).resize((200, 200))
    photo = Image.new("RGB", (700, 400), (255, 255, 255))
    photo.paste(left.crop((10, 10, left.width - 10, left.height - 10)), (20, 40))
    photo.paste(right.crop((5, 5, 195, 195)), (480, 100))
    choose(page, write(tmp_path, photo))
    before = status(page)
    page.find_element(By.ID, "each").click()
    wait(page, lambda d: status(d) != before and "products in the photo" in status(d))
    sections = page.find_elements(By.CSS_SELECTOR, "#cards section.subject")
    assert len(sections) == 2 and url_params(page)["each"] == ["1"]
    firsts = [s.find_element(By.CSS_SELECTOR, ".card").get_attribute("data-factory") for s in sections]
    assert firsts == ["F001", "F003"]
    # More options: each one lands in the URL and in the request.
    page.find_element(By.ID, "each").click()  # back to the chosen product
    results_for(page, status(page))
    page.execute_script(RECORD_FORMS)
    page.find_element(By.CSS_SELECTOR, "#more summary").click()
    page.find_element(By.ID, "noverify").click()
    wait(page, lambda d: d.execute_script("return window.__bodies.length") >= 1)
    sent = dict(page.execute_script("return window.__bodies[window.__bodies.length - 1]"))
    assert sent["verify"] == "false" and url_params(page)["noverify"] == ["1"]


def test_a_watched_product_lists_a_factory_that_matches_later(page, catalogue, server):
    """Saved searches from the page: without a key it says what is needed; with one, the chosen product is
    watched, a catalogue image added later is listed as a match, and it can be unwatched."""
    photo = image_path(catalogue, "F003-P002-1.jpg")
    choose(page, photo)
    page.find_element(By.ID, "watch-open").click()
    name = page.find_element(By.ID, "watch-name")
    name.clear()
    name.send_keys("Blue bottle")
    page.find_element(By.ID, "watch-save").click()
    wait(page, alert_shown)
    assert "needs an API key" in page.find_element(By.ID, "alert").text
    assert page.find_element(By.ID, "key-box").get_attribute("open") is not None

    key = server.services.keys.create("watcher", "search")
    page.find_element(By.ID, "key").send_keys(key.token, Keys.TAB)  # change: stored for this tab
    page.find_element(By.ID, "watch-save").click()
    wait(page, lambda d: "Watching “Blue bottle”" in d.find_element(By.ID, "watch-status").text)
    (saved,) = server.services.saved.recent(server.services.keys.authenticate(key.token))
    assert saved.name == "Blue bottle" and saved.matches == 0

    admin = Principal.system()
    server.services.catalog.create_product(NewProduct(id="F001-WATCH", factory_id="F001", title="Watched"), admin)
    try:
        server.services.catalog.add_image("F001-WATCH", Path(photo).read_bytes(), "test", admin)
        assert server.services.saved.check_all() >= 1
        page.refresh()
        wait(page, lambda d: d.find_element(By.ID, "watched").is_displayed())
        page.find_element(By.CSS_SELECTOR, "#watched summary").click()
        show = page.find_element(By.CSS_SELECTOR, f"#watched-list li[data-saved='{saved.id}'] .show-matches")
        assert show.text == "1 new match"
        show.click()
        match = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, ".watched-matches li"))
        assert "F001" in match.text and "F001-WATCH" in match.text and "same product" in match.text
        page.find_element(By.CSS_SELECTOR, f"#watched-list li[data-saved='{saved.id}'] .stop").click()
        wait(page, lambda d: not d.find_element(By.ID, "watched").is_displayed())
        assert server.services.saved.recent(admin) == []
    finally:
        server.services.catalog.delete_product("F001-WATCH", admin)


@pytest.mark.parametrize("page_path", ["/", "/portal"])
def test_the_page_loads_light_and_from_this_server_only(browser, server, page_path):
    """What Chromium fetches to show each page is the list scripts/page_weight.py weighs, all from this server
    (no CDN), within a budget of 100 KiB before any photo."""
    weigh = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "page_weight.py"))
    browser.get(server.url + page_path)
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    loaded = browser.execute_script(
        "return [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]"
        ".map(e => [e.name, e.decodedBodySize])"
    )
    paths = {urlparse(name).path for name, _ in loaded}
    assert {urlparse(name).netloc for name, _ in loaded} == {urlparse(server.url).netloc}
    expected = {
        f"/static/{p.relative_to(weigh['WEB']).as_posix()}"
        for p in weigh["page_files"]("portal.html" if page_path == "/portal" else "index.html")[1:]
    }
    icon = {"/static/favicon.svg"}  # Chromium fetches the icon apart from the page's resources, and caches it
    assert {p for p in paths if p.startswith("/static/")} - icon == expected - icon
    assert sum(size for name, size in loaded if not urlparse(name).path.startswith("/api/")) < 100 * 1024
