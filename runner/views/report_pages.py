"""A report too big for one file: a small index (``report.html``) and the questions on pages in a folder beside it.

Past ``SINGLE_FILE_MAX_ANSWERS`` answer cards, one HTML file stops being a page a browser can open (150,000 answers
made 342 MB). The paged report keeps every section of the one file and splits it in two kinds of file:

- the index, ``report.html``: the run settings, the models, the scores and chart, agreement, grades and pairwise
  sections, and the question list as *one link per page* (``Questions 101–200``, with how many of its questions are
  wrong or disagreeing), plus a table of the pages with their first question. It grows with the number of pages,
  not of questions or answers: about 0.6 KB a page, so 50,000 questions (500 pages) make an index of ~430 KB.
- the pages, ``report_pages/page-0001.html`` …: ``QUESTIONS_PER_PAGE`` questions each, in number order, with their
  answer cards exactly as the one file shows them; each page has its own question list with the text filter and
  "Only wrong or disagreeing" (they work within the page), links back to the index and to its neighbours.

Why one link per page rather than every question on the index: a list of every question (even compact embedded
data, about 100 bytes a question) grows with the questions and makes the index slow again; ranges keep it small at
any size, and a question is still one step away. Every file of the report carries the first question number of each
page (``#page-map``, a few bytes a page), so the shared script sends ``#qN`` — a link from the scores section, a
bookmark such as ``report.html#q123``, or a number typed in the filter box and Enter — to the page that holds
question N (``report_pages/page-0002.html#q123``), from the index or from any page, also from ``file://``. Every
file has the same head, stylesheet, script and Content-Security-Policy as the one-file report.

Pages are written one at a time (atomically, each rendered, written and dropped before the next), then the index;
then page files an earlier, bigger report left in the folder are removed. Only files this module wrote are removed:
named ``page-NNNN.html`` and starting with its generator mark; anything else in the folder is left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from runner.core.store import write_output
from runner.views.answers import QuestionAnswers
from runner.views.report_assets import document, esc

# Past this many answer cards the report is an index and pages; at or under it, one file as always. Short answers
# make about 2.2 KB of HTML a card: 3,000 cards are ~7 MB, which headless Chromium opens in ~4 s here (5,000: 10 MB,
# 6-7 s); longer answers make it bigger.
SINGLE_FILE_MAX_ANSWERS = 3_000
QUESTIONS_PER_PAGE = 100  # a fixed number per page, so question N's page never depends on the answers saved
PAGES_SUFFIX = "_pages"  # report.html -> report_pages/ (--out run1.html -> run1_pages/)
PAGE_MARK = '<meta name="generator" content="medical-model-runner report page">'
_PAGE_NAME = re.compile(r"page-[0-9]{4,}\.html\Z")


def pages_folder(index: Path) -> Path:
    """The folder of a report's pages: ``<name>_pages`` beside the index file."""
    return index.with_name(index.stem + PAGES_SUFFIX)


def page_name(number: int) -> str:
    """The file name of page ``number`` (1-based): ``page-0001.html``."""
    return f"page-{number:04d}.html"


@dataclass
class Page:
    """One page of a paged report: its number (1-based) and its questions, in number order."""

    number: int
    views: Sequence[QuestionAnswers]

    @property
    def first(self) -> int:
        """The first question number on the page."""
        return self.views[0].n

    @property
    def last(self) -> int:
        """The last question number on the page."""
        return self.views[-1].n

    @cached_property
    def flagged(self) -> int:
        """How many of its questions some answer got wrong (or unparseable), or where answers chose differently."""
        return sum(v.disagreement for v in self.views)

    @cached_property
    def answers(self) -> int:
        """The answer cards on the page."""
        return sum(len(v.answers) for v in self.views)

    @cached_property
    def failed(self) -> int:
        """The failed answers on the page."""
        return sum(not a.ok for v in self.views for a in v.answers)


def paginate(views: Sequence[QuestionAnswers], per_page: int = QUESTIONS_PER_PAGE) -> list[Page]:
    """``views`` (in number order) cut into pages of ``per_page`` questions."""
    per_page = max(1, per_page)
    return [Page(i // per_page + 1, views[i:i + per_page]) for i in range(0, len(views), per_page)]


def question_link(view: QuestionAnswers, href: str) -> str:
    """One entry of a question list: the number, the question on one line, a mark when answers failed."""
    failed = sum(not a.ok for a in view.answers)
    warn = f' <span class="warn" title="{failed} failed">●</span>' if failed else ""
    return (f'<a class="qlink" href="{esc(href)}" data-disagree="{int(view.disagreement)}" '
            f'title="{esc(view.question)}"><span class="num">{view.n}</span>'
            f"{esc(one_line(view.question, 90))}{warn}</a>")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def only_wrong_switch(flagged: int, total: int, what: str) -> str:
    """The "Only wrong or disagreeing" checkbox, with ``flagged of total`` (questions, or pages on the index)."""
    return ('<label class="only-wrong" title="Show only the multiple-choice questions that some answer got '
            'wrong (or left unparseable), or where the answers chose different letters">'
            '<input type="checkbox" id="only-wrong"> Only wrong or disagreeing '
            f'<span class="count">{flagged} of {total}{what}</span></label>')


class PagedReport:
    """Where each question of a paged report is, and the index's and pages' own parts (navigation, page map)."""

    def __init__(self, index: Path, pages: Sequence[Page]) -> None:
        self.index, self.pages, self.folder = index, list(pages), pages_folder(index)
        self._page_of = {v.n: p.number for p in self.pages for v in p.views}
        self._firsts = " ".join(str(p.first) for p in self.pages)

    @property
    def folder_href(self) -> str:
        """The pages' folder as a relative link from the index."""
        return quote(self.folder.name)

    def href_from_index(self, n: int) -> str | None:
        """The link from the index to question ``n`` (on its page); None for a question not shown."""
        number = self._page_of.get(n)
        return f"{self.folder_href}/{page_name(number)}#q{n}" if number else None

    def page_map(self, folder_href: str) -> str:
        """The first question of each page, for the script (``#qN`` to its page); ``folder_href`` as seen from the
        file that carries it."""
        return f'<div id="page-map" hidden data-folder="{esc(folder_href)}" data-firsts="{self._firsts}"></div>'

    def index_nav(self, sections: Sequence[tuple[str, str]], judged: bool) -> str:
        """The index's contents: its sections, then one link per page (a number in the filter box finds its page;
        "Only wrong or disagreeing" keeps the pages that have such questions)."""
        head = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in sections)
        switch = (only_wrong_switch(sum(p.flagged > 0 for p in self.pages), len(self.pages), " pages")
                  if judged else "")
        links = []
        for p in self.pages:
            flagged = f' <span class="count">· {p.flagged} flagged</span>' if judged else ""
            links.append(f'<a class="qlink plink" href="{self.folder_href}/{page_name(p.number)}" '
                         f'data-first="{p.first}" data-last="{p.last}" data-disagree="{int(p.flagged > 0)}" '
                         f'title="{esc(one_line(p.views[0].question, 200))}"><span class="num">{p.number}</span>'
                         f"Questions {p.first}–{p.last}{flagged}</a>")
        return ('<nav class="toc" aria-label="Contents"><h2>Report</h2>' + head
                + f'<h2>Questions ({len(self.pages)} pages)</h2><input id="toc-filter" type="search" '
                  'placeholder="Question number (Enter: go)" aria-label="Find a question by its number">'
                + switch + "".join(links) + "</nav>")

    def index_section(self, judged: bool) -> str:
        """The index's list of pages: each page's questions, answers, failures, flagged questions, first question."""
        total = sum(len(p.views) for p in self.pages)
        rows = []
        for p in self.pages:
            flagged = f"<td class='n'>{p.flagged}</td>" if judged else ""
            failed = f'<span class="badge bad">{p.failed}</span>' if p.failed else "0"
            rows.append(f"<tr><td class='n'><a href='{self.folder_href}/{page_name(p.number)}'>{p.number}</a></td>"
                        f"<td class='n'>{p.first}–{p.last}</td><td class='n'>{len(p.views)}</td>"
                        f"<td class='n'>{p.answers:,}</td><td class='n'>{failed}</td>{flagged}"
                        f"<td class='first'>{esc(one_line(p.views[0].question, 120))}</td></tr>")
        head = "<th class='n'>Wrong or disagreeing</th>" if judged else ""
        return ('<section class="block" id="questions"><h2>Questions</h2><p class="small muted">'
                f"{total:,} questions on {len(self.pages)} pages of up to {len(self.pages[0].views)} in the folder "
                f"<code>{esc(self.folder.name)}/</code> beside this file (keep them together). Each page lists its "
                "questions with a filter and links to its neighbours and back here; a question number typed in the "
                "box on the left, then Enter, opens the page that holds it (so does "
                f"<code>{esc(self.index.name)}#q123</code>).</p><div class='scroll'><table class='data pages'>"
                "<tr><th class='n'>Page</th><th class='n'>Questions</th><th class='n'>Count</th>"
                f"<th class='n'>Answers</th><th class='n'>Failed</th>{head}<th>First question</th></tr>"
                f"{''.join(rows)}</table></div></section>")

    def page_document(self, page: Page, title: str, subtitle: str, sections: Sequence[tuple[str, str]],
                      render_question: Callable[[QuestionAnswers], str]) -> str:
        """Page ``page`` as one self-contained HTML file: its questions' sections with their answer cards, its own
        question list (filter and "Only wrong or disagreeing" within the page), and links to the index and to its
        neighbours."""
        index = "../" + quote(self.index.name)
        count = len(self.pages)
        near = []
        if page.number > 1:
            near.append(f'<a rel="prev" href="{page_name(page.number - 1)}">‹ Page {page.number - 1}</a>')
        near.append(f'<a href="{index}">Report index</a>')
        if page.number < count:
            near.append(f'<a rel="next" href="{page_name(page.number + 1)}">Page {page.number + 1} ›</a>')
        pager = f'<div class="pager">{"".join(near)}<span class="muted">page {page.number} of {count}</span></div>'
        head = "".join(f'<a href="{index}#{anchor}">{esc(name)}</a>' for anchor, name in sections)
        judged = any(a.verdict for v in page.views for a in v.answers)
        switch = only_wrong_switch(page.flagged, len(page.views), "") if judged else ""
        nav = ('<nav class="toc" aria-label="Contents"><h2>Report</h2>' + head + pager
               + f"<h2>Questions {page.first}–{page.last}</h2>"
                 '<input id="toc-filter" type="search" placeholder="Filter (a number + Enter: go)" '
                 'aria-label="Filter the questions of this page">' + switch
               + "".join(question_link(v, f"#q{v.n}") for v in page.views) + "</nav>")
        toolbar = ('<div class="toolbar"><button type="button" id="expand-all">Expand all answers</button>'
                   '<button type="button" id="collapse-all">Collapse all answers</button></div>')
        main = "".join([pager, toolbar, *(render_question(v) for v in page.views), pager, self.page_map(".")])
        header = (f'<header class="top"><h1>{esc(title)}</h1><p>{esc(f"Page {page.number} of {count}: questions")} '
                  f"{page.first}–{page.last} · {esc(subtitle)}</p></header>")
        return document(f"{title} · page {page.number}", header, nav, main, head_extra=PAGE_MARK)

    def write(self, render_page: Callable[[Page], str], *, root: Path | None, fix: str) -> None:
        """Write every page (each rendered, written atomically and dropped before the next) into the pages' folder,
        readable by all; the index is written by the caller after this."""
        for page in self.pages:
            write_output(self.folder / page_name(page.number), render_page(page), root=root, mode=0o644, fix=fix)


def remove_stale_pages(folder: Path, keep: int = 0) -> int:
    """Remove the page files an earlier report wrote to ``folder`` past page ``keep``; returns how many.

    Only regular files named ``page-NNNN.html`` that begin with this module's mark are removed (never a link, a
    folder or another file); the folder goes too when nothing is left in it.
    """
    if folder.is_symlink() or not folder.is_dir():
        return 0
    removed = 0
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not _PAGE_NAME.match(entry.name) or int(entry.name[5:-5]) <= keep:
                continue
            with suppress(OSError):
                if entry.is_file(follow_symlinks=False) and _written_here(Path(entry.path)):
                    os.unlink(entry.path)
                    removed += 1
    if keep == 0:
        with suppress(OSError):
            folder.rmdir()  # only when empty
    return removed


def _written_here(path: Path) -> bool:
    """Whether ``path`` is a page this module wrote (its mark within the first bytes)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        return PAGE_MARK.encode("ascii") in fh.read(2048)
