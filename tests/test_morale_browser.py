"""One annotation round through the real pages in headless Chromium, against uvicorn on 127.0.0.1:
consent -> rate the image's scenarios (with a validation error on the way) -> modality-grounding
check on the disagreeing one -> add a scenario on the agreeing ones -> done. Screenshots of each
step are saved under the test's tmp dir."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from mmscale_core.morale.db import Rating, Scenario
from mmscale_core.morale.server import LOOPBACK, free_port

from browser import chrome_driver
from test_morale_support import Annotator, make_app

pytestmark = pytest.mark.timeout(120)


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://{LOOPBACK}:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_one_annotation_round_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    scores = {"img0-s0": 1.0, "img0-s1": 4.0, "img0-s2": 4.5}  # rating 4 everywhere: s0 disagrees by 3
    app, _, _ = make_app(tmp_path, scores=scores, n_images=1, per_image=3,
                         dataset_kwargs={"setting": "a family kitchen at dinner time"})
    token = Annotator(app, "ann-browser").token
    driver = chrome_driver()
    try:
        with ThreadServer(app) as server:
            assert httpx.get(f"{server.base_url}/healthz", trust_env=False).status_code == 200

            def shot(name: str) -> None:
                path = tmp_path / f"morale-{name}.png"
                assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000

            def wait_for(element_id: str):
                """Clicking a submit button returns before the next page loads: wait for it."""
                return WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, element_id)))

            def check(name: str, value: str) -> None:
                driver.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').click()

            driver.get(f"{server.base_url}/login/{token}")
            wait_for("agree")
            assert "Content warning" in driver.page_source
            shot("1-consent")
            driver.find_element(By.ID, "agree").click()
            driver.find_element(By.ID, "consent-continue").click()

            wait_for("rate-form")
            image = driver.find_element(By.CSS_SELECTOR, ".stimulus img")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 64
            assert image.size["width"] > 400  # the image is shown large
            keys = [el.get_attribute("name")[len("rating_"):]
                    for el in driver.find_elements(By.CSS_SELECTOR, 'input[name^="rating_"][value="1"]')]
            assert len(keys) == 3
            for key in keys[:2]:  # forget the last scenario: the server must say so
                check(f"rating_{key}", "4")
                check(f"modality_{key}", "image")
            driver.find_element(By.ID, "submit-ratings").click()
            errors = WebDriverWait(driver, 15).until(
                ec.presence_of_element_located((By.CSS_SELECTOR, ".error-box"))).text
            assert "Scenario 3: choose a rating" in errors and "Scenario 3: choose the modality" in errors
            assert driver.find_element(By.CSS_SELECTOR, f'input[name="rating_{keys[0]}"][value="4"]').is_selected()
            check(f"rating_{keys[2]}", "4")
            check(f"modality_{keys[2]}", "both")
            shot("2-rate")
            driver.find_element(By.ID, "submit-ratings").click()

            wait_for("reconfirm-form")
            flagged = driver.find_elements(By.CSS_SELECTOR, "article.flagged")
            assert len(flagged) == 1 and "action 0 in scene 0" in flagged[0].text and "1.00" in flagged[0].text
            flag_key = flagged[0].find_element(By.CSS_SELECTOR, 'input[name^="rating_"]').get_attribute("name")
            shot("3-reconfirm")
            check(flag_key, "2")
            check(flag_key.replace("rating_", "modality_"), "both")
            driver.find_element(By.ID, "submit-reconfirm").click()

            wait_for("add-form")
            driver.find_element(By.ID, "scenario").send_keys("leaving the dishes for the host to wash")
            shot("4-add")
            driver.find_element(By.ID, "submit-scenario").click()

            assert "this image is done" in wait_for("done").text
            shot("5-done")
            driver.find_element(By.ID, "next-image").click()
            assert wait_for("finished")  # the one image is done; the new scenario is for others
    finally:
        driver.quit()

    with app.state.db.read() as s:
        ratings = {r.scenario_id: r for r in s.scalars(select(Rating))}
        added = list(s.scalars(select(Scenario).where(Scenario.created_by.is_not(None))))
    assert len(ratings) == 3
    assert (ratings["img0-s0"].initial_rating, ratings["img0-s0"].rating, ratings["img0-s0"].reconfirm) == \
        (4, 2, "revised")
    assert ratings["img0-s1"].flagged is False and ratings["img0-s1"].modality in ("image", "both")
    assert [a.text for a in added] == ["leaving the dishes for the host to wash"]
