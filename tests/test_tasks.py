"""The benchmark-family registry: what loading, prompts, scoring, the leaderboard and the CLI read from it."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.commands import score
from runner.core.errors import UsageError
from runner.core.questions import Question
from runner.tasks import harness, registry
from runner.tasks.family import Family, HubDataset, option_lines
from runner.tasks.loaders import detect_format, load_benchmark, load_hub_dataset
from runner.views.scores import canonical_task, task_order, task_title

FIXTURES = Path(__file__).parent / "fixtures"


class Toy(Family):
    """A made-up family: ``stem`` / ``alts`` / ``key`` records, prompt ``Q: ...``."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Question fields of a toy record."""
        options = {"AB"[i]: text for i, text in enumerate(row["alts"])}
        return {"question": row["stem"], "options": options, "answer": row["key"]}

    def doc_to_text(self, q: Question) -> str:
        """``Q: {q}`` and the options."""
        return f"Q: {q.question}\n{option_lines(q.options)}A:"


TOY = Toy(name="toy", listing_order=50, leaderboard_order=5, keys=(frozenset({"stem", "alts"}),),
          tasks=(("toyqa", "ToyQA"),), prefixes=("toy",), default_task="toyqa", aliases={"toy_qa": "toyqa"},
          hub={"toyqa": HubDataset("someone/toyqa", "main", "dev")})


def format_choices() -> list[str]:
    parser = argparse.ArgumentParser()
    score.configure(parser)
    action = next(a for a in parser._actions if a.dest == "format")
    return list(action.choices or [])


def test_the_four_families_are_found_in_listing_order() -> None:
    assert [f.name for f in registry.discover()] == ["medqa", "medmcqa", "pubmedqa", "mmlu"]
    assert registry.discover() == registry.FAMILIES  # the same instances: each module's FAMILY


def test_every_family_format_is_a_format_choice() -> None:
    assert format_choices() == registry.format_names() == [f.name for f in registry.FAMILIES]
    for family in registry.FAMILIES:
        assert registry.family_by_format(family.name) is family


def test_an_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown format 'nope'; known formats: medqa, medmcqa, pubmedqa, mmlu"):
        registry.family_by_format("nope")


def test_family_of_maps_every_known_task_name_and_alias() -> None:
    for family in registry.FAMILIES:
        for task, _ in family.tasks:
            assert registry.family_of(task) is family, task
            assert harness.task_family(task) == family.name
        for alias, task in family.aliases.items():
            assert registry.family_of(task) is family and canonical_task(alias) == task
    assert harness.task_family("MMLU-anatomy") == "mmlu" and harness.task_family("pubmed_qa") == "pubmedqa"
    assert harness.task_family("my_custom_task") == "medqa" and harness.task_family(None) == "medqa"


def test_hub_datasets_are_the_harness_tasks_splits() -> None:
    # lm-evaluation-harness 0.4.13's task YAMLs: dataset_path, dataset_name, test_split, and the few-shot split
    # (fewshot_split, else training_split)
    assert registry.hub_dataset("medqa") == (registry.family_by_format("medqa"),
                                            HubDataset("GBaker/MedQA-USMLE-4-options-hf", None, "test", "train"))
    assert registry.hub_dataset("mmlu_anatomy")[1] == HubDataset("cais/mmlu", "anatomy", "test",  # type: ignore[index]
                                                                 "dev")
    assert registry.hub_dataset("pubmedqa")[1] == HubDataset(  # type: ignore[index]
        "bigbio/pubmed_qa", "pubmed_qa_labeled_fold0_source", "test", "train")
    assert registry.hub_dataset("medmcqa")[1] == HubDataset(  # type: ignore[index]
        "openlifescienceai/medmcqa", None, "validation", "train")
    assert registry.hub_dataset("someone/else") is None
    assert registry.family_by_format("mmlu").fewshot_sampler == "first_n"
    assert {registry.family_by_format(f).fewshot_sampler for f in ("medqa", "medmcqa", "pubmedqa")} == {"default"}


def test_leaderboard_order_comes_from_the_families() -> None:
    tasks = [task for task, _ in registry.leaderboard_tasks()]
    assert tasks == ["medmcqa", "medqa_4options", "mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_college_biology",
                     "mmlu_college_medicine", "mmlu_medical_genetics", "mmlu_professional_medicine", "pubmedqa"]
    assert task_order(["zzz", *reversed(tasks)]) == [*tasks, "zzz"]
    assert task_title("mmlu_clinical_knowledge") == "MMLU clinical knowledge"
    assert task_title("medqa_4options (dev)") == "MedQA (dev)"


def test_default_persona_and_dataset_help_come_from_the_families() -> None:
    assert score.EXAM_PERSONA == registry.DEFAULT_PERSONA == "medical-exam"
    assert registry.dataset_hints() == ["medqa", "medmcqa", "pubmedqa", "mmlu_<subject>"]


def test_a_new_family_module_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "more_families"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "helper.py").write_text("VALUE = 1\n", encoding="utf-8")  # no FAMILY: not a family
    (package / "toy.py").write_text(textwrap.dedent("""
        from runner.tasks.family import Family

        FAMILY = Family(name="toy", listing_order=5, leaderboard_order=5, keys=(), tasks=(), prefixes=())
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert [f.name for f in registry.discover("more_families")] == ["toy"]
    finally:
        for name in [m for m in sys.modules if m.startswith("more_families")]:
            del sys.modules[name]


def test_an_added_family_reaches_loading_prompts_scoring_and_the_cli(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, TOY))
    assert format_choices()[-1] == "toy" and registry.dataset_hints()[-1] == "toy"
    path = tmp_path / "toy.jsonl"
    path.write_text(json.dumps({"stem": "Is it?", "alts": ["Yes", "No"], "key": "B"}) + "\n", encoding="utf-8")
    assert detect_format({"stem": 1, "alts": 2}) == "toy"
    [q] = load_benchmark(path)
    assert (q.task, q.answer, q.options) == ("toyqa", "B", {"A": "Yes", "B": "No"})
    request = harness.build_request(q)
    assert request.context == "Q: Is it?\nA. Yes\nB. No\nA:" and request.choices == ["A", "B"] and request.gold == 1
    assert canonical_task("Toy-QA") == "toyqa" and task_title("toyqa") == "ToyQA"
    assert task_order(["pubmedqa", "toyqa", "medmcqa"]) == ["toyqa", "medmcqa", "pubmedqa"]

    calls = []

    def load_dataset(path: str, config: str | None, split: str) -> list[dict[str, Any]]:
        calls.append((path, config, split))
        return [{"stem": "Is it?", "alts": ["Yes", "No"], "key": "A"}]

    monkeypatch.setitem(sys.modules, "datasets", argparse.Namespace(load_dataset=load_dataset))
    [hub_q] = load_hub_dataset("toyqa")
    assert calls == [("someone/toyqa", "main", "dev")] and hub_q.task == "toyqa" and hub_q.answer == "A"
