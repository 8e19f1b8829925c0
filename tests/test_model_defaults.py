"""Model-card generation defaults: used where neither a flag nor the config file sets a value, recorded, keyed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from runner.core.settings import GenerationSettings, merge_settings
from runner.providers.catalog import resolve_model

CARD = {"temperature": 0.2, "top_p": 0.9, "seed": 1234, "repetition_penalty": 1.1}


def test_card_defaults_fill_only_what_the_user_left_unset() -> None:
    smollm = resolve_model("smollm2-135m-instruct")
    assert smollm.generation == CARD
    plain = smollm.settings_for(GenerationSettings())
    assert {k: getattr(plain, k) for k in CARD} == CARD and not plain.greedy
    given = merge_settings(GenerationSettings(), {"temperature": 0.0, "max_new_tokens": 64})
    greedy = smollm.settings_for(given)
    assert greedy.greedy and greedy.max_new_tokens == 64 and greedy.repetition_penalty == 1.1
    assert "top_p" not in greedy.answer_key_fields()  # greedy: sampling settings do not change the answer
    # a model without card defaults keeps the run's settings; API models are never sent the local-only penalty
    assert resolve_model("fake:echo").settings_for(given) is given
    gpt = resolve_model("openai:gpt-4o").settings_for(merge_settings(GenerationSettings(), {"repetition_penalty": 1.3}))
    assert gpt.repetition_penalty is None
    both = merge_settings(GenerationSettings(), {"frequency_penalty": 0.5, "repetition_penalty": 1.2})
    assert smollm.settings_for(both).frequency_penalty is None  # local models use the repetition penalty
    assert resolve_model("openai:gpt-4o").settings_for(both).frequency_penalty == 0.5
    assert "frequency_penalty" in resolve_model("openai:gpt-4o").settings_for(both).answer_key_fields()


def test_the_default_run_records_the_card_settings_and_a_flag_overrides_them(
        cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"question": "Reply with the single word OK."}\n', encoding="utf-8")
    done = cli("--questions", "q.jsonl", "--models", "smollm2-135m-instruct", "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/q/*/*/1.json")]
    assert {k: record["settings"][k] for k in CARD} == CARD and record["settings"]["max_new_tokens"] == 8
    greedy = cli("--questions", "q.jsonl", "--models", "smollm2-135m-instruct", "--max-new-tokens", "8",
                 "--temperature", "0", "--tag", "greedy")
    assert greedy.returncode == 0, greedy.stderr
    (tagged,) = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/q/*/*@greedy/1.json")]
    assert tagged["settings"]["temperature"] == 0.0


def test_the_manifest_and_the_report_say_which_model_ran_with_its_card_settings(
        cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    from runner.core.personas import Persona
    from runner.core.questions import Question
    from runner.engine.manifest import build_manifest

    specs = [resolve_model("smollm2-135m-instruct"), resolve_model("fake:echo")]
    manifest = build_manifest("r", [Question(n=1, question="q?")], None, specs, [Persona("p", "t", "x")],
                              GenerationSettings(), None)
    smollm, fake = manifest["models"]
    assert smollm["settings"] == CARD and "settings" not in fake
    from runner.views.report import _settings_section

    shown = _settings_section([manifest], "q", [], 1)
    assert "temperature=0.0" in shown  # the run's settings, then the model that ran with its own
    assert "smollm2-135m-instruct: temperature=0.2, top_p=0.9, seed=1234, repetition_penalty=1.1" in shown
    (tmp_path / "q.jsonl").write_text('{"question": "Say OK."}\n', encoding="utf-8")
    assert cli("--questions", "q.jsonl", "--models", "fake:echo").returncode == 0
    assert cli("report").returncode == 0
    html = (tmp_path / "outputs" / "report.html").read_text(encoding="utf-8")
    assert "temperature=0.0" in html and "repetition_penalty" not in html  # fake:echo ran with the run's settings
