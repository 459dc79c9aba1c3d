"""Open every page of a built site in headless Chromium and check it as a reader would."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from browser import chrome_driver

IMAGES_JS = """
return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 80), i.complete && i.naturalWidth > 0]);
"""
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"


def check_site(site: Path, screenshot: Path) -> dict[str, int]:
    """Every page loads, every image decodes, every local link resolves; screenshot of index."""
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages, f"no index.html in {site}"
    driver = chrome_driver()
    n_images = n_links = 0
    try:
        for page in pages:
            driver.get(page.resolve().as_uri())
            assert driver.execute_script("return document.readyState") == "complete", page
            assert driver.title.strip(), f"{page}: empty <title>"
            broken = [src for src, ok in driver.execute_script(IMAGES_JS) if not ok]
            assert not broken, f"{page}: images that do not decode: {broken}"
            n_images += len(driver.execute_script(IMAGES_JS))
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
