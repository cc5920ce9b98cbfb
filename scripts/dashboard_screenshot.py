"""Regenerate the README's picture of the dashboard (analyses/dashboard-wiki.png).

Starts `probe dashboard` on the shipped wiki model's validation recording, drives the page in headless
Chromium (selenium): ranks units for URLs with the find-neurons search, picks the URL cell L1.c.382,
goes to a window of external links full of URLs, turns on the top-k rows, and saves a screenshot.

    .venv/bin/python scripts/dashboard_screenshot.py [--out analyses/dashboard-wiki.png]

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium, chromium-driver).
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECORDING = "recordings/wiki-val"
CHECKPOINT = "trained_models/wiki"
UNIT = "L1.c.382"  # a URL cell (analyses/wiki)
URL_REGEX = r"https?://\S+"
ROW = 5983  # "; General information" in the first article's external links (a list of URLs); the window
# starts 500 rows before it, and the text view is scrolled to put this row at its top
WAIT_S = 180.0  # the find-neurons search over 304k rows and 3,072 units takes a while on a few cores


class ShotError(Exception):
    """A step of the screenshot failed (one line for the user)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, server: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise ShotError(f"the dashboard exited with status {server.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise ShotError(f"the dashboard did not answer at {url} within {timeout:.0f} s")


def wait_js(driver: Any, script: str, what: str, timeout: float = WAIT_S) -> Any:
    """Poll a JS expression until it is truthy and return its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise ShotError(f"timed out after {timeout:.0f} s waiting for {what}")


def text_of(driver: Any, selector: str) -> str:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector)


def drive(driver: Any, url: str, row: int, topk: bool) -> str:
    """Set the page up for the picture; returns a one-line description of what it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    wait_js(driver, "return document.querySelectorAll('#text-view [data-r]').length > 100", "the text view")

    # rank units for URLs, then click the URL cell in the table (fall back to typing its index)
    driver.find_element(By.ID, "regex").send_keys(URL_REGEX)
    driver.find_element(By.ID, "find-btn").click()
    wait_js(driver, "return document.querySelector('#find-table td[data-dash-column=\"unit\"]') || "
                    "(document.getElementById('find-msg').innerText || '').trim()", "the find-neurons table")
    msg = text_of(driver, "#find-msg").strip()
    if msg:
        raise ShotError(f"find neurons: {msg}")
    cells = driver.find_elements(By.CSS_SELECTOR, '#find-table td[data-dash-column="unit"]')
    first = cells[0].text.strip()
    cell = next((c for c in cells if c.text.strip() == UNIT), None)
    if cell is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
        cell.click()
    else:
        index = UNIT.rsplit(".", 1)[1]  # the page opens on the last layer (L2) and kind c: only the index to set
        box = driver.find_element(By.ID, "unit-index")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE, index, Keys.ENTER)
    wait_js(driver, f"return document.getElementById('text-view').getAttribute('data-unit') === '{UNIT}'",
            f"the text view to be colored by {UNIT}")

    # go to a window with URLs
    goto = driver.find_element(By.ID, "goto")
    goto.send_keys(str(row))
    driver.find_element(By.ID, "goto-btn").click()
    want = f"rows {max(0, row - 500):,}"
    wait_js(driver, f"return (document.getElementById('win-label').innerText || '').startsWith('{want}') || "
                    "(document.getElementById('win-msg').innerText || '').trim()", f"the window at row {row}")
    msg = text_of(driver, "#win-msg").strip()
    if msg:
        raise ShotError(f"go to row {row}: {msg}")
    wait_js(driver, f"return document.getElementById('text-view').getAttribute('data-unit') === '{UNIT}'",
            f"the new window to be colored by {UNIT}")
    if "http" not in text_of(driver, "#text-view"):
        raise ShotError(f"the window at row {row} shows no URL")

    if topk:
        driver.find_element(By.CSS_SELECTOR, "#topk input").click()
        wait_js(driver, "return document.querySelectorAll('#text-view .tk').length > 0", "the top-k rows")
    # the spans' data-r count from the window's start: put the target row's line at the top of the view
    start = int(text_of(driver, "#win-label").split()[1].split("\u2013")[0].replace(",", ""))
    driver.execute_script(
        "const view = document.getElementById('text-view'), r = arguments[0];"
        "const span = view.querySelector('[data-r=\"' + r + '\"]');"
        "const line = span && (span.closest('.tkline') || span);"
        "view.scrollTop = line ? view.scrollTop + line.getBoundingClientRect().top"
        " - view.getBoundingClientRect().top - 8 : 0;"
        "window.scrollTo(0, 0); if (document.activeElement) document.activeElement.blur();", row - start)
    time.sleep(0.5)  # let the last paint settle
    return (f"{text_of(driver, '#unit-name').strip()}, {text_of(driver, '#win-label').strip()}; "
            f"first row of the find table: {first}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "dashboard-wiki.png", help="PNG to write")
    ap.add_argument("--row", type=int, default=ROW, help=f"row to go to (default {ROW})")
    ap.add_argument("--no-topk", dest="topk", action="store_false", help="leave the top-k rows off")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "probe", "dashboard", RECORDING, "--checkpoint", CHECKPOINT, "--port", str(port)]
    t0 = time.monotonic()
    log = tempfile.TemporaryFile()  # the server's log (a pipe nobody reads would fill and stall it)
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    driver = None
    try:
        try:
            wait_http(url, server, timeout=120)
        except ShotError as e:
            log.seek(0)
            last = [l for l in log.read().decode(errors="replace").splitlines() if l.strip()][-1:]
            raise ShotError(f"{e}{': ' + last[0] if last else ''}") from None
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  f"--window-size={args.width},{args.height}"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        driver.set_window_size(args.width, args.height)
        shows = drive(driver, url, args.row, args.topk)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(args.out)):
            raise ShotError(f"could not write {args.out}")
        print(f"wrote {args.out} ({shows}) in {time.monotonic() - t0:.0f} s")
        return 0
    except ShotError as e:
        print(f"dashboard_screenshot: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - selenium and the browser fail in many ways; one line each
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"dashboard_screenshot: error: {type(e).__name__}: {first}", file=sys.stderr)
        return 1
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())
