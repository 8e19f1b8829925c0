"""``tasks``: the benchmark families' tasks and ``--dataset`` names, through the real command line."""

from __future__ import annotations

import json

from runner.tasks.registry import FAMILIES, hub_dataset, leaderboard_tasks


def test_tasks_json_lists_every_family_task_and_dataset(cli) -> None:
    proc = cli("tasks", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["family"] for r in rows] == [f.name for f in FAMILIES] == [r["format"] for r in rows]
    listed = {(t["task"], t["name"]) for r in rows for t in r["tasks"]}
    assert listed == set(leaderboard_tasks())
    assert {"medqa_4options", "medmcqa", "pubmedqa", "mmlu_anatomy", "mmlu_professional_medicine"} <= {
        t for t, _ in listed}
    for row in rows:
        for ds in row["datasets"]:
            family, hub = hub_dataset(ds["name"])
            assert family.name == row["family"]
            assert (ds["path"], ds["config"], ds["split"], ds["fewshot_split"]) == (
                hub.path, hub.config, hub.split, hub.fewshot_split)
    by_name = {ds["name"]: ds for r in rows for ds in r["datasets"]}
    assert by_name["pubmedqa"] == {"name": "pubmedqa", "path": "bigbio/pubmed_qa",
                                   "config": "pubmed_qa_labeled_fold0_source", "split": "test",
                                   "fewshot_split": "train", "task": "pubmedqa"}
    assert by_name["mmlu_anatomy"]["task"] == "mmlu_anatomy" and by_name["medqa"]["task"] == "medqa_4options"
    mmlu = next(r for r in rows if r["family"] == "mmlu")
    assert mmlu["fewshot_sampler"] == "first_n" and mmlu["aliases"]["anatomy"] == "mmlu_anatomy"


def test_tasks_text_names_tasks_display_names_and_hub_locations(cli) -> None:
    proc = cli("tasks")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for task, name in leaderboard_tasks():
        assert any(task in line and name in line for line in out.splitlines())
    for family in FAMILIES:
        assert f"--format {family.name}" in out
        for name, hub in family.hub.items():
            line = next(line for line in out.splitlines() if f"--dataset {name} " in line)
            assert hub.path in line and f"split {hub.split}" in line
            assert f"few-shot from {hub.fewshot_split}" in line
    assert "GBaker/MedQA-USMLE-4-options-hf" in out and "cais/mmlu (anatomy)" in out
    assert "seed 1234" in out and proc.stderr == ""
