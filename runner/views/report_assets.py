"""The inline stylesheet and script of the HTML report (no external resource of any kind), its
Content-Security-Policy, and the document shell every report file (the one file, or the index and its pages) shares.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re

CSS = """
:root { --bg:#f6f7f9; --panel:#fff; --ink:#1d2330; --muted:#5f6b7a; --line:#dfe3ea; --accent:#2457c5;
  --accent-soft:#e8effc; --bad:#b42318; --bad-soft:#fdecea; --ok:#1a7f4b; --mono:ui-monospace,SFMono-Regular,
  Menlo,Consolas,monospace; }
* { box-sizing:border-box; }
html { scroll-behavior:smooth; }
body { margin:0; background:var(--bg); color:var(--ink); font:15px/1.5 system-ui,-apple-system,"Segoe UI",
  Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif; }
header.top { background:#17233b; color:#fff; padding:18px 28px; }
header.top h1 { margin:0; font-size:21px; font-weight:600; letter-spacing:.2px; }
header.top p { margin:4px 0 0; color:#c2cbdb; font-size:13px; }
header.top p.sets b { color:#fff; }
header.top p.sets code { color:#fff; background:rgba(255,255,255,.12); padding:1px 5px; border-radius:4px;
  overflow-wrap:anywhere; }
.layout { display:grid; grid-template-columns:280px minmax(0,1fr); align-items:start; }
nav.toc { position:sticky; top:0; max-height:100vh; overflow:auto; padding:16px 14px 24px;
  border-right:1px solid var(--line); background:var(--panel); }
nav.toc h2 { font-size:12px; text-transform:uppercase; letter-spacing:.08em; color:var(--muted); margin:14px 6px 6px; }
nav.toc a { display:block; padding:5px 8px; border-radius:6px; color:var(--ink); text-decoration:none;
  font-size:13.5px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
nav.toc a:hover, nav.toc a.current { background:var(--accent-soft); color:var(--accent); }
nav.toc a .num { display:inline-block; min-width:2.2em; color:var(--muted); font-variant-numeric:tabular-nums; }
nav.toc a .warn { color:var(--bad); }
nav.toc input[type=search] { width:100%; padding:7px 9px; border:1px solid var(--line); border-radius:6px;
  font:inherit; font-size:13.5px; }
nav.toc label.only-wrong { display:flex; align-items:center; gap:6px; margin:8px 4px 6px; font-size:13px;
  cursor:pointer; }
nav.toc label.only-wrong input { margin:0; accent-color:var(--bad); }
nav.toc label.only-wrong .count { margin-left:auto; color:var(--muted); font-size:12px; white-space:nowrap; }
main { padding:22px 28px 80px; min-width:0; }
section.block { background:var(--panel); border:1px solid var(--line); border-radius:10px; padding:18px 20px;
  margin-bottom:22px; }
section.block > h2 { margin:0 0 12px; font-size:18px; }
table.data { border-collapse:collapse; width:100%; font-size:13.5px; }
table.data th, table.data td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left;
  vertical-align:top; }
table.data th { color:var(--muted); font-weight:600; font-size:12.5px; background:#fafbfc; }
table.data td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.data .sub { font-size:11.5px; color:var(--muted); font-weight:400; white-space:nowrap; }
table.data th.n { text-align:right; }
table.data td.gen { min-width:20em; }
table.scores { width:auto; min-width:min(100%,560px); }
table.scores td.n { white-space:nowrap; min-width:6.5em; }
.scroll { overflow-x:auto; }
.setline { margin:-6px 0 10px; }
.warnline { color:var(--bad); background:var(--bad-soft); border-radius:6px; padding:6px 10px; font-size:13px;
  margin:8px 0; }
ul.plain { margin:6px 0; padding-left:20px; } ul.plain li { margin:2px 0; overflow-wrap:anywhere; }
img.chart { display:block; width:640px; max-width:100%; height:auto; margin:14px 0 0; }
.muted { color:var(--muted); }
.small { font-size:12.5px; }
code, .mono { font-family:var(--mono); font-size:12.5px; }
.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; font-size:13.5px; margin:8px 0; }
.kv dt { color:var(--muted); } .kv dd { margin:0; overflow-wrap:anywhere; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
  background:var(--accent-soft); color:var(--accent); }
.badge.bad { background:var(--bad-soft); color:var(--bad); }
.badge.ok { background:#e7f6ee; color:var(--ok); }
.question { scroll-margin-top:12px; }
.question:target { border-color:var(--accent); box-shadow:0 0 0 3px var(--accent-soft); }
.question h3 { margin:0; font-size:17px; }
.question .qtext { font-size:15.5px; margin:8px 0 10px; white-space:pre-wrap; overflow-wrap:anywhere; }
.question .context { font-size:13.5px; color:var(--muted); white-space:pre-wrap; border-left:3px solid var(--line);
  padding-left:10px; margin:8px 0; }
ol.options { margin:4px 0 12px; padding-left:0; list-style:none; font-size:14px; }
ol.options li { padding:2px 0; } ol.options li.correct { color:var(--ok); font-weight:600; }
.qhead { display:flex; gap:10px; align-items:baseline; flex-wrap:wrap; }
.grid { display:grid; gap:12px; }
.grid .colhead { font-weight:600; font-size:12.5px; color:var(--muted); padding:2px 2px 0; text-transform:uppercase;
  letter-spacing:.05em; border-bottom:2px solid var(--line); }
.card { border:1px solid var(--line); border-radius:8px; background:#fcfcfd; padding:10px 12px; min-width:0; }
.card.failed { border-color:#f3b8b2; background:var(--bad-soft); }
.card.missing { border-style:dashed; background:transparent; color:var(--muted); font-size:13px; align-self:start; }
.card .cardhead { display:flex; justify-content:space-between; align-items:baseline; gap:8px; }
.card .who { font-weight:600; font-size:14px; overflow-wrap:anywhere; min-width:0; }
.card .verdict { flex:none; white-space:nowrap; }
.card.right { border-left:4px solid var(--ok); }
.card.wrong, .card.unparseable { border-left:4px solid var(--bad); }
.card .meta { color:var(--muted); font-size:12px; margin:2px 0 8px; }
.answer { white-space:pre-wrap; overflow-wrap:anywhere; font-size:14px; line-height:1.55; }
.error { color:var(--bad); font-family:var(--mono); font-size:12.5px; white-space:pre-wrap; overflow-wrap:anywhere; }
details.more > summary { cursor:pointer; color:var(--accent); font-size:13px; margin-top:6px; }
.card:has(details.more[open]) .preview { display:none; }
details.prompt > summary { cursor:pointer; color:var(--muted); font-size:12px; margin-top:8px; }
details.prompt .ptitle { color:var(--muted); font-size:11.5px; font-weight:600; margin:6px 0 2px; }
details.prompt .ptext { white-space:pre-wrap; overflow-wrap:anywhere; font-family:var(--mono); font-size:12px;
  background:#f3f5f8; border-radius:6px; padding:6px 8px; max-height:24em; overflow:auto; }
.toolbar { display:flex; gap:8px; margin:0 0 14px; }
button { font:inherit; font-size:13px; border:1px solid var(--line); background:var(--panel); border-radius:6px;
  padding:5px 10px; cursor:pointer; }
button:hover { border-color:var(--accent); color:var(--accent); }
table.matrix { width:auto; }
table.matrix td.v { text-align:center; font-variant-numeric:tabular-nums; min-width:4.2em; }
table.matrix th.rot { white-space:nowrap; }
footer { color:var(--muted); font-size:12px; padding:0 28px 30px; }
.pager { display:flex; gap:8px 16px; flex-wrap:wrap; align-items:baseline; margin:0 0 14px; font-size:13.5px; }
.pager a { color:var(--accent); text-decoration:none; } .pager a:hover { text-decoration:underline; }
nav.toc .pager { margin:8px 4px; gap:4px 10px; } nav.toc .pager a { display:inline; padding:0; }
nav.toc a.plink .count { color:var(--muted); font-size:12px; }
table.pages td.first { max-width:32em; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
@media (max-width: 900px) { .layout { grid-template-columns:1fr; } nav.toc { position:static; max-height:40vh;
  border-right:0; border-bottom:1px solid var(--line); } main { padding:16px; } }
@media print { nav.toc, .toolbar, .pager { display:none; } .layout { display:block; } }
"""

# Small and dependency-free; the report reads fine without it (anchors and <details> are plain HTML). One script for
# every file of a report (the one file, a paged report's index and its pages), so they share one policy: each part
# acts only where its elements are. A paged report's files carry ``#page-map``: the first question number of each
# page, so ``#qN`` (a link, a bookmark, a number typed in the filter box) finds the page that holds question N.
SCRIPT = """
(function () {
  var filter = document.getElementById('toc-filter');
  var onlyWrong = document.getElementById('only-wrong');
  var links = Array.prototype.slice.call(document.querySelectorAll('nav.toc a.qlink'));
  var sections = Array.prototype.slice.call(document.querySelectorAll('section.question'));
  var map = document.getElementById('page-map');
  var firsts = map ? map.getAttribute('data-firsts').split(' ').map(Number) : [];
  // The page that holds question n (the last whose first question is <= n), as a link; null when none does.
  function pageHref(n) {
    var lo = 0, hi = firsts.length - 1, found = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (firsts[mid] <= n) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    if (found < 0) { return null; }
    var k = String(found + 1);
    while (k.length < 4) { k = '0' + k; }
    return map.getAttribute('data-folder') + '/page-' + k + '.html#q' + n;
  }
  function number() {
    var raw = filter ? filter.value.trim() : '';
    return /^[0-9]+$/.test(raw) ? parseInt(raw, 10) : null;
  }
  // The question list follows the text filter and "Only wrong or disagreeing"; the questions follow the latter.
  // A paged report's index lists pages: a number shows the page that holds it.
  function apply() {
    var needle = filter ? filter.value.toLowerCase() : '';
    var n = number();
    var only = !!(onlyWrong && onlyWrong.checked);
    links.forEach(function (a) {
      var first = a.getAttribute('data-first');
      var match = n !== null && first !== null ? n >= +first && n <= +a.getAttribute('data-last')
        : a.textContent.toLowerCase().indexOf(needle) !== -1;
      a.style.display = !match || (only && a.getAttribute('data-disagree') !== '1') ? 'none' : '';
    });
    sections.forEach(function (s) {
      s.style.display = only && s.getAttribute('data-disagree') !== '1' ? 'none' : '';
    });
  }
  if (filter) {
    filter.addEventListener('input', apply);
    filter.addEventListener('keydown', function (e) {  // Enter on a number: go to that question
      var n = number();
      if (e.key !== 'Enter' || n === null) { return; }
      if (document.getElementById('q' + n)) { location.hash = '#q' + n; return; }
      var href = map ? pageHref(n) : null;
      if (href) { location.href = href; }
    });
  }
  if (onlyWrong) { onlyWrong.addEventListener('change', apply); }
  apply();  // a filter the browser restored (back, reload) applies at once
  // #qN of a question on another page (a paged report): go to the page that holds it.
  function follow() {
    var m = /^#q([0-9]+)$/.exec(location.hash);
    if (m && map && !document.getElementById('q' + m[1])) {
      var href = pageHref(parseInt(m[1], 10));
      if (href) { location.replace(href); }
    }
  }
  function mark() {
    links.forEach(function (a) { a.classList.toggle('current', a.getAttribute('href') === location.hash); });
  }
  window.addEventListener('hashchange', function () { follow(); mark(); });
  follow();
  mark();
  function toggleAll(open) {
    document.querySelectorAll('details.more').forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById('expand-all');
  var collapse = document.getElementById('collapse-all');
  if (expand) { expand.addEventListener('click', function () { toggleAll(true); }); }
  if (collapse) { collapse.addEventListener('click', function () { toggleAll(false); }); }
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
# Only the report's own script (by hash) runs; no external resource of any kind; images only as data: URLs.
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'; img-src data:; "
       "base-uri 'none'; form-action 'none'")
FOOTER = ("<footer>Answers are shown exactly as the models wrote them, as plain text. Costs are estimates from the "
          "prices in the run manifests or the catalog. Made by medical-model-runner.</footer>")

# C0 control characters (escape sequences in model output) are invalid in HTML text: show their symbols instead.
_CONTROLS = {c: 0x2400 + c for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F: 0x2421}


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def esc(value: object) -> str:
    """Any value as HTML text (quotes escaped too, so it is safe inside attributes)."""
    text = html.escape("" if value is None else str(value), quote=True)
    return text.translate(_CONTROLS) if _CONTROL.search(text) else text  # a search is far faster than translate


def document(title: str, header: str, nav: str, main: str, head_extra: str = "") -> str:
    """One report file: the head (charset, the Content-Security-Policy, the stylesheet), ``header`` (HTML), the
    contents ``nav`` beside ``main`` (HTML), the footer and the script. ``title`` is plain text."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', *([head_extra] if head_extra else []),
        f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", header,
        '<div class="layout">', nav, f'<main id="main">{main}</main>', "</div>", FOOTER,
        f"<script>{SCRIPT}</script>", "</body>", "</html>", ""])
