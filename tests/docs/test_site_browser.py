"""The built site, opened in a real browser with no network (issue "documentation website").

Builds the site, serves it on 127.0.0.1 and opens every page in headless Chromium
(Debian's ``/usr/bin/chromium`` driven by Playwright; no browser is downloaded) with every
host but 127.0.0.1 unresolvable. Asserts on every page: the formulas were rendered by
KaTeX (no raw ``\\(`` left, no KaTeX error element), every image loaded, no request
failed; and that the site search, run in real time by its web worker, finds a clause
from its id. Screenshots of the home, semantics and tutorial pages are saved to
``$DOCS_SCREENSHOTS`` (default: a temporary directory; the path is printed).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DOCS_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SCREENSHOTS = {"home": "", "semantics": "spec/semantics/", "semantics-patch-2":
               "spec/semantics/#PATCH-2", "tutorial": "tutorial/masks/"}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """Build the site and serve it on 127.0.0.1; yield its base URL."""
    pytest.importorskip("mkdocs", reason="mkdocs is installed by the 'test' and 'docs' extras")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", site
    server.shutdown()
    server.server_close()
    shutil.rmtree(site)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is installed by the 'test' extra")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def _pages(site: Path) -> list[str]:
    """Site-relative URLs of every page (404.html excluded: it uses absolute site_url paths)."""
    return sorted(path.parent.relative_to(site).as_posix() + "/"
                  if path.parent != site else ""
                  for path in site.rglob("index.html"))


def _watch(page, problems: list[str]):
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} "
                                                         f"({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(
        f"HTTP {r.status}: {r.url}"))
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))


# Runs in the page: what is wrong with its math and images.
_CHECK = """() => {
  const bad = [];
  const math = document.querySelectorAll('.arithmatex');
  math.forEach(el => { if (!el.querySelector('.katex')) bad.push('not rendered: ' +
      el.textContent.slice(0, 60)); });
  document.querySelectorAll('.katex-error').forEach(el => bad.push('KaTeX error: ' +
      (el.getAttribute('title') || el.textContent).slice(0, 120)));
  const article = document.querySelector('article');
  let text = '';
  if (article) {  // prose only: code may show TeX delimiters on purpose
    const prose = article.cloneNode(true);
    prose.querySelectorAll('code, pre, .katex').forEach(el => el.remove());
    text = prose.textContent;
  }
  if (text.includes('\\\\(') || text.includes('\\\\[') || text.includes('$$'))
      bad.push('raw TeX delimiters left in the text');
  document.querySelectorAll('img').forEach(img => {
      if (!img.complete || img.naturalWidth === 0) bad.push('image not loaded: ' + img.src); });
  return {bad: bad, math: math.length, katex: document.querySelectorAll('.katex').length,
          images: document.querySelectorAll('img').length};
}"""


def test_every_page_renders_offline(site_url, browser):
    """Every page: math rendered by KaTeX, no KaTeX error, images loaded, no failed request,
    no request to another host."""
    base, site = site_url
    pages = _pages(site)
    assert len(pages) > 20, pages
    problems: dict[str, list[str]] = {}
    totals = {"math": 0, "katex": 0, "images": 0}
    page = browser.new_page()
    found: list[str] = []
    _watch(page, found)
    page.on("request", lambda r: r.url.startswith(base) or r.url.startswith("data:")
            or found.append(f"request to another host: {r.url}"))
    for url in pages:
        found.clear()
        page.goto(base + url, wait_until="networkidle")  # the search worker loaded too
        page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                               ".every(el => el.dataset.katexDone)", timeout=10_000)
        result = page.evaluate(_CHECK)
        for key in totals:
            totals[key] += result[key]
        if result["bad"] or found:
            problems[url] = result["bad"] + list(found)
    page.close()
    print(f"{len(pages)} pages, {totals['math']} formulas, {totals['katex']} KaTeX "
          f"renderings, {totals['images']} images")
    assert not problems, "\n".join(f"{url}: {p}" for url, ps in problems.items() for p in ps)
    assert totals["math"] > 300 and totals["katex"] >= totals["math"], totals
    assert totals["images"] >= 5, totals


def test_search_finds_a_clause_by_its_id(site_url, browser):
    """Typing a clause id into the search box lists that clause's section first."""
    base, _ = site_url
    page = browser.new_page()
    problems: list[str] = []
    _watch(page, problems)
    page.goto(base, wait_until="load")
    page.click("input.md-search__input")
    page.keyboard.type("MASK-6", delay=30)  # typed: the search box reacts to key events
    page.wait_for_function(  # results for the whole query, not for a prefix typed so far
        "() => [...document.querySelectorAll('.md-search-result__item a')]"
        ".some(a => /[?&]h=[^#]*6/.test(a.href))", timeout=20_000)
    links = page.eval_on_selector_all(".md-search-result__item a",
                                      "els => els.map(a => a.getAttribute('href'))")
    page.close()
    assert any("/spec/semantics/" in link and link.endswith("#MASK-6") for link in links[:3]), \
        links
    assert not problems, problems


def test_screenshots(site_url, browser):
    """Screenshots of the home, semantics and tutorial pages for a person to look at."""
    base, _ = site_url
    out = Path(os.environ.get("DOCS_SCREENSHOTS") or tempfile.mkdtemp(prefix="docs-shots-"))
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    for name, url in SCREENSHOTS.items():
        page.goto(base + url, wait_until="load")
        page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                               ".every(el => el.dataset.katexDone)", timeout=10_000)
        page.screenshot(path=str(out / f"{name}.png"), full_page=name == "tutorial")
        assert (out / f"{name}.png").stat().st_size > 10_000
    page.close()
    print(f"screenshots saved in {out}")
