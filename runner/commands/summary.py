"""The closing summary table of a run."""

from __future__ import annotations

import sys
from typing import TextIO

from runner.core.text import sanitize
from runner.engine import RunReport


def format_summary(report: RunReport) -> str:
    """A plain-text table: model, persona, answered, skipped, failed, tokens, time, cost."""
    grading = report.kind in ("grade", "pairwise")
    done = {"grade": "graded", "pairwise": "compared"}.get(report.kind, "answered")
    header = ("judge" if grading else "model", "persona", done, "skipped", "failed",
              "tokens in/out", "time s", "cost $")
    rows = [header]
    for s in report.summaries:
        cost = f"{s.cost_usd:.4f}" if s.cost_usd is not None else "-"
        rows.append((s.label, s.persona, str(s.answered), str(s.skipped), str(s.failed),
                     f"{s.prompt_tokens}/{s.completion_tokens}", f"{s.seconds:.1f}", cost))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors = sorted({f"{s.label}: {s.error}" for s in report.summaries if s.error})
    out = "\n".join(lines)
    if errors:
        out += "\n\nNot run:\n" + "\n".join(f"  {e}" for e in errors)
    failed = sum(s.failed for s in report.summaries)
    replaced = sum(s.replaced for s in report.summaries)
    changed = sum(s.changed for s in report.summaries)
    folder = "<model>" + (f"@{report.tag}" if report.tag else "")
    if report.kind == "pairwise":
        out += (f"\n\nComparisons saved under {report.output_dir}/{report.set_name}/_pairwise/<judge>/<persona>/"
                f"<model-a>+vs+<model-b>/ (personas compared: <persona-a>+vs+<persona-b>/<model>/; question set "
                f"{report.set_name!r}); run manifest: {report.manifest_path}")
    elif grading:
        out += (f"\n\nGrades saved under {report.output_dir}/{report.set_name}/_grades/<judge>/<persona>/<model>/ "
                f"(question set {report.set_name!r}); run manifest: {report.manifest_path}")
    else:
        out += (f"\n\nAnswers saved under {report.output_dir}/{report.set_name}/<persona>/{folder}/ (question set "
                f"{report.set_name!r}); run manifest: {report.manifest_path}")
    if replaced and grading:
        what = "comparison(s)" if report.kind == "pairwise" else "grade(s)"
        out += (f"\nReplaced {replaced} saved {what}: made of answers answered again since, or with another judge "
                "setting, template or rubric (the saved ones are overwritten).")
    elif replaced:
        why = f" ({changed} because the question changed)" if changed else ""
        out += f"\nReplaced {replaced} saved answer(s){why}."
    unsaved = sum(s.unsaved for s in report.summaries)
    if unsaved:
        out += (f"\n{unsaved} answer(s) could not be saved (the messages above name the files and the problems); "
                "they count as failed.")
    not_run = sum(s.failed for s in report.summaries if s.error)  # a retry alone cannot fix these
    if failed - not_run and report.kind == "pairwise":
        out += (f"\n{failed - not_run} pair(s) could not be compared in both orders (see above); grade --pairwise "
                "again to ask the judge only for the orders not judged.")
    elif failed - not_run and grading:
        out += (f"\n{failed - not_run} answer(s) could not be graded (see above); grade again to ask the judge only "
                "for the rubric items not graded.")
    elif failed - not_run:
        out += f"\n{failed - not_run} answer(s) failed; run the same command again to retry only those."
    if not_run:
        out += (f"\n{not_run} answer(s) were not asked because their model could not run: do what 'Not run' says "
                "above, then run the same command again.")
    if report.stopped:
        not_asked = sum(s.not_asked for s in report.summaries)
        out += (f"\nStopped early: {report.stopped}. {not_asked} answer(s) were not asked. Free some space and run "
                "the same command again: saved answers are skipped.")
    for problem in report.problems:
        out += f"\nProblem: {problem}"
    return out


def print_summary(report: RunReport, stream: TextIO | None = None) -> None:
    """Print the summary table to stdout (or ``stream``)."""
    print(sanitize(format_summary(report)), file=stream or sys.stdout)  # errors quote servers: no escapes
