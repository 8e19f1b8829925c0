"""The ``tasks`` sub-command: the benchmark families, their harness tasks and the ``--dataset`` names.

Everything comes from ``runner.tasks.registry.FAMILIES`` (one module per family); nothing is listed here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``tasks`` options to its sub-parser."""
    parser.description = ("List the benchmark tasks: each family's harness task names and display names, its "
                          "--format name and the keys that show its files, and the --dataset short names with the "
                          "hub path, configuration, split scored and the split few-shot examples come from.")
    parser.add_argument("--json", action="store_true", help="print the data as JSON")


def task_listing() -> list[dict[str, Any]]:
    """One dict per benchmark family, in ``--format`` listing order: tasks, datasets, aliases, sampler, persona."""
    from runner.tasks.registry import FAMILIES

    out = []
    for family in FAMILIES:
        datasets = [{"name": name, "path": hub.path, "config": hub.config, "split": hub.split,
                     "fewshot_split": hub.fewshot_split, "task": family.hub_task(name) or family.default_task}
                    for name, hub in family.hub.items()]
        out.append({"family": family.name, "format": family.name,
                    "file_keys": [sorted(keys) for keys in family.keys],
                    "tasks": [{"task": task, "name": name} for task, name in family.tasks],
                    "default_task": family.default_task, "datasets": datasets, "aliases": dict(family.aliases),
                    "fewshot_sampler": family.fewshot_sampler, "persona": family.persona})
    return out


def execute(args: argparse.Namespace) -> int:
    """Print the task listing (or its JSON); returns the exit status."""
    from runner.tasks.fewshot import FEWSHOT_SEED

    rows = task_listing()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    samplers = {"default": f"random per task, seed {FEWSHOT_SEED} (the harness's default)",
                "first_n": "the first K (the harness's first_n)"}
    width = max((len(x) for r in rows for x in [*(t["task"] for t in r["tasks"]), *(d["name"] for d in r["datasets"])]),
                default=10)
    for row in rows:
        keys = " or ".join("+".join(k) for k in row["file_keys"])
        print(f"{row['family']}  (--format {row['format']}; files with keys {keys})")
        for task in row["tasks"]:
            print(f"  task     {task['task']:<{width + 10}} {task['name']}")
        for ds in row["datasets"]:
            where = ds["path"] + (f" ({ds['config']})" if ds["config"] else "")
            fewshot = f"; few-shot from {ds['fewshot_split']}" if ds["fewshot_split"] else ""
            print(f"  dataset  --dataset {ds['name']:<{width}} {where}, split {ds['split']}{fewshot}; task "
                  f"{ds['task']}")
        if row["aliases"]:
            print("  also     " + ", ".join(f"{a} -> {t}" for a, t in row["aliases"].items()))
        print(f"  few-shot {samplers.get(row['fewshot_sampler'], row['fewshot_sampler'])}; free-text answers "
              f"under persona {row['persona']}\n")
    print("Score one: score --dataset NAME --models ...; any hub dataset: --dataset PATH --subset NAME --split NAME; "
          "your own files: --data FILE [--format NAME].")
    return 0
