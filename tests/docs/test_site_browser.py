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
SCREENSHOTS = {"home": "index.html", "semantics": "spec/semantics.html", "semantics-patch-2":
               "spec/semantics.html#PATCH-2", "tutorial": "tutorial/masks.html",
               "exit": "tutorial/exit.html", "training": "training.html",
               "api": "api/reference_numpy.html", "report": "conformance/report.html"}
WIDTHS = (1280, 390)  # desktop and phone

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
    """Site-relative URLs of every page (404.html excluded: it uses absolute site_url paths;
    assets/ holds no page)."""
    return sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html")
                  if path.name != "404.html" and path.parts[len(site.parts)] != "assets")


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
    """Typing a clause id into the search box lists that clause's section first (the
    spec pages are boosted), and the snippets show no raw TeX."""
    base, _ = site_url
    page = browser.new_page()
    problems: list[str] = []
    _watch(page, problems)
    page.goto(base + "index.html", wait_until="load")
    page.click("input.md-search__input")
    page.keyboard.type("MASK-3", delay=30)  # typed: the search box reacts to key events
    page.wait_for_function(  # results for the whole query, not for a prefix typed so far
        "() => [...document.querySelectorAll('.md-search-result__item a')]"
        ".some(a => /[?&]h=[^#]*3/.test(a.href))", timeout=20_000)
    links = page.eval_on_selector_all(".md-search-result__item a",
                                      "els => els.map(a => a.getAttribute('href'))")
    snippets = page.eval_on_selector_all(".md-search-result__item",
                                         "els => els.map(e => e.textContent)")
    page.close()
    sections = [link for link in links if "#" in link]  # the page's own entry comes first
    assert "spec/semantics.html" in links[0], links
    assert sections and sections[0].endswith("#MASK-3"), links
    assert not [t for t in snippets if "\\(" in t or "\\operatorname" in t], snippets
    assert not problems, problems


# Runs in the page at phone width: formulas and figures wider than the column scroll in
# their own box with a cue; figures keep a readable size.
_PHONE = """() => {
  const bad = [];
  let overflowing = 0;
  document.querySelectorAll('div.arithmatex').forEach(el => {
    if (el.scrollWidth > el.clientWidth + 1) {
      overflowing++;
      const style = getComputedStyle(el);
      if (style.overflowX !== 'auto' || !style.backgroundImage.includes('gradient'))
        bad.push('formula overflows without a scroll cue: ' + el.textContent.slice(0, 40));
    }
  });
  document.querySelectorAll('img.figure').forEach(img => {
    if (img.getBoundingClientRect().width < 590) bad.push('figure too narrow: ' + img.src);
    const frame = getComputedStyle(img.parentElement);
    if (frame.overflowX !== 'auto') bad.push('figure frame does not scroll: ' + img.src);
  });
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    bad.push('the page itself scrolls sideways');
  return {bad: bad, overflowing: overflowing};
}"""


def test_phone_width_formulas_and_figures(site_url, browser):
    """At 390 px: no page scrolls sideways; an overflowing formula scrolls in its own box
    with a cue; figures are shown at least 600 px wide in a scrolling frame."""
    base, site = site_url
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    problems, overflowing = {}, 0
    for url in ["spec/semantics.html", "spec/anytime.html", "tutorial/masks.html",
                "tutorial/exit.html", "training.html", "tutorial/rope.html"]:
        page.goto(base + url, wait_until="load")
        page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                               ".every(el => el.dataset.katexDone)", timeout=10_000)
        result = page.evaluate(_PHONE)
        overflowing += result["overflowing"]
        if result["bad"]:
            problems[url] = result["bad"]
    page.close()
    assert not problems, problems
    assert overflowing > 0, "no formula overflows at 390 px: the cue check checked nothing"


def test_site_works_from_disk(site_url, browser):
    """Opened with file:// (no server), navigation links point at .html files and the
    search box is there and answers (Material's offline plugin)."""
    _, site = site_url
    page = browser.new_page()
    page.goto((site / "index.html").as_uri(), wait_until="load")
    hrefs = page.eval_on_selector_all("nav.md-nav a.md-nav__link[href]",
                                      "els => els.map(a => a.getAttribute('href'))")
    pages = [h for h in hrefs if not h.startswith("#") and "://" not in h]
    assert pages and all(h.split("#")[0].endswith(".html") for h in pages), pages[:10]
    page.click("label.md-search__icon, input.md-search__input", timeout=5_000)
    page.keyboard.type("MASK-3", delay=30)
    page.wait_for_selector(".md-search-result__item a", timeout=20_000)
    page.close()


def test_screenshots(site_url, browser):
    """Screenshots of a few pages at desktop and phone width for a person to look at."""
    base, _ = site_url
    out = Path(os.environ.get("DOCS_SCREENSHOTS") or tempfile.mkdtemp(prefix="docs-shots-"))
    out.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page = browser.new_page()
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in SCREENSHOTS.items():
            page.goto(base + url, wait_until="load")
            page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                                   ".every(el => el.dataset.katexDone)", timeout=10_000)
            path = out / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=name in ("tutorial", "exit"))
            assert path.stat().st_size > 10_000
        page.close()
    print(f"screenshots saved in {out}")
