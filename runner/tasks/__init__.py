"""Benchmark families: how each multiple-choice benchmark is loaded, prompted and scored.

``families/`` holds one module per family (MedQA, MedMCQA, PubMedQA, MMLU), each defining ``FAMILY``;
``family`` is their base class, ``registry`` finds them and answers the lookups (by format, by task name, by
hub dataset, the leaderboard's columns). ``loaders`` reads benchmark files and hub datasets, ``harness`` builds
lm-evaluation-harness requests, ``letters`` reads the chosen letter out of a free-text answer.
"""
