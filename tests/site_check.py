"""Open every page of a built site in headless Chromium and check it as a reader would."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from browser import chrome_driver

IMAGES_JS = """
return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 80), i.complete && i.naturalWidth > 0]);
"""
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"
# printed lines (a stage's provenance line, say) that run past their box: a reader would scroll sideways
OVERFLOWING_TEXT_JS = """
return Array.from(document.querySelectorAll('pre')).filter(p => p.scrollWidth > p.clientWidth + 1)
  .map(p => p.textContent.slice(0, 80));
"""

# What a notebook dump leaves on a page and a reader should never see. stderr outputs as the
# three renderers mark them (nbconvert's classic and lab templates, Quarto), a pandas HTML repr
# (index column, raw floats), and bare Python reprs / missing values in the visible text.
STDERR_MARKUP = ("output_stderr", "application/vnd.jupyter.stderr", "cell-output-stderr")
RAW_DATAFRAME_MARKUP = 'class="dataframe"'
TEXT_LEAKS = re.compile(r"PosixPath\(|WindowsPath\(|<Figure size|<Axes:|dtype: |<matplotlib\.|object at 0x[0-9a-f]+"
                        r"|\bNaN\b|\bnan\b|Traceback \(most recent call last\)")


def page_leaks(source: str, text: str) -> list[str]:
    """What of a notebook dump a page shows: ``source`` is its HTML, ``text`` what a reader sees."""
    leaks = [f"stderr output ({marker})" for marker in STDERR_MARKUP if marker in source]
    if RAW_DATAFRAME_MARKUP in source:
        leaks.append("a raw DataFrame (use mmscale_core.display.display_table)")
    for match in TEXT_LEAKS.finditer(text):
        context = text[max(0, match.start() - 40):match.end() + 40].replace("\n", " ")
        leaks.append(f"{match.group(0)!r} in '...{context}...'")
    return leaks


def check_site(site: Path, screenshot: Path) -> dict[str, int]:
    """Every page loads, shows no stderr / raw DataFrame / bare repr / NaN (``page_leaks``) and no
    printed line wider than its box, every image decodes, every local link resolves; screenshot of index."""
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages, f"no index.html in {site}"
    driver = chrome_driver()
    n_images = n_links = 0
    try:
        for page in pages:
            driver.get(page.resolve().as_uri())
            assert driver.execute_script("return document.readyState") == "complete", page
            assert driver.title.strip(), f"{page}: empty <title>"
            leaks = page_leaks(driver.page_source, driver.find_element("tag name", "body").text)
            assert not leaks, f"{page}: reads like a notebook dump: {leaks[:5]}"
            overflowing = driver.execute_script(OVERFLOWING_TEXT_JS)
            assert not overflowing, f"{page}: printed text runs past the page width: {overflowing[:3]}"
            images = driver.execute_script(IMAGES_JS)
            broken = [src for src, ok in images if not ok]
            assert not broken, f"{page}: images that do not decode: {broken}"
            n_images += len(images)
            for href in driver.execute_script(LINKS_JS):
                url = urlparse(href)
                if url.scheme != "file":
                    continue
                target = Path(unquote(url.path))
                assert target.exists(), f"{page}: broken link {href}"
                n_links += 1
        driver.get((site / "index.html").resolve().as_uri())
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return {"pages": len(pages), "images": n_images, "links": n_links}
