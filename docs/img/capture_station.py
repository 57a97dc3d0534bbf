"""Screenshots of the central station (docs/img/station.png, station_detail.png) from a live run.

Start a broker, the agent with the station enabled, and the simulator; then, a few minutes in, run this. The
screenshots in docs/STATION.md came from (2-core machine shared with other jobs, everything under ``nice -n 10``)::

    mosquitto -c mosq.conf &                  # listener 18931 127.0.0.1, allow_anonymous true, persistence false
    OMP_NUM_THREADS=1 python main.py run --config live.yaml &
        # live.yaml: mqtt.url mqtt://127.0.0.1:18931; alerts.store_path a fresh file; http.port 0;
        # station: {enabled: true, port: 18090, users: {nurse.kim: <station hash-password>},
        #           beds: {sim-0001: 12A, sim-0002: 12B, sim-0003: 12C, sim-0004: "14", sim-0005: "15"}};
        # llm.num_threads: 1 (with torch's default threads on a busy 2-core machine forecasts stalled for minutes)
    python main.py simulate --patients 5 --speed 2 --minutes 12 --seed 1 --url mqtt://127.0.0.1:18931 &
    # about 5 minutes after the stream starts (bed 12A's "AF now" comes about 4:45 in):
    ECGCAST_STATION_PASSWORD=... python docs/img/capture_station.py --detail sim-0001 --forecast-window

It signs in with headless Chromium (Debian's chromium and chromedriver, as tests/agent/station does), shoots the
page (up to ``--max-height``), then one patient's detail view: ``--detail``, else the patient at the top of the
alarm list, else the first tile. Nothing is staged: the page shows what the agent published.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", "--mute-audio")

SCROLL_TO_WINDOW = """
const w = station.detailData && station.detailData.forecast_window;
if (w && w.end + 5 > station.detailLo) { station.detailEnd = w.end + 5; renderDetail(); }
"""


def _wait(predicate: Any, timeout: float = 30.0) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        time.sleep(0.2)
    raise TimeoutError("the station page did not get there in time")


PAGE_HEIGHT = "return document.documentElement.scrollHeight"
DETAIL_HEIGHT = "return document.getElementById('detail').scrollHeight"


def _shoot(driver: Any, path: Path, width: int, max_height: int, height_js: str = PAGE_HEIGHT) -> None:
    """The page (up to ``max_height``) at ``width`` CSS px, saved as a 256-colour PNG when Pillow is there."""
    for _ in range(3):  # the layout reflows at a new size: settle on the content's own height
        chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))  # headless has some
        height = min(max(int(driver.execute_script(height_js)), 600), max_height)
        driver.set_window_size(width, height + chrome)
        time.sleep(2.0)  # a push or two at the new size
    driver.save_screenshot(str(path))
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:18090")
    parser.add_argument("--user", default="nurse.kim")
    parser.add_argument("--detail", help="patient id for the detail view")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--max-height", type=int, default=1500)
    parser.add_argument("--forecast-window", action="store_true", help="scroll the detail strip to the forecast's end")
    args = parser.parse_args()
    password = os.environ["ECGCAST_STATION_PASSWORD"]

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*FLAGS, f"--window-size={args.width},1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.url + "/")
        _wait(lambda: driver.find_element(By.ID, "username"))
        driver.find_element(By.ID, "username").send_keys(args.user)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "sign-in").click()
        _wait(lambda: driver.find_element(By.ID, "conn").text == "Live")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".tile .strip"))
        time.sleep(6.0)  # strips fill, HR is measured
        args.out.mkdir(parents=True, exist_ok=True)
        _shoot(driver, args.out / "station.png", args.width, args.max_height)
        alarms = driver.find_elements(By.CSS_SELECTOR, "#alarm-list-items li")
        tiles = driver.find_elements(By.CSS_SELECTOR, ".tile")
        pid = args.detail or (alarms or tiles)[0].get_attribute("data-pid")
        driver.set_window_size(args.width, 1000)
        driver.find_element(By.ID, f"tile-{pid}").find_element(By.CSS_SELECTOR, ".open-detail").click()
        _wait(lambda: driver.find_element(By.ID, "detail").is_displayed())
        time.sleep(6.0)  # the detail strip and the history load
        if args.forecast_window:  # as a nurse would drag the slider: back to where the latest forecast's window ends
            driver.execute_script(SCROLL_TO_WINDOW)
            time.sleep(1.0)
        _shoot(driver, args.out / "station_detail.png", args.width, args.max_height, DETAIL_HEIGHT)
        print(f"wrote {args.out / 'station.png'} and {args.out / 'station_detail.png'} (detail: {pid})")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
