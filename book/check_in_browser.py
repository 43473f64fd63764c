r"""Open chapters in JupyterLab in a real (headless) browser, as a reader would, and report what
renders: ``python book/check_in_browser.py [chapters/02_dynamic_filters.md ...]``.

It starts this environment's JupyterLab (the one ``make lab`` starts, with the settings ``make
setup`` writes) on a free port, drives Debian's Chromium through Selenium, double-clicks each
chapter in the file browser, and for each one writes a screenshot to ``build/browser/`` and
prints: how many markdown cells rendered, how many formulas KaTeX typeset, whether any MyST role
(``{eq}``, ``{cite}``, ``{ref}``) or directive fence is left as raw text, whether the notebook
opened already marked modified, and whether JupyterLab asked about news. It exits non-zero when a
role or directive shows raw, no formula rendered, or the news question appears.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``)
and the ``browser`` extra (``.venv/bin/pip install -e '.[browser]'``). CI does not run it.

``--book build/book/_build/html [chapters/02_dynamic_filters.html ...]`` checks the built HTML
book instead, opened from disk with every host name unresolvable (the network off): how many
formulas MathJax typeset, whether raw TeX (``\(``) is left, whether any page loads a script or
style sheet from the network, and whether the hint dropdowns start closed; a screenshot of each
page goes to ``build/browser/book-*.png``. It exits non-zero on raw TeX, a remote script or an
open hint.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "browser"
RAW_MARKERS = ("{eq}`", "{cite}`", "{ref}`", "{numref}`", "```{", ":::{")
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(port: int, token: str):
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    log = open(OUT / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        for _ in range(120):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"JupyterLab did not start: see {OUT / 'jupyterlab.log'}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                            options=opts)


def check_chapter(driver, base: str, token: str, path: str, settle: float) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    folder, name = path.rsplit("/", 1)
    # ?reset: a fresh workspace, as on a new machine (no tab restored from an earlier run)
    driver.get(f"{base}/lab/tree/{folder}?token={token}&reset")
    wait = WebDriverWait(driver, 90)
    item = wait.until(EC.presence_of_element_located(
        (By.XPATH, f"//span[@class='jp-DirListing-itemText']/span[text()='{name}']")))
    time.sleep(2)
    ActionChains(driver).double_click(item).perform()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell")))
    time.sleep(settle)
    shot = OUT / f"{pathlib.Path(name).stem}.png"
    driver.save_screenshot(str(shot))
    cells = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell")
    text = "\n".join(c.text for c in cells)
    tab = driver.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab.jp-mod-current")
    return {
        "chapter": path,
        "markdown_cells_shown": len(cells),
        "formulas": len(driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .katex, .jp-Notebook mjx-container")),
        "raw_roles": {m: text.count(m) for m in RAW_MARKERS if m in text},
        # jupyterlab-myst draws a dropdown admonition as a <details> element, closed until clicked
        "dropdowns": len(driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell details")),
        "dropdowns_open": len(driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell details[open]")),
        "citation_links": len(driver.find_elements(
            By.CSS_SELECTOR, ".jp-Notebook .jp-MarkdownCell a[href*='references.md#']")),
        "opened_modified": bool(tab) and "jp-mod-dirty" in (tab[0].get_attribute("class") or ""),
        "news_question": "news" in driver.find_element(By.TAG_NAME, "body").text.lower()
                         and bool(driver.find_elements(By.CSS_SELECTOR, ".jp-Notification-Toast")),
        "screenshot": str(shot.relative_to(ROOT)),
    }


def check_book_page(driver, html_root: pathlib.Path, page: str, settle: float) -> dict:
    """Open one page of the built HTML book from disk, with every host name unresolvable."""
    from selenium.webdriver.common.by import By

    driver.get((html_root / page).resolve().as_uri())
    time.sleep(settle)
    shot = OUT / ("book-" + page.replace("/", "-").removesuffix(".html") + ".png")
    body = driver.find_element(By.TAG_NAME, "body").text
    remote = [e.get_attribute("src") or e.get_attribute("href")
              for e in driver.find_elements(By.CSS_SELECTOR, "script[src], link[rel=stylesheet]")]
    remote = [u for u in remote if u and u.startswith(("http:", "https:", "//"))]
    hints = driver.find_elements(By.CSS_SELECTOR, ".admonition.dropdown")
    shown = [h for h in hints if any(e.is_displayed() for e in h.find_elements(By.XPATH, "./*[position() > 1]"))]
    if hints:
        driver.execute_script("arguments[0].scrollIntoView()", hints[0])
        time.sleep(0.5)
    driver.save_screenshot(str(shot))
    return {
        "page": page,
        "formulas": len(driver.find_elements(By.CSS_SELECTOR, "mjx-container")),
        "raw_tex": body.count("\\(") + body.count("\\["),
        "remote_scripts_or_styles": remote,
        "dropdowns": len(hints),
        "dropdowns_shown_open": len(shown),
        "screenshot": str(shot.relative_to(ROOT)) if shot.is_relative_to(ROOT) else str(shot),
    }


def check_book(html_root: pathlib.Path, pages: list[str], settle: float) -> bool:
    """The built book offline: math typeset by the bundled MathJax, no remote script or style,
    hints closed. Returns whether every page passed."""
    global CHROME_FLAGS
    CHROME_FLAGS = CHROME_FLAGS + ("--host-resolver-rules=MAP * ~NOTFOUND",)  # the network is off
    driver = browser()
    failed = False
    try:
        for page in pages:
            r = check_book_page(driver, html_root, page, settle)
            bad = r["raw_tex"] > 0 or bool(r["remote_scripts_or_styles"]) or r["dropdowns_shown_open"] > 0
            failed |= bad
            print(("FAIL " if bad else "ok   ") + ", ".join(f"{k}={v}" for k, v in r.items()))
    finally:
        driver.quit()
    return not failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("chapters", nargs="*", default=["chapters/02_dynamic_filters.md", "chapters/06_ddf.md"])
    p.add_argument("--settle", type=float, default=8.0, help="seconds to let a notebook render (default 8)")
    p.add_argument("--book", type=pathlib.Path, metavar="HTML_DIR",
                   help="instead, open pages of the built HTML book (e.g. build/book/_build/html) offline; "
                        "the positional arguments are then pages relative to it")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.book:
        pages = [c for c in args.chapters if c.endswith(".html")] or [
            "book/intro.html", "chapters/02_dynamic_filters.html", "exercises/01_convolution_exercises.html"]
        return 0 if check_book(args.book, pages, args.settle) else 1
    token = secrets.token_hex(8)
    failed = False
    with jupyterlab(free_port(), token) as base:
        driver = browser()
        try:
            for chapter in args.chapters:
                r = check_chapter(driver, base, token, chapter, args.settle)
                bad = bool(r["raw_roles"]) or r["formulas"] == 0 or r["news_question"] or r["dropdowns_open"] > 0
                failed |= bad
                print(("FAIL " if bad else "ok   ") + ", ".join(f"{k}={v}" for k, v in r.items()))
        finally:
            driver.quit()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
