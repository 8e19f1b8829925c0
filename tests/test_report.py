"""``report``: the self-contained HTML file, parsed as HTML and opened in a real headless browser."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from runner.core.personas import resolve_persona
from runner.core.questions import Question, load_questions
from runner.core.settings import GenerationSettings
from runner.core.store import SetRef, Store, with_tag
from runner.engine.cache_keys import answer_key
from runner.engine.recording import make_record
from runner.providers.base import Result
from runner.providers.catalog import resolve_model
from runner.views.agreement import compute_agreement
from runner.views.answers import load_answers
from runner.views.report import build_report
from tests.conftest import REPO, write_jsonl

HOSTILE = ('<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png" onerror="window.__pwned = 2">'
           '<a href="javascript:alert(1)">click</a> "quotes" & \'apostrophes\' \x1b[31m')
LONG = "Metformin lowers hepatic glucose output. " * 60


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (usable from module-scoped fixtures)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"NO_PROGRESS": "1", "PYTHONPATH": str(REPO)})
    return subprocess.run([sys.executable, str(REPO / "medical_model_runner.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def save_answer(out: Path, set_name: str, question: Question, persona: str, model: str, text: str = "",
                tag: str | None = None, **result: Any) -> dict[str, Any]:
    """Save one answer the way the engine does (``make_record``, then the set's ``save``), made by no model."""
    spec, who, settings = resolve_model(model), resolve_persona(persona), GenerationSettings()
    record = make_record(question, who, spec, settings, Result(text=text, **result),
                         answer_key(question, who, spec, settings), "test-run", set_name=set_name, tag=tag)
    space = Store(out).questions_set(set_name)
    space.claim(SetRef(set_name))
    space.save(persona, with_tag(spec.slug, tag), question.n, record, text)
    return record


class Tree(HTMLParser):
    """Collects every start tag with its attributes, the text, and the ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.script_text if self._in_script else self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}


def parse(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    tree.close()
    return tree


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three fake models (one always failing) under two personas, plus a hostile, a long and a priced answer."""
    base = tmp_path_factory.mktemp("report")
    questions = write_jsonl(base / "questions.jsonl", [
        {"id": f"q{i}", "question": text} for i, text in enumerate([
            "What are the symptoms of type 2 diabetes?", "How does metformin work?", "What do statins do?",
            "Is 胰岛素 the same as insulin?"], start=1)])
    done = run_cli("run", "--questions", str(questions), "--models", "fake:echo,fake:async-echo,fake:fail",
                   "--persona", "cardiologist,general-physician", "--output-dir", "out", cwd=base)
    assert done.returncode == 1, done.stderr
    out, saved = base / "out", load_questions(questions)
    save_answer(out, "questions", saved[1], "cardiologist", "fake:hostile", HOSTILE)
    save_answer(out, "questions", saved[2], "cardiologist", "gpt-4o", LONG, prompt_tokens=120,
                completion_tokens=380, latency_s=2.5)
    return out


@pytest.fixture(scope="module")
def report(store: Path) -> Path:
    done = run_cli("report", "--output-dir", "out", cwd=store.parent)
    assert done.returncode == 0, done.stderr
    path = store / "report.html"
    assert done.stdout.startswith("Report written to out/report.html") and path.resolve().as_uri() in done.stdout
    return path


def test_report_content(report: Path) -> None:
    tree = parse(report.read_text(encoding="utf-8"))
    text = " ".join(" ".join(tree.text).split())
    assert {"settings", "models", "q1", "q2", "q3", "q4"} <= tree.ids
    links = [a["href"] for a in tree.all("a") if (a.get("href") or "").startswith("#q")]
    assert links == ["#q1", "#q2", "#q3", "#q4"]
    # Run settings and the summary per model.
    assert "max_new_tokens=512" in text and "temperature=0.0" in text and "finished" in text
    for label in ("fake:echo", "fake:async-echo", "fake:fail", "fake:hostile", "gpt-4o", "cardiologist",
                  "general-physician"):
        assert label in text
    rows = _summary_rows(report.read_text(encoding="utf-8"))
    # model, personas, answered, failed, tokens in, tokens out, mean latency, total time, cost
    assert rows["fake:echo"][1:4] == ["cardiologist, general-physician", "8", "0"]
    assert rows["fake:fail"][2:4] == ["0", "8"]
    assert rows["gpt-4o"][-1] == "$0.0041"  # 120 x $2.50 + 380 x $10.00 per million tokens (catalog prices)
    assert rows["fake:echo"][-1] == "-"
    # Answers, failures, non-ASCII text, and the long answer collapsed in <details>.
    assert "fake failure (fake:fail always fails)" in text and "Is 胰岛素 the same as insulin?" in text
    assert "You asked: How does metformin work?" in text
    assert {"class": "more"} in tree.all("details") and "Show the full answer (300 words)" in text
    # Self-contained: no external resource of any kind.
    assert not tree.all("link") and not tree.all("iframe")
    for _, attrs in tree.tags:
        for name in ("src", "href", "action"):
            assert not (attrs.get(name) or "#").lower().startswith(("http", "//", "javascript")), attrs


def _summary_rows(html: str) -> dict[str, list[str]]:
    section = html.split('id="models"', 1)[1].split("</section>", 1)[0]
    rows = {}
    for row in section.split("<tr>")[2:]:
        tree = parse(row)
        cells = [c.strip() for c in tree.text if c.strip()]
        rows[cells[0]] = cells
    return rows


def test_hostile_answer_is_text(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    tree = parse(html)
    assert len(tree.all("script")) == 1  # the report's own, and no other
    assert "__pwned" not in "".join(tree.script_text)
    assert not tree.all("img")
    assert not [a for a in tree.all("a") if "javascript" in (a.get("href") or "")]
    shown = "".join(tree.text)
    assert '<script>window.__pwned = 1</script><img src="http://127.0.0.1:9/x.png"' in shown
    assert "\x1b" not in html and "␛[31m" in shown  # an escape character is shown as its symbol
    assert "&lt;script&gt;" in html and "&quot;quotes&quot;" in html and "&#x27;apostrophes&#x27;" in html


def test_filters_out_path_and_agreement_section(store: Path, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "mine.html"
    done = run_cli("report", "--output-dir", str(store), "--models", "fake:echo", "--persona", "cardiologist",
                   "--out", str(target), "--title", "Echo <only>", cwd=store.parent)
    assert done.returncode == 0, done.stderr
    html = target.read_text(encoding="utf-8")
    answers_part = " ".join(parse(html.split('id="models"', 1)[1]).text)  # the run settings list every model run
    assert "Echo <only>" in " ".join(parse(html).text)
    assert "fake:echo" in answers_part and "fake:async-echo" not in answers_part
    assert "general-physician" not in answers_part
    answers = load_answers(store)
    agreement = compute_agreement(answers, lambda texts: [[float(len(t) % 7), 1.0, 0.5] for t in texts],
                                  encoder="fixed-test-vectors")
    html = build_report(store, agreement=agreement)
    tree = parse(html)
    assert "agreement" in tree.ids
    assert "fixed-test-vectors" in " ".join(tree.text) and "vs question" in " ".join(tree.text)


# --- multiple-choice answers: verdicts, scores, the "only wrong or disagreeing" filter ----------------------------

MCQ = [
    {"id": "m1", "question": "Which drug is a statin?", "answer": "A", "task": "medqa",
     "options": {"A": "Atorvastatin", "B": "Insulin", "C": "Metformin", "D": "Warfarin"}},
    {"id": "m2", "question": "First-line drug for type 2 diabetes?", "answer": "B", "task": "medqa",
     "options": {"A": "Insulin", "B": "Metformin, taken with meals", "C": "Warfarin", "D": "Aspirin"}},
    {"id": "m3", "question": "Which drug is an anticoagulant?", "answer": "D", "task": "medqa",
     "options": {"A": "Insulin", "B": "Metformin", "C": "Atorvastatin", "D": "Warfarin"}},
    {"id": "m4", "question": "Which lowers LDL cholesterol the most?", "answer": "A", "task": "medqa",
     "options": {"A": "Rosuvastatin", "B": "Aspirin", "C": "Insulin", "D": "Salt, in large daily amounts"}},
    {"id": "m5", "question": "Which is a biguanide?", "answer": "C", "task": "medqa",
     "options": {"A": "Insulin", "B": "Warfarin", "C": "Metformin", "D": "Aspirin"}},
    {"id": "o6", "question": "How does metformin work?"},
]
# What each model says, question by question (``fake:canned`` answers in order), and the verdict by hand.
FIRST = ["Answer: A", "Answer: B", "I cannot say which.", "Answer: A", "Answer: C", "It lowers glucose output."]
FIRST_RIGHT = [True, True, False, True, True]  # question 3 unparseable
# The variant ``@short`` ran with max_new_tokens=3: most of its answers end at the limit (still with a letter).
SECOND = ["Answer: A, atorvastatin obviously", "Answer: C (metformin is not)", "Answer: D",
          "Answer: C, then more words", "Answer: C, statin class", "Metformin lowers glucose output in the liver"]
SECOND_RIGHT = [True, False, True, False, True]
# The log-likelihood model: the choice by summed log-probability (acc) and per character (acc_norm).
LOGLIK = [("A", "A"), ("A", "B"), ("D", "D"), ("B", "B"), ("C", "C")]
SHOWN_BY_FILTER = {2, 3, 4}  # someone wrong, unparseable, or two letters; 1 and 5 all right, 6 is no MCQ


@pytest.fixture(scope="module")
def mcq_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A set of plain questions, then a multiple-choice set: two variants of a canned model, a failing one, and
    log-likelihood records of a local model."""
    from runner.engine import run
    from runner.engine.loglik import QuestionScore, loglik_key, loglik_persona, make_loglik_record
    from runner.engine.manifest import build_manifest, new_run_id
    from runner.providers.fake import FakeGenerator

    base = tmp_path_factory.mktemp("mcq")
    out = base / "out"
    plain = write_jsonl(base / "open.jsonl", [{"question": "What do statins do?"}, {"question": "Why exercise?"}])
    run(plain, ["fake:echo"], ["cardiologist"], output_dir=out, progress=False)
    mcq = write_jsonl(base / "mcq.jsonl", MCQ)
    FakeGenerator.canned.extend(FIRST)
    run(mcq, ["fake:canned", "fake:fail"], ["medical-exam"], output_dir=out, progress=False)
    FakeGenerator.canned.extend(SECOND)
    run(mcq, ["fake:canned"], ["medical-exam"], GenerationSettings(max_new_tokens=3), output_dir=out,
        progress=False, tag="short")
    FakeGenerator.reset()
    spec, settings = resolve_model("hf:test/tiny-loglik"), GenerationSettings()
    space = Store(out).questions_set("mcq")
    for q, (acc, norm) in zip(load_questions(mcq), LOGLIK, strict=False):
        letters = list(q.options or {})
        choices = [" " + q.options[k] for k in letters]  # type: ignore[index]
        logprobs = [-100.0] * 4
        logprobs[letters.index(acc)] = -1.0
        if norm != acc:  # a longer choice, a little less likely in sum, wins per character
            assert len(choices[letters.index(norm)]) > len(choices[letters.index(acc)])
            logprobs[letters.index(norm)] = -1.001
        score = QuestionScore(q.n, letters, choices, logprobs, [False] * 4, letters.index(q.answer or ""), "prompt")
        assert (score.letters[score.acc_index], score.letters[score.acc_norm_index]) == (acc, norm)
        record, body = make_loglik_record(q, score, spec, settings, loglik_key(q, spec, []), "loglik-run")
        record.update(set="mcq", tag=None)
        space.save("loglik", spec.slug, q.n, record, body)
    # ... and its run's manifest, as ``score --scoring loglik`` writes it (naming its sets).
    run_id = new_run_id()
    manifest = build_manifest(run_id, load_questions(mcq)[:5], mcq, [spec], [loglik_persona(0)], settings,
                              ["score", "--scoring", "loglik"])
    manifest.update(method="loglik", sets=["mcq"], tag=None, status="finished")
    Store(out).write_manifest(run_id, manifest)
    return out


@pytest.fixture(scope="module")
def mcq_report(mcq_store: Path) -> Path:
    done = run_cli("report", "--output-dir", "out", cwd=mcq_store.parent)
    assert done.returncode == 0, done.stderr
    assert "showing question set 'mcq'" in done.stderr  # the latest run's set, with a note naming the other
    return mcq_store / "report.html"


def _section(html: str, anchor: str) -> str:
    return html.split(f'id="{anchor}"', 1)[1].split("</section>", 1)[0]


def test_answer_cards_show_the_chosen_letter_and_verdict(mcq_report: Path) -> None:
    html = mcq_report.read_text(encoding="utf-8")
    expected = {1: ["chose A ✓", "chose A ✓"], 2: ["chose B ✓", "chose C ✗"], 3: ["unparseable ✗", "chose D ✓"],
                4: ["chose A ✓", "chose C ✗"], 5: ["chose C ✓", "chose C ✓"], 6: []}
    for n, badges in expected.items():
        section = _section(html, f"q{n}")
        tree = parse(section)
        shown = [t.strip() for t in tree.text if "✓" in t or "✗" in t]
        shown = [t for t in shown if t.startswith(("chose", "unparseable"))]
        assert shown == badges, (n, shown)
        classes = [a.get("class") for a in tree.all("span") if "verdict" in (a.get("class") or "")]
        assert classes == [f"badge {'ok' if b.endswith('✓') else 'bad'} verdict" for b in badges]
        right = sum(b.endswith("✓") for b in badges)
        assert (f"{right}/{len(badges)} right" in section) == bool(badges)
    # The failing model's cards are failures, with no verdict; the open question's cards have none either.
    assert _section(html, "q1").count('class="card failed"') == 1
    assert "right" not in " ".join(parse(_section(html, "q6")).text)


def test_scores_section_matches_collect_scores(mcq_store: Path, mcq_report: Path) -> None:
    from runner.views.scores import collect_scores

    html = mcq_report.read_text(encoding="utf-8")
    tree = parse(html)
    assert "scores" in tree.ids
    assert '<a href="#scores">Scores</a>' in html.split("<h2>Questions</h2>")[0]  # in the contents
    section = _section(html, "scores")
    rows = {}
    for row in section.split("<details class='comparisons'>")[0].split("<tr>")[2:]:
        cells = [c.strip() for c in parse(row.split("</table>")[0]).text if c.strip()]
        rows[cells[0]] = cells

    def pct(right: int, n: int) -> str:
        p = right / n
        return f"{100 * p:.1f} ± {100 * math.sqrt(p * (1 - p) / (n - 1)):.1f}"

    first, second = sum(FIRST_RIGHT), sum(SECOND_RIGHT)
    acc = sum(a == q["answer"] for (a, _), q in zip(LOGLIK, MCQ, strict=False))
    norm = sum(b == q["answer"] for (_, b), q in zip(LOGLIK, MCQ, strict=False))
    assert (first, second, acc, norm) == (4, 3, 3, 4)

    def ci(right: int, n: int) -> str:  # the 95% percentile bootstrap interval, computed here from the counts
        from runner.views.comparisons import task_seed
        from runner.views.stats import percentile_interval

        interval = percentile_interval([1.0] * right + [0.0] * (n - right), seed=task_seed(1234, "medqa_4options"))
        assert interval is not None
        return f"95% CI {100 * interval.low:.1f}–{100 * interval.high:.1f}"

    # model, method, MedQA, "k/n right", the interval, average, unparseable, failed
    assert rows["fake:canned"] == ["fake:canned", "free text · medical-exam", pct(first, 5), f"{first}/5 right",
                                   ci(first, 5), f"{100 * first / 5:.1f}", "1", "0"]
    assert rows["fake:canned@short"] == ["fake:canned@short", "free text · medical-exam", pct(second, 5),
                                         f"{second}/5 right", ci(second, 5), f"{100 * second / 5:.1f}", "0", "0"]
    assert rows["hf:test/tiny-loglik"] == [
        "hf:test/tiny-loglik", "log-likelihood (acc; acc_norm below)", pct(acc, 5),
        f"{acc}/5 right", ci(acc, 5), f"acc_norm {pct(norm, 5)}", f"{100 * acc / 5:.1f}", "0", "0"]
    # The same numbers as ``score`` computes from the store (the set shown only; loglik records included).
    scores = {s.label: s for s in collect_scores(Store(mcq_store).iter_records("mcq"))}
    assert {k: (s.n, s.correct, s.method) for k, s in scores.items() if s.n} == {
        "fake:canned": (5, first, "generate"), "fake:canned@short": (5, second, "generate"),
        "hf:test/tiny-loglik": (5, acc, "loglik")}
    for label in ("fake:canned", "fake:canned@short", "hf:test/tiny-loglik"):
        s = scores[label]
        assert f"{100 * s.accuracy:.1f} ± {100 * s.stderr:.1f}" == rows[label][2]
    assert f"{100 * scores['hf:test/tiny-loglik'].acc_norm:.1f}" in rows["hf:test/tiny-loglik"][5]
    text = " ".join(" ".join(parse(section).text).split())
    # The failing model has nothing to score; the short variant was cut off; question 3 could not be read.
    assert "fake:fail [medical-exam]: 5 failed, none to score" in text
    assert "fake:canned@short [medical-exam]: 4 of 5 answers were cut off by the token limit" in text
    assert "Unparseable answers (1)" in text and "question 3 · fake:canned [medical-exam] · MedQA: I cannot say" in text
    assert "<a href='#q3'>question 3</a>" in section
    # The paired comparison of the two free-text rows: McNemar on the discordant items (computed here by hand)
    a_only = sum(a and not b for a, b in zip(FIRST_RIGHT, SECOND_RIGHT, strict=True))
    b_only = sum(b and not a for a, b in zip(FIRST_RIGHT, SECOND_RIGHT, strict=True))
    p_value = min(1.0, 2 * sum(math.comb(a_only + b_only, i) for i in range(min(a_only, b_only) + 1))
                  / 2 ** (a_only + b_only))
    assert "Paired comparisons (1)" in text
    assert ("fake:canned fake:canned@short medical-exam MedQA 5 80.0 60.0 +20.0" in text
            and f"{a_only} {b_only} {p_value:.3g}" in text)
    # The chart is embedded as a PNG, and nothing was written into the output folder but the report.
    images = [a["src"] or "" for a in parse(section).all("img")]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    import base64

    assert base64.b64decode(images[0].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    written = sorted(p.name for p in mcq_store.iterdir() if p.is_file() and not p.name.startswith("index.db"))
    assert written == [".lock", "report.html"]  # (index.db*: the store's own index)
    assert not (mcq_store / "report_pages").exists()  # one file: no pages folder


def test_scores_follow_the_filters(mcq_store: Path) -> None:
    html = build_report(mcq_store, question_set="mcq", models=["fake:canned@short"])
    section = _section(html, "scores")
    assert "fake:canned@short" in section and "tiny-loglik" not in section and "fake:fail" not in section
    assert ">fake:canned<" not in section
    # A persona filter keeps the log-likelihood rows (they have no persona of their own).
    html = build_report(mcq_store, question_set="mcq", personas=["medical-exam"])
    assert "tiny-loglik" in _section(html, "scores")
    # A set without multiple-choice answers has no scores section and no filter.
    html = build_report(mcq_store, question_set="open")
    assert 'id="scores"' not in html and 'id="only-wrong"' not in html and "#scores" not in html
    assert 'data-disagree="1"' not in html


def test_disagreement_marks_and_other_sets(mcq_store: Path, mcq_report: Path) -> None:
    html = mcq_report.read_text(encoding="utf-8")
    tree = parse(html)
    sections = {a["id"]: a.get("data-disagree") for a in tree.all("section") if (a.get("id") or "").startswith("q")}
    assert sections == {f"q{n}": str(int(n in SHOWN_BY_FILTER)) for n in range(1, 7)}
    links = {a["href"]: a.get("data-disagree") for a in tree.all("a") if "qlink" in (a.get("class") or "")}
    assert links == {f"#{k}": v for k, v in sections.items()}
    assert {"type": "checkbox", "id": "only-wrong"} in tree.all("input")
    text = " ".join(" ".join(tree.text).split())
    assert "Only wrong or disagreeing 3 of 6" in text
    # The set shown is named, and the other set of the folder comes with the command that reports it.
    assert "question set mcq · 6 questions" in text
    assert ("The folder also holds: open (2 questions). Report another with python medical_model_runner.py "
            "report --output-dir out --set open --out out/report-open.html") in text
    settings = " ".join(" ".join(parse(_section(html, "settings")).text).split())
    assert "Question set mcq" in settings and "mcq.jsonl" in settings
    assert "3 runs (1 more in this folder wrote to other sets)" in settings and "open.jsonl" not in settings
    assert "(5) · log-likelihood" in settings and "hf:test/tiny-loglik" in settings
    done = run_cli("report", "--output-dir", "out", "--set", "open", "--out", "out/report-open.html",
                   cwd=mcq_store.parent)
    assert done.returncode == 0, done.stderr
    other = " ".join(" ".join(parse((mcq_store / "report-open.html").read_text(encoding="utf-8")).text).split())
    assert "question set open · 2 questions" in other and "The folder also holds: mcq (6 questions)" in other
    (mcq_store / "report-open.html").unlink()


def test_no_answers_is_a_usage_error(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = cli("report", "--output-dir", "empty")
    assert done.returncode == 2 and "no saved answers under empty" in done.stderr
    assert not (tmp_path / "empty" / "report.html").exists()


# --- a real browser -------------------------------------------------------------------------------------------

def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """The smallest Chrome DevTools Protocol client: commands with ids, events collected as they arrive."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, timeout: float = 20, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
def browser(tmp_path: Path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium found (CI installs Debian's chromium package in .ci/run)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HOME": str(tmp_path)})
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit status {proc.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=20) as ws:
            yield DevTools(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_report(browser: DevTools, report: Path) -> tuple[str, str]:
    """Open a report in a new tab; its session id and URL."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session)
    browser.events.clear()
    url = report.resolve().as_uri()
    browser.send("Page.navigate", session, url=url)
    browser.wait_for("Page.loadEventFired")
    assert browser.evaluate(session, "document.readyState") == "complete"
    return session, url


def check_quiet(browser: DevTools, session: str, url: str) -> None:
    """No error in the console or the log, and no request but the file itself (and its data: image)."""
    time.sleep(0.3)
    browser.send("Runtime.evaluate", session, expression="1")  # drain events that arrived meanwhile
    errors = [e for e in browser.events if
              (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u.split("#")[0] == url or u.startswith("data:image/png;base64,") for u in requests), \
        requests


def test_report_in_a_headless_browser(browser: DevTools, report: Path, mcq_report: Path) -> None:
    session, url = open_report(browser, report)
    assert browser.evaluate(session, "document.title") == "Model comparison report"
    # Navigation: click question 3 in the question list; its section becomes the :target and is on screen.
    browser.evaluate(session, "document.querySelector('nav.toc a[href=\"#q3\"]').click()")
    visible = browser.evaluate(session, """new Promise(resolve => {
        const started = Date.now();
        (function check() {
          const q = document.getElementById('q3'), r = q.getBoundingClientRect();
          const ok = location.hash === '#q3' && q.matches(':target') && r.top >= -1 && r.top < innerHeight / 2;
          if (ok || Date.now() - started > 5000) resolve({ok, hash: location.hash, top: r.top});
          else setTimeout(check, 50);
        })();
    })""")
    assert visible["ok"], visible
    assert browser.evaluate(session, "document.querySelector('nav.toc a.current').getAttribute('href')") == "#q3"
    # The hostile answer stayed text and ran nothing; the report's own script ran (the CSP allowed it).
    assert browser.evaluate(session, "typeof window.__pwned") == "undefined"
    assert browser.evaluate(session, "document.querySelectorAll('img, iframe, link').length") == 0
    browser.evaluate(session, "document.getElementById('expand-all').click()")
    assert browser.evaluate(session, "[...document.querySelectorAll('details.more')].every(d => d.open)")
    browser.evaluate(session, "document.getElementById('q2').scrollIntoView()")
    check_quiet(browser, session, url)

    # The multiple-choice report: the scores and the chart render, the verdicts show in their colours, and
    # "Only wrong or disagreeing" hides the questions every model got right (and the open question).
    session, url = open_report(browser, mcq_report)
    scores = browser.evaluate(session, """(() => {
        const s = document.getElementById('scores'), img = s.querySelector('img.chart');
        return {height: s.getBoundingClientRect().height, rows: s.querySelectorAll('table.scores tr').length,
                img: img.complete && img.naturalWidth > 0, width: img.getBoundingClientRect().width};
    })()""")
    assert scores["height"] > 300 and scores["rows"] == 4 and scores["img"] and scores["width"] > 300, scores
    verdicts = browser.evaluate(session, """[...document.querySelectorAll('#q3 .verdict')].map(e => ({
        text: e.textContent, color: getComputedStyle(e).color, visible: e.getBoundingClientRect().width > 0}))""")
    assert verdicts == [{"text": "unparseable ✗", "color": "rgb(180, 35, 24)", "visible": True},
                        {"text": "chose D ✓", "color": "rgb(26, 127, 75)", "visible": True}]
    shown = """(() => ({
        sections: [...document.querySelectorAll('section.question')].filter(s => s.getClientRects().length)
          .map(s => s.id),
        links: [...document.querySelectorAll('nav.toc a.qlink')].filter(a => a.getClientRects().length)
          .map(a => a.getAttribute('href'))}))()"""
    every = [f"q{n}" for n in range(1, 7)]
    assert browser.evaluate(session, shown) == {"sections": every, "links": [f"#{q}" for q in every]}
    browser.evaluate(session, "document.getElementById('only-wrong').click()")
    flagged = sorted(f"q{n}" for n in SHOWN_BY_FILTER)
    assert browser.evaluate(session, shown) == {"sections": flagged, "links": [f"#{q}" for q in flagged]}
    # The text filter narrows the question list further; unticking brings every question back.
    browser.evaluate(session, """(() => { const f = document.getElementById('toc-filter');
        f.value = 'anticoagulant'; f.dispatchEvent(new Event('input')); })()""")
    assert browser.evaluate(session, shown) == {"sections": flagged, "links": ["#q3"]}
    browser.evaluate(session, "document.getElementById('only-wrong').click()")
    assert browser.evaluate(session, shown) == {"sections": every, "links": ["#q3"]}
    check_quiet(browser, session, url)


def test_the_answer_grid_fits_1400_px(browser: DevTools, tmp_path: Path) -> None:
    # five personas × three models, a fourth model with one answer (its other cells empty), and a single-persona set
    write_jsonl(tmp_path / "q.jsonl", [{"question": "What are the symptoms of type 2 diabetes?"},
                                       {"question": "How does metformin work?"}])
    personas = "oncology-researcher,cardiologist,general-physician,patient-educator,research-scientist"
    for args in (["-m", "fake:echo,fake:async-echo,fake:slow", "-p", personas],
                 ["-m", "fake:canned", "--limit", "1"],
                 ["-m", "fake:echo,fake:async-echo,fake:slow", "--set", "one"]):
        assert run_cli("run", "-q", "q.jsonl", *args, cwd=tmp_path).returncode == 0
    assert run_cli("report", "--set", "q", "--out", "five.html", cwd=tmp_path).returncode == 0
    assert run_cli("report", "--set", "one", "--out", "one.html", cwd=tmp_path).returncode == 0
    session, _ = open_report(browser, tmp_path / "five.html")
    browser.send("Emulation.setDeviceMetricsOverride", session, width=1400, height=900, deviceScaleFactor=1,
                 mobile=False)
    layout = browser.evaluate(session, """(() => {
        const grid = document.querySelector('#q1 .scroll > .grid'), cards = [...grid.querySelectorAll('.card')];
        const missing = cards.filter(c => c.classList.contains('missing'));
        const full = cards.filter(c => !c.classList.contains('missing'));
        return {width: innerWidth, right: Math.max(...cards.map(c => c.getBoundingClientRect().right)),
                columns: grid.querySelectorAll('.colhead').length, missing: missing.length,
                missingHeight: Math.max(...missing.map(c => c.getBoundingClientRect().height)),
                fullHeight: Math.min(...full.map(c => c.getBoundingClientRect().height)),
                earlierRuns: !!document.querySelector('#settings details.runs'),
                settingsRows: document.querySelectorAll('#settings > .scroll > table tr').length};
    })()""")
    assert layout["columns"] == 5 and layout["right"] <= layout["width"], layout  # no clipped persona column
    assert layout["missing"] == 4 and layout["missingHeight"] < layout["fullHeight"], layout  # empty cells collapse
    assert layout["earlierRuns"] and layout["settingsRows"] == 2, layout  # the latest run shown, the others folded
    session, _ = open_report(browser, tmp_path / "one.html")
    browser.send("Emulation.setDeviceMetricsOverride", session, width=1400, height=900, deviceScaleFactor=1,
                 mobile=False)
    tops = browser.evaluate(session, "[...document.querySelectorAll('#q1 .grid .card')]"
                                     ".map(c => Math.round(c.getBoundingClientRect().top))")
    assert len(tops) == 3 and len(set(tops)) == 1, tops  # three models side by side, not 2 + 1
