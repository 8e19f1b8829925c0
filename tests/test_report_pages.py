"""``report`` past its one-file size: a small index and pages of questions beside it, each self-contained."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from runner.core.questions import load_questions
from runner.views import report_pages
from runner.views.report import write_report, write_report_files
from runner.views.report_assets import CSP
from runner.views.report_pages import PAGE_MARK, remove_stale_pages
from tests.conftest import write_jsonl
from tests.test_report import DevTools, browser, open_report, parse, run_cli  # noqa: F401  (browser: a fixture)

OPTIONS = {"A": "Atorvastatin", "B": "Insulin", "C": "Metformin", "D": "Warfarin"}
QUESTIONS = [  # seven multiple-choice questions: pages of three are 1-3, 4-6 and 7
    ("Which drug is a statin?", "A"), ("Which drug is an insulin?", "B"), ("Which is a biguanide?", "C"),
    ("Which is <b>an anticoagulant</b>?", "D"), ("Which lowers LDL?", "A"), ("Which is a hormone?", "B"),
    ("Which lowers hepatic glucose output?", "C")]
CANNED = ["Answer: A", "Answer: C", "Answer: C", "Answer: D", "Answer: A", "Answer: B", "Answer: C"]  # q2 wrong
FLAGGED = {2, 7}  # q2: a wrong answer; q7: fake:echo's answer has no single letter (unparseable)
PAGED = ("--single-file-max", "5", "--page-size", "3")  # 8 answers > 5: an index and three pages


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fake:canned answers all seven questions (question 2 wrong); fake:echo answers question 7 only."""
    from runner.engine import run
    from runner.providers.fake import FakeGenerator

    base = tmp_path_factory.mktemp("paged")
    path = write_jsonl(base / "mcq.jsonl", [{"question": q, "options": OPTIONS, "answer": a} for q, a in QUESTIONS])
    FakeGenerator.canned.extend(CANNED)
    run(path, ["fake:canned"], ["medical-exam"], output_dir=base / "out", progress=False)
    FakeGenerator.reset()
    run(load_questions(path)[6:], ["fake:echo"], ["medical-exam"], output_dir=base / "out", progress=False,
        questions_path=path)
    return base / "out"


@pytest.fixture(scope="module")
def paged(store: Path) -> Path:
    done = run_cli("report", "--output-dir", "out", *PAGED, cwd=store.parent)
    assert done.returncode == 0, done.stderr
    assert "its 3 pages of questions are in out/report_pages/" in done.stdout
    return store / "report.html"


def pages_of(index: Path) -> list[Path]:
    return sorted((index.parent / "report_pages").glob("page-*.html"))


def csp_of(html: str) -> str | None:
    metas = [a for a in parse(html).all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert len(metas) == 1
    return metas[0].get("content")


def test_index_and_pages(paged: Path) -> None:
    pages = pages_of(paged)
    assert [p.name for p in pages] == ["page-0001.html", "page-0002.html", "page-0003.html"]
    index = paged.read_text(encoding="utf-8")
    tree = parse(index)
    # The index holds every section but the questions: no question section, no answer card.
    assert {"settings", "models", "scores", "questions"} <= tree.ids
    assert not [i for i in tree.ids if re.fullmatch(r"q\d+", i)] and 'class="card' not in index
    # Its question list: one link per page, with the range it holds and whether any question there is flagged.
    plinks = [a for a in tree.all("a") if "plink" in (a.get("class") or "")]
    assert [(a["href"], a["data-first"], a["data-last"], a["data-disagree"]) for a in plinks] == [
        ("report_pages/page-0001.html", "1", "3", "1"), ("report_pages/page-0002.html", "4", "6", "0"),
        ("report_pages/page-0003.html", "7", "7", "1")]
    text = " ".join(" ".join(tree.text).split())
    assert "Only wrong or disagreeing 2 of 3 pages" in text and "7 questions on 3 pages of up to 3" in text
    assert "<b>an anticoagulant" not in index and "&lt;b&gt;an anticoagulant" in index  # page 2's first question
    # Every question is on exactly one page, in order, and pages hold no other section than their questions.
    seen: list[int] = []
    for page in pages:
        html = page.read_text(encoding="utf-8")
        ids = [a["id"] for a in parse(html).all("section") if a.get("id")]
        assert all(re.fullmatch(r"q\d+", i) for i in ids), ids
        seen += [int(i[1:]) for i in ids]
    assert seen == list(range(1, 8))
    # The verdicts and flags are those of the one-file report.
    page1 = parse(pages[0].read_text(encoding="utf-8"))
    flags = {a["id"]: a["data-disagree"] for a in page1.all("section") if a.get("id")}
    assert flags == {"q1": "0", "q2": "1", "q3": "0"}
    assert "chose C ✗" in " ".join(page1.text)


def test_same_policy_on_every_file_and_links_between_them(paged: Path) -> None:
    pages = pages_of(paged)
    index = paged.read_text(encoding="utf-8")
    assert csp_of(index) == CSP and PAGE_MARK not in index
    assert "default-src 'none'" in CSP and "script-src 'sha256-" in CSP
    for k, page in enumerate(pages, start=1):
        html = page.read_text(encoding="utf-8")
        tree = parse(html)
        assert csp_of(html) == CSP and html.count(PAGE_MARK) == 1
        assert len(tree.all("script")) == 1 and not tree.all("link") and not tree.all("img")
        hrefs = [a.get("href") or "" for a in tree.all("a")]
        assert not [h for h in hrefs if h.lower().startswith(("http", "//", "javascript"))]
        assert "../report.html" in hrefs and "../report.html#scores" in hrefs
        assert (f"page-{k - 1:04d}.html" in hrefs) == (k > 1)
        assert (f"page-{k + 1:04d}.html" in hrefs) == (k < len(pages))
        # Its own question list, with the filter: its questions only.
        qlinks = [a["href"] for a in tree.all("a") if "qlink" in (a.get("class") or "")]
        assert qlinks == [f"#{a['id']}" for a in tree.all("section") if a.get("id")]
        assert {"id": "toc-filter"}.items() <= next(a for a in tree.all("input") if a.get("id") == "toc-filter").items()


def test_links_to_questions_reach_their_page(paged: Path) -> None:
    """Every ``#qN`` the index links to is on the page it names; the page map finds every question's page."""
    index = paged.read_text(encoding="utf-8")
    tree = parse(index)
    links = [a["href"] for a in tree.all("a") if re.search(r"#q\d+$", a.get("href") or "")]
    assert links == ["report_pages/page-0003.html#q7"]  # the unparseable answer, in the scores section
    for link in links:
        page, anchor = link.split("#")
        assert anchor in parse((paged.parent / page).read_text(encoding="utf-8")).ids
    # The map every file carries (what the script reads): the first question of each page.
    for html, folder in [(index, "report_pages"), *((p.read_text(encoding="utf-8"), ".") for p in pages_of(paged))]:
        found = next(a for a in parse(html).all("div") if a.get("id") == "page-map")
        assert found["data-folder"] == folder and found["data-firsts"] == "1 4 7"


def test_stale_pages_are_removed_and_nothing_else(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "mine.html"
    path, count = write_report_files(store, out, single_file_max=5, questions_per_page=2)
    folder = tmp_path / "r" / "mine_pages"
    assert (path, count) == (out, 4) and len(list(folder.glob("page-*.html"))) == 4
    # Beside the report's pages: a file of the same name the report did not write, a link to one of its pages,
    # another file, and a stale page of an earlier, bigger report.
    (folder / "page-0010.html").write_text("<p>my own notes</p>", encoding="utf-8")
    (folder / "page-0011.html").symlink_to(folder / "page-0001.html")
    (folder / "notes.txt").write_text("keep", encoding="utf-8")
    shutil.copy(folder / "page-0002.html", folder / "page-0009.html")
    assert write_report_files(store, out, single_file_max=5, questions_per_page=3)[1] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "page-0001.html", "page-0002.html",
                                                        "page-0003.html", "page-0010.html", "page-0011.html"]
    # Back under the threshold: one file; the report's pages go, the folder stays for what is not the report's.
    assert write_report_files(store, out)[1] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "page-0010.html", "page-0011.html"]
    assert "<section class=\"block question\" id=\"q7\"" in out.read_text(encoding="utf-8")
    # A folder that held only the report's pages goes with them.
    other = tmp_path / "s" / "report.html"
    write_report(store, other, single_file_max=0, questions_per_page=100)
    assert [p.name for p in (tmp_path / "s" / "report_pages").iterdir()] == ["page-0001.html"]
    write_report(store, other)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["report.html"]
    assert remove_stale_pages(tmp_path / "missing") == 0


def test_default_threshold_is_one_file(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_report_files(store, tmp_path / "a.html")[1] == 0  # 8 answers: far under the threshold
    monkeypatch.setattr(report_pages, "SINGLE_FILE_MAX_ANSWERS", 7)
    monkeypatch.setattr("runner.views.report.SINGLE_FILE_MAX_ANSWERS", 7)
    assert write_report_files(store, tmp_path / "b.html")[1] == 1  # default page size: 100 questions a page
    assert write_report_files(store, tmp_path / "c.html", single_file_max=8)[1] == 0


def test_a_paged_report_reads_each_record_once_and_never_holds_them_all(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report reads the records as they come (``Store.iter_records``), each file once, and no snapshot holding
    every record is taken: at the end of the read, no more than the last record is alive."""
    from runner.cli import main
    from tests.conftest import watch_streaming

    out = tmp_path / "out"
    shutil.copytree(store, out)
    (out / "index.db").unlink(missing_ok=True)  # built again: the index's check reads the files too, and hands them on
    files = sorted(p for p in out.rglob("*.json") if p.stem.isdigit() and "runs" not in p.parts)
    parsed, alive_after = watch_streaming(monkeypatch, "report")
    monkeypatch.setenv("NO_PROGRESS", "1")
    assert main(["report", "--output-dir", str(out), *PAGED]) == 0
    assert len(files) == 8 and sorted(parsed) == files  # every record file once, none twice
    assert len(alive_after) == 1 and alive_after[0] <= 1, alive_after  # one read; 8 records, at most 1 kept
    assert len(pages_of(out / "report.html")) == 3


@pytest.mark.parametrize("filters", [{}, {"models": ["fake:canned"]}, {"personas": ["medical-exam"]}])
def test_the_streamed_report_is_the_snapshot_report(store: Path, tmp_path: Path, filters: dict[str, list[str]]
                                                    ) -> None:
    """Read as a stream (an output folder) or from a snapshot holding every record: the same files."""
    from runner.core.store import Store

    streamed, held = tmp_path / "a" / "report.html", tmp_path / "b" / "report.html"
    assert write_report_files(store, streamed, single_file_max=5, questions_per_page=3, **filters)[1] == 3
    assert write_report_files(Store(store).snapshot(), held, single_file_max=5, questions_per_page=3,
                              **filters)[1] == 3
    for a in [streamed, *pages_of(streamed)]:
        b = held.parent / a.relative_to(streamed.parent)
        when = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
        assert when.sub("", a.read_text(encoding="utf-8")) == when.sub("", b.read_text(encoding="utf-8")), a.name


def test_paged_report_in_a_headless_browser(browser: DevTools, paged: Path) -> None:  # noqa: F811
    session, url = open_report(browser, paged)
    assert browser.evaluate(session, "document.title") == "Model comparison report"
    shown = ("[...document.querySelectorAll('nav.toc a.qlink')].filter(a => a.getClientRects().length)"
             ".map(a => a.getAttribute('href'))")
    assert browser.evaluate(session, shown) == [f"report_pages/page-000{k}.html" for k in (1, 2, 3)]
    # A number in the filter box shows the page that holds it; "Only wrong or disagreeing" hides page 2.
    browser.evaluate(session, """(() => { const f = document.getElementById('toc-filter');
        f.value = '5'; f.dispatchEvent(new Event('input')); })()""")
    assert browser.evaluate(session, shown) == ["report_pages/page-0002.html"]
    browser.evaluate(session, """(() => { const f = document.getElementById('toc-filter');
        f.value = ''; f.dispatchEvent(new Event('input')); })()""")
    browser.evaluate(session, "document.getElementById('only-wrong').click()")
    assert browser.evaluate(session, shown) == ["report_pages/page-0001.html", "report_pages/page-0003.html"]
    assert browser.evaluate(session, "document.querySelectorAll('img.chart').length") == 1
    # report.html#q5 (a bookmark) goes to the page that holds question 5, where it is the target.
    browser.send("Page.navigate", session, url=url + "#q5")
    _wait(browser, session, "location.pathname.endsWith('/report_pages/page-0002.html') && "
                            "document.readyState === 'complete' && document.getElementById('q5').matches(':target')")
    _page_works(browser, session)
    # Enter on a number in a page's filter box goes to that question's page.
    browser.evaluate(session, """(() => { const f = document.getElementById('toc-filter'); f.value = '7';
        f.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true})); })()""")
    _wait(browser, session, "location.href.endsWith('/report_pages/page-0003.html#q7') && "
                            "document.readyState === 'complete' && document.getElementById('q7').matches(':target')")
    time.sleep(0.3)
    browser.send("Runtime.evaluate", session, expression="1")
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u.startswith("file://") or u.startswith("data:image/png") for u in requests), requests


def _wait(browser: DevTools, session: str, expression: str, timeout: float = 15) -> None:  # noqa: F811
    """Until ``expression`` is true in the tab (evaluations fail while it goes to another page)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if browser.evaluate(session, expression):
                return
        except (AssertionError, RuntimeError):  # the page is changing
            pass
        time.sleep(0.1)
    raise AssertionError(f"not true in {timeout} s: {expression} (at {browser.evaluate(session, 'location.href')})")


def _page_works(browser: DevTools, session: str) -> None:  # noqa: F811
    """A page: its questions and answers, its own filter and switch, links to the index and its neighbours."""
    page = browser.evaluate(session, """(() => ({
        sections: [...document.querySelectorAll('section.question')].map(s => s.id),
        cards: document.querySelectorAll('.card').length,
        verdicts: [...document.querySelectorAll('#q5 .verdict')].map(e => e.textContent),
        near: [...document.querySelectorAll('main > .pager a')].map(a => a.getAttribute('href')),
        pwned: typeof window.__pwned}))()""")
    assert page == {"sections": ["q4", "q5", "q6"], "cards": 3, "verdicts": ["chose A ✓"], "pwned": "undefined",
                    "near": ["page-0001.html", "../report.html", "page-0003.html"] * 2}
    links = ("[...document.querySelectorAll('nav.toc a.qlink')].filter(a => a.getClientRects().length)"
             ".map(a => a.getAttribute('href'))")
    browser.evaluate(session, """(() => { const f = document.getElementById('toc-filter');
        f.value = 'ldl'; f.dispatchEvent(new Event('input')); })()""")
    assert browser.evaluate(session, links) == ["#q5"]
    browser.evaluate(session, "document.getElementById('expand-all').click()")
    # The title of <b>an anticoagulant</b> is text, not markup.
    assert browser.evaluate(session, "document.querySelector('#q4 .qtext').textContent") == \
        "Which is <b>an anticoagulant</b>?"
