"""Page weight of the seller page and the factory portal: every file the browser loads before the first photo
(the HTML, the style sheet, the icon and each JavaScript module it imports), raw and gzip-compressed; one line
per page. Catalogue images and API answers are not counted: they depend on the search.

    python scripts/page_weight.py

The browser tests check the same in Chromium (test_the_page_loads_light): what it fetched equals this list.
"""

import gzip
import re
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "app" / "web"
STATIC = re.compile(r'(?:href|src)="/static/([^"]+)"')
IMPORT = re.compile(r'from\s+"\./([^"]+)"')


def page_files(page: str) -> list[Path]:
    """The page and what it loads: static links in the HTML, then JS imports, transitively."""
    found = [WEB / page]
    queue = [WEB / name for name in STATIC.findall((WEB / page).read_text())]
    while queue:
        path = queue.pop(0)
        if path in found:
            continue
        found.append(path)
        if path.suffix == ".js":
            queue.extend(path.parent / name for name in IMPORT.findall(path.read_text()))
    return found


def main() -> None:
    for title, page in (("seller page", "index.html"), ("factory portal", "portal.html")):
        files = page_files(page)
        raw = sum(path.stat().st_size for path in files)
        packed = sum(len(gzip.compress(path.read_bytes(), 9)) for path in files)
        print(f"page weight: {title} {raw / 1024:.1f} KiB in {len(files)} files ({packed / 1024:.1f} KiB gzip), no CDN")


if __name__ == "__main__":
    main()
