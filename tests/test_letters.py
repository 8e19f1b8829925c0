"""Letter extraction from free-text answers: a table of varied replies and the letter each chose."""

from __future__ import annotations

import pytest

from runner.tasks.letters import extract_letter

DRUGS = {"A": "Atorvastatin", "B": "Insulin", "C": "Metformin", "D": "Warfarin"}
PUBMED = {"A": "yes", "B": "no", "C": "maybe"}
FIVE = {"A": "Aorta", "B": "Vena cava", "C": "Pulmonary artery", "D": "Pulmonary vein", "E": "Coronary sinus"}
# The option sets of the questions the real small-model replies below answered (see SMOLLM2).
HYPERK = {"A": "Peaked T waves", "B": "U waves", "C": "Prolonged QT interval", "D": "Delta waves"}
T1DM = {"A": "Insulin glargine", "B": "Metformin", "C": "Lisinopril", "D": "Atorvastatin"}
STROKE = {"A": "Aspirin", "B": "Clopidogrel", "C": "Apixaban", "D": "Heparin flush"}
ANAPHYLAXIS = {"A": "Oral antihistamine", "B": "Intramuscular adrenaline", "C": "Nebulised salbutamol",
               "D": "Intravenous hydrocortisone"}
LDL = {"A": "Statins", "B": "Fibrates", "C": "Bile acid sequestrants", "D": "Niacin", "E": "Ezetimibe"}
VEGAN = {"A": "Iron", "B": "Folate", "C": "Vitamin B12", "D": "Vitamin C"}
DIGOXIN = {"A": "Hypokalaemia", "B": "Digoxin toxicity", "C": "Stroke", "D": "Migraine"}
RLQ = {"A": "Acute appendicitis", "B": "Renal colic", "C": "Gastroenteritis", "D": "Testicular torsion"}

# The option list exactly as the user message formats it (runner.core.questions.format_user_message), and the question
# before it: what a model that echoes its prompt writes.
T1DM_LIST = "A. Insulin glargine\nB. Metformin\nC. Lisinopril\nD. Atorvastatin"
T1DM_QUESTION = ("A 19-year-old woman presents with diabetic ketoacidosis and is newly diagnosed with type 1 diabetes. "
                 "Which long-term treatment does she need?\n\n")
INSTRUCTION = "Answer with the letter of the best option, e.g. 'Answer: A', and explain briefly."

CASES: list[tuple[str, dict[str, str], str | None]] = [
    # bare letters and their wrappings
    ("C", DRUGS, "C"),
    ("c", DRUGS, "C"),
    ("(C)", DRUGS, "C"),
    ("[B]", DRUGS, "B"),
    ("**B**", DRUGS, "B"),
    ("B.", DRUGS, "B"),
    ("  d  \n", DRUGS, "D"),
    ("Option B", DRUGS, "B"),
    # explicit statements
    ("The answer is (C).", DRUGS, "C"),
    ("The answer is C because metformin lowers hepatic glucose output.", DRUGS, "C"),
    ("Answer: c", DRUGS, "C"),
    ("answer: (b)", DRUGS, "B"),
    ("**Answer:** D", DRUGS, "D"),
    ("Answer: **A**", DRUGS, "A"),
    ("### Final answer\nB", DRUGS, "B"),
    ("The correct answer is option D.", DRUGS, "D"),
    ("Correct option: B", DRUGS, "B"),
    ("The best answer is A (Atorvastatin).", DRUGS, "A"),
    ("Final Answer: C", DRUGS, "C"),
    ("The answer would be: B", DRUGS, "B"),
    ("I would choose D.", DRUGS, "D"),
    ("I'd go with option A here.", DRUGS, "A"),
    ("Option B is correct: insulin lowers glucose directly.", DRUGS, "B"),
    ("C is the correct answer.", DRUGS, "C"),
    ("The final answer is $\\boxed{D}$", DRUGS, "D"),
    ("The answer is therefore A.", DRUGS, "A"),
    # a final answer after discussing the others
    ("A and B are wrong; the answer is D.", DRUGS, "D"),
    ("Option A is incorrect because statins lower cholesterol. Option B is wrong as well. "
     "Option C is the most appropriate choice here.", DRUGS, "C"),
    ("Let's consider each option. A: a statin. B: a hormone. C: a biguanide. D: an anticoagulant. "
     "The patient has atrial fibrillation, so the answer is D.", DRUGS, "D"),
    ("Answer with the letter? Sure. Considering A, B and C, the correct answer is B.", DRUGS, "B"),
    ("Answer: A\n\nWait, on reflection the answer is C.", DRUGS, "C"),
    ("The answer is not A; it is C.", DRUGS, "C"),
    # replies that start with the letter
    ("B. Insulin is required in type 1 diabetes.", DRUGS, "B"),
    ("D) Warfarin", DRUGS, "D"),
    ("(A) Atorvastatin, because it lowers LDL.", DRUGS, "A"),
    # only the option's text, without its letter
    ("Metformin", DRUGS, "C"),
    ("metformin.", DRUGS, "C"),
    ("The drug of choice here is warfarin for anticoagulation.", DRUGS, "D"),
    ("Pulmonary vein", FIVE, "D"),
    ("yes", PUBMED, "A"),
    ("No, the study did not show a benefit.", PUBMED, "B"),
    ("Maybe", PUBMED, "C"),
    ("The answer is maybe, given the small sample.", PUBMED, "C"),
    # five options
    ("Answer: E", FIVE, "E"),
    ("the correct answer is e.", FIVE, "E"),
    # markers anywhere
    ("Given the symptoms, I believe (D) fits best.", DRUGS, "D"),
    # refusals, hedges, nothing usable -> None
    ("I'm sorry, but I can't provide medical advice. Please consult a doctor.", DRUGS, None),
    ("As an AI language model, I cannot answer this question.", DRUGS, None),
    ("It could be A or B; I am not sure.", DRUGS, None),
    ("", DRUGS, None),
    ("   ", DRUGS, None),
    ("The answer is a tricky one to call without more data.", DRUGS, None),
    ("Both insulin and metformin lower glucose.", DRUGS, None),
    ("Answer: F", DRUGS, None),
    ("Vitamin D is correct for rickets.", {"A": "Iron", "B": "Calcium", "C": "Zinc", "D": "Folate"}, None),
    ("Type 2 diabetes is a chronic disease affecting millions.", DRUGS, None),
    # an echoed option list is not a choice (issue 14): whole, cut off, after the question, in other formats
    (T1DM_LIST, T1DM, None),
    ("A. Insulin glargine\nB. Metformin\nC. Lin", T1DM, None),
    (T1DM_QUESTION + "A. Insulin glargine\nB. Metformin\nC. Lin", T1DM, None),
    (T1DM_QUESTION + T1DM_LIST, T1DM, None),
    (T1DM_QUESTION + T1DM_LIST + "\n\n" + INSTRUCTION, T1DM, None),  # the quoted 'Answer: A' is an example
    ("A. Insulin glargine\nB", T1DM, None),  # cut before the second marker's dot
    ("A. Insu", T1DM, None),  # cut inside the first option: not yet an answer
    (T1DM_QUESTION + "A. Insulin glargine", T1DM, None),
    (T1DM_QUESTION + "A. Insu", T1DM, None),
    ("A. Insulin glargine B. Metformin C. Lisinopril D. Atorvastatin", T1DM, None),
    ("**A.** Insulin glargine\n**B.** Metformin\n**C.** Lisinopril\n**D.** Atorvastatin", T1DM, None),
    ("a) Insulin glargine\nb) Metformin\nc) Lisinopril", T1DM, None),
    ("A) Insulin glargine\nB) Metformin\nC) Lisinopril", T1DM, None),
    ("(A) Insulin glargine\n(B) Metformin", T1DM, None),
    ("- A. Insulin glargine\n- B. Metformin", T1DM, None),
    ("A: Atorvastatin\nB: Insulin\nC: Metformin\nD: Warfarin", DRUGS, None),
    # an option-by-option discussion with no conclusion chose nothing either
    ("A. Atorvastatin - lowers LDL.\nB. Insulin - needed in type 1 diabetes.\nC. Metformin - type 2.", DRUGS, None),
    # ... but an explicit answer after the list, or on its own line before it, is a choice
    (T1DM_LIST + "\nAnswer: C", T1DM, "C"),
    (T1DM_LIST + "\n\nThe correct answer is B.", T1DM, "B"),
    ("A) Insulin glargine\nB) Metformin\nC) Lisinopril\nD) Atorvastatin\n\n**Answer: D**", T1DM, "D"),
    ("**A.** Insulin glargine\n**B.** Metformin\n\n**Final answer:** A", T1DM, "A"),
    ("(A) Insulin glargine\n(B) Metformin\n(C) Lisinopril\n(D) Atorvastatin\n\nThe answer is (A).", T1DM, "A"),
    ("a. insulin glargine\nb. metformin\n\nanswer: b", T1DM, "B"),
    ("A. Atorvastatin: wrong.\nB. Insulin: right.\nC. Metformin: wrong.\n\nSo the answer is B.", DRUGS, "B"),
    ("Answer: C\n\n" + T1DM_LIST, T1DM, "C"),
    # "Answer:" then the list: the letter after "Answer:" is the list's first entry, not a choice
    ("Answer:\n" + T1DM_LIST, T1DM, None),
    ("Answer: A. Insulin glargine\nB. Metformin\nC. Lisinopril", T1DM, None),
    # a single complete option line is an answer (a model that chose A and stopped writes exactly this)
    ("A. Insulin glargine", T1DM, "A"),
    ("Answer:\nA. Insulin glargine", T1DM, "A"),
    # hedges between options
    ("A. Peaked T waves or B. U waves, I am not sure", HYPERK, None),
    ("A or B", DRUGS, None),
    ("Either A or C.", DRUGS, None),
    ("A/B", DRUGS, None),
    ("(B) or (D)", DRUGS, None),
    ("A, or maybe C", DRUGS, None),
    ("Peaked T waves or U waves", HYPERK, None),
    ("A. Peaked T waves or U waves", HYPERK, None),
    ("The answer is A or B.", DRUGS, None),
    ("The answer is probably C or D.", DRUGS, None),
    ("I'm torn between B and D.", DRUGS, None),
    ("I am not sure whether it's A or C.", DRUGS, None),
    ("Answer: A\nHmm, it could be A or C.", DRUGS, None),  # a hedge after the statement withdraws it
    ("It could be A or B, but the answer is B.", DRUGS, "B"),  # ... one before it is settled by it
    ("The answer is B.\nA or C would not treat type 1 diabetes.", DRUGS, "B"),  # no word of doubt: not a hedge
    # a letter followed by another option's text contradicts itself; its own text or free prose does not
    ("A. U waves", HYPERK, None),
    ("C) Delta waves", HYPERK, None),
    ("The answer is A. U waves", HYPERK, None),
    ("A. no", PUBMED, None),
    ("B. Insulin", DRUGS, "B"),
    ("C. Because it lowers glucose", DRUGS, "C"),
    ("B. No, the study did not show a benefit.", PUBMED, "B"),
    ("A. Peaked T waves", HYPERK, "A"),
    ("A - Peaked T waves, typical of hyperkalaemia.", HYPERK, "A"),
]

# Real replies of SmolLM2-135M-Instruct (greedy, runner's own prompt: persona, question, "A. text" lines, the
# instruction), verbatim, with the letter a careful grader gives: None where it did not commit to one option.
SMOLLM2: list[tuple[str, dict[str, str], str | None]] = [
    # 12 new tokens: the option list cut off, or a start that already commits
    ("A. Peaked T waves\nB. U waves", HYPERK, None),
    ("A. Insulin glargine\nB. Metformin", T1DM, None),
    ("A. Oral antihistamine\nB. Intramuscular adrenaline", ANAPHYLAXIS, None),
    ("A. Iron\nB. Folate\nC. Vitamin", VEGAN, None),
    ("A. Aspirin is the most appropriate drug for this scenario", STROKE, "A"),
    ("A. Statins\n\nThe answer is A. Stat", LDL, "A"),
    # 48-96 new tokens: the whole list (for LDL four of its five options), with or without a conclusion
    (T1DM_LIST, T1DM, None),
    ("A. Oral antihistamine\nB. Intramuscular adrenaline\nC. Nebulised salbutamol\nD. Intravenous hydrocortisone",
     ANAPHYLAXIS, None),
    ("A. Iron\nB. Folate\nC. Vitamin B12\nD. Vitamin C", VEGAN, None),
    ("A. Peaked T waves\nB. U waves\nC. Prolonged QT interval\nD. Delta waves", HYPERK, None),
    ("A. Statins\nB. Fibrates\nC. Bile acid sequestrants\nD. Niacin", LDL, None),
    ("A. Peaked T waves\nB. U waves\nC. Prolonged QT interval\nD. Delta waves\n\nThe answer is D. Delta "
     "waves.", HYPERK, "D"),
    ("A. Oral antihistamine\nB. Intramuscular adrenaline\nC. Nebulised salbutamol\nD. Intravenous hydrocortisone"
     "\n\nThe correct answer is C. Nebulised salbutamol.", ANAPHYLAXIS, "C"),
    ("A. Iron\nB. Folate\nC. Vitamin B12\nD. Vitamin C\n\nThe correct answer is C. Vitamin B12.", VEGAN, "C"),
    ("A. Iron\nB. Folate\nC. Vitamin B12\nD. Vitamin C\n\nThe correct answer is C. Vitamin B12. This is "
     "a rare and important deficiency that affects the body's ability to produce", VEGAN, "C"),
    ("A. yes\nB. no\nC. maybe\n\nThe answer is A.", PUBMED, "A"),
    ("A. Peaked T waves\nB. U waves\nC. Prolonged QT interval\nD. Delta waves\n\nThe ECG finding most typical "
     "of hyperkalaemia is indeed a peak t wave, which is a characteristic feature of cardiac arrhythmias. "
     "However, the correct answer is indeed D. Delta waves,", HYPERK, "D"),
    # the list, then prose that only paraphrases an option ("a peak t wave") and, given more tokens, goes on to
    # take it back ("However, ... is actually"): no commitment
    ("A. Peaked T waves\nB. U waves\nC. Prolonged QT interval\nD. Delta waves\n\nThe ECG finding most typical "
     "of hyperkalaemia is indeed a peak t wave, which is a characteristic feature", HYPERK, None),
    ("A. Peaked T waves\nB. U waves\nC. Prolonged QT interval\nD. Delta waves\n\nThe ECG finding most typical "
     "of hyperkalaemia is indeed a peak t wave, which is a characteristic feature of cardiac arrhythmias. "
     "However, the most typical ECG finding in this context is actually", HYPERK, None),
    # one option with its text, then an explanation or a statement: a choice (right or wrong)
    ("D. Atorvastatin", T1DM, "D"),
    ("A. Statins\n\nThe correct answer is A. Statins.", LDL, "A"),
    ("A. Acute appendicitis\n\nThe correct answer is A. Acute appendicitis.", RLQ, "A"),
    ("A. Statins\n\nThe answer is A. Statins are a class of medications that work by inhibiting the enzyme "
     "HMG-CoA reductase, which is responsible for converting cholesterol into low-density lipoprotein (LDL)",
     LDL, "A"),
    ("A. Aspirin is the most appropriate drug for this scenario. It is a widely used medication to prevent "
     "blood clots and reduce the risk of stroke. It is a non-selective anticoagulant that is effective in "
     "preventing blood clots and reducing", STROKE, "A"),
    # ... also when a stray "B" starts after it (one marker, not a list)
    ("A. Aspirin is the most appropriate drug for this scenario. It is a medication that can help prevent "
     "blood clots and reduce the risk of stroke. It is a non-selective anticoagulant that is used to prevent "
     "blood from clotting. It is also used to treat blood disorders that affect blood clotting.\n\nB",
     STROKE, "A"),
    ("A. Hypokalaemia is a serious medical condition that can be caused by a variety of factors, including "
     "kidney failure, liver failure, and other metabolic disorders. It is often associated with a combination "
     "of hypokalaemia, which is a metabolic disorder characterized by a lack of potassium, and hypokalaemia, "
     "which is a metabolic disorder characterized by a lack of potassium.\n\nThe most likely cause of hypokalaemia "
     "is likely to be a combination of kidney failure", DIGOXIN, "A"),
]


def test_the_table_is_large_and_varied() -> None:
    assert len(CASES) >= 40
    assert sum(1 for *_, want in CASES if want is None) >= 8
    assert len(SMOLLM2) >= 20
    assert sum(1 for *_, want in SMOLLM2 if want is None) >= 5


@pytest.mark.parametrize(("text", "options", "want"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_extract_letter(text: str, options: dict[str, str], want: str | None) -> None:
    assert extract_letter(text, options) == want, text


@pytest.mark.parametrize(("text", "options", "want"), SMOLLM2, ids=[f"smollm2-{i}" for i in range(len(SMOLLM2))])
def test_real_small_model_replies(text: str, options: dict[str, str], want: str | None) -> None:
    assert extract_letter(text, options) == want, text


def test_an_echo_of_the_list_credits_no_letter_whatever_the_key() -> None:
    """The bug of issue 14: an echoed list read as its first letter made every item keyed A count as right."""
    for cut in range(len(T1DM_LIST) + 1):
        reply = T1DM_LIST[:cut]
        if "\n" in reply.rstrip("\n"):  # from the second line on: an echo, never a choice
            assert extract_letter(reply, T1DM) is None, reply


def test_long_replies_are_read_in_linear_time() -> None:
    """The scorer runs on 150,000 answers: a reply 100 times longer must not take 10,000 times longer."""
    import time

    def seconds(n: int) -> float:
        text = "It could be that A. Insulin is needed, or not.\nB: maybe. " * n + "The answer is B."
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            assert extract_letter(text, DRUGS) == "B"
            best = min(best, time.perf_counter() - start)
        return best

    # Linear growth is 100 times, quadratic 10,000 times; the margin absorbs timer noise.
    assert seconds(2000) < 1000 * max(seconds(20), 1e-4)


def test_no_options_gives_none() -> None:
    assert extract_letter("Answer: A", {}) is None
    assert extract_letter(None, DRUGS) is None


def test_lower_case_option_keys_are_accepted() -> None:
    assert extract_letter("Answer: b", {"a": "x", "b": "y"}) == "B"
