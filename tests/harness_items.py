"""The items and cases of the stored lm-evaluation-harness outputs (``tests/fixtures/harness/``).

Shared by the script that made them (``scripts/make_harness_fixtures.py``, run once with the harness installed) and
by ``tests/test_harness_parity.py``, which checks the runner against them. The items are synthetic, written here in
each benchmark's distributed form, so no published model or harness output has seen them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (question, correct answer, three wrong answers)
FACTS = [
    ("Which drug is an oral vitamin K antagonist?", "Warfarin", "Atorvastatin", "Metformin", "Omeprazole"),
    ("Which electrolyte disturbance causes peaked T waves?", "Hyperkalemia", "Hypokalemia", "Hyponatremia",
     "Hypocalcemia"),
    ("Which organism causes most cases of community-acquired pneumonia?", "Streptococcus pneumoniae",
     "Escherichia coli", "Staphylococcus epidermidis", "Candida albicans"),
    ("Which vitamin deficiency causes scurvy?", "Vitamin C", "Vitamin D", "Vitamin B1", "Vitamin K"),
    ("Which hormone lowers blood glucose?", "Insulin", "Glucagon", "Cortisol", "Adrenaline"),
    ("Which nerve supplies the diaphragm?", "Phrenic nerve", "Vagus nerve", "Accessory nerve", "Ulnar nerve"),
    ("Which class of drug is lisinopril?", "ACE inhibitor", "Beta blocker", "Calcium channel blocker",
     "Loop diuretic"),
    ("Which test confirms iron deficiency?", "Serum ferritin", "Serum sodium", "Troponin", "Lipase"),
    ("Which antidote reverses paracetamol poisoning?", "Acetylcysteine", "Naloxone", "Flumazenil", "Atropine"),
    ("Which chamber of the heart pumps blood into the aorta?", "Left ventricle", "Right atrium", "Right ventricle",
     "Left atrium"),
    ("Which virus causes shingles?", "Varicella zoster virus", "Epstein-Barr virus", "Hepatitis B virus",
     "Rotavirus"),
    ("Which gland secretes thyroxine?", "Thyroid gland", "Adrenal gland", "Pancreas", "Pituitary gland"),
    ("Which drug is first-line for type 2 diabetes?", "Metformin", "Insulin glargine", "Gliclazide", "Acarbose"),
    ("Which bone is the longest in the body?", "Femur", "Tibia", "Humerus", "Radius"),
    ("Which cell type produces antibodies?", "Plasma cells", "Neutrophils", "Platelets", "Erythrocytes"),
    ("Which enzyme is raised in acute pancreatitis?", "Lipase", "Creatine kinase", "Alkaline phosphatase",
     "Troponin"),
    ("Which muscle flexes the elbow?", "Biceps brachii", "Triceps brachii", "Deltoid", "Latissimus dorsi"),
    ("Which drug reverses opioid overdose?", "Naloxone", "Acetylcysteine", "Protamine", "Glucagon"),
    ("Which valve lies between the left atrium and ventricle?", "Mitral valve", "Tricuspid valve",
     "Pulmonary valve", "Aortic valve"),
    ("Which condition is caused by insufficient dopamine in the substantia nigra?", "Parkinson disease",
     "Multiple sclerosis", "Myasthenia gravis", "Huntington disease"),
    ("Which organ produces bile?", "Liver", "Gallbladder", "Pancreas", "Spleen"),
    ("Which artery supplies the anterior interventricular septum?", "Left anterior descending artery",
     "Right coronary artery", "Circumflex artery", "Marginal artery"),
    ("Which cranial nerve moves the lateral rectus?", "Abducens nerve", "Oculomotor nerve", "Trochlear nerve",
     "Facial nerve"),
    ("Which vaccine is live attenuated?", "Measles, mumps and rubella", "Tetanus toxoid", "Hepatitis B",
     "Inactivated polio"),
]

ABSTRACTS = [
    ("Does daily aspirin reduce the recurrence of colorectal adenomas?", "yes",
     ["In a randomised trial of 1121 patients with a history of adenomas, aspirin 81 mg daily lowered the "
      "recurrence of adenomas over three years.", "The relative risk was 0.81 (95% CI 0.69-0.96)."]),
    ("Does vitamin E supplementation prevent cataracts in older men?", "no",
     ["In a trial of 4000 men aged 50 or over, vitamin E for eight years did not change the incidence of cataract.",
      "Hazard ratio 0.99."]),
    ("Is a high resting heart rate associated with mortality in heart failure?", "yes",
     ["In a cohort of 2200 patients with heart failure, each 10 beats per minute was associated with higher "
      "all-cause mortality after adjustment."]),
    ("Does music therapy reduce anxiety before surgery?", "maybe",
     ["Small trials of music before surgery gave mixed results; two found lower anxiety scores and three found "
      "no difference.", "Heterogeneity was high."]),
    ("Does early mobilisation shorten hospital stay after hip fracture surgery?", "yes",
     ["Among 560 patients, mobilisation within 24 hours was followed by a shorter stay (median 9 vs 12 days)."]),
    ("Do probiotics prevent antibiotic-associated diarrhoea in the elderly?", "no",
     ["In a multicentre trial of 2941 inpatients aged 65 or over, a probiotic did not lower the rate of "
      "antibiotic-associated diarrhoea."]),
    ("Is screening with low-dose CT associated with lower lung cancer mortality?", "yes",
     ["In 53,454 heavy smokers, low-dose CT screening lowered lung cancer mortality by 20% compared with "
      "radiography."]),
    ("Does a tai chi programme reduce falls in community-dwelling adults?", "maybe",
     ["A trial of 670 adults found fewer falls with tai chi at six months, but not at twelve months."]),
    ("Does intensive blood pressure control reduce stroke in older adults?", "yes",
     ["Among 8511 patients aged 60 to 80, a target systolic pressure of 110-130 mm Hg lowered the incidence of "
      "stroke."]),
    ("Does homeopathy improve asthma control?", "no",
     ["In a double-blind trial of 242 adults with asthma, homeopathic treatment did not improve symptoms or lung "
      "function compared with placebo."]),
]

# Each case: a harness task (the official YAML, data swapped for the files below), K, and whether the tokenizer
# adds a BOS token. ``splits`` overrides the task's splits where the local files differ from the hub's.
CASES: list[dict[str, Any]] = [
    {"name": "medqa_0shot", "family": "medqa", "task": "medqa_4options", "official_yaml": "medqa/medqa.yaml",
     "num_fewshot": 0, "splits": {"validation_split": "null"}},
    {"name": "medqa_3shot", "family": "medqa", "task": "medqa_4options", "official_yaml": "medqa/medqa.yaml",
     "num_fewshot": 3, "splits": {"validation_split": "null"}},
    {"name": "medqa_3shot_bos", "family": "medqa", "task": "medqa_4options", "official_yaml": "medqa/medqa.yaml",
     "num_fewshot": 3, "bos": True, "splits": {"validation_split": "null"}},
    {"name": "medqa_2shot_same_split", "family": "medqa", "task": "medqa_4options",
     "official_yaml": "medqa/medqa.yaml", "num_fewshot": 2,
     "splits": {"validation_split": "null", "fewshot_split": "test"}},
    {"name": "medmcqa_3shot", "family": "medmcqa", "task": "medmcqa", "official_yaml": "medmcqa/medmcqa.yaml",
     "num_fewshot": 3, "splits": {}},
    {"name": "pubmedqa_2shot", "family": "pubmedqa", "task": "pubmedqa", "official_yaml": "pubmedqa/pubmedqa.yaml",
     "num_fewshot": 2, "splits": {"validation_split": "null"}},
    {"name": "mmlu_anatomy_2shot", "family": "mmlu", "task": "mmlu_anatomy",
     "official_yaml": "mmlu/default/mmlu_anatomy.yaml", "num_fewshot": 2, "splits": {}},
]

# Which facts go where: the pool (train, or dev for MMLU) and the scored split of each family.
SPLITS = {"medqa": ("train", range(0, 10), "test", range(10, 16)),
          "medmcqa": ("train", range(8, 16), "validation", range(16, 22)),
          "mmlu": ("dev", range(18, 22), "test", range(0, 6)),
          "pubmedqa": ("train", range(0, 6), "test", range(6, 10))}


def _rotate(i: int, fact: tuple[str, ...]) -> tuple[list[str], int]:
    """The four options with the correct one at position i % 4, and that position."""
    gold = i % 4
    wrong = list(fact[2:5])
    options = [*wrong[:gold], fact[1], *wrong[gold:]]
    return options, gold


def _medqa(i: int) -> dict[str, Any]:
    options, gold = _rotate(i, FACTS[i])
    return {"id": f"mq{i}", "sent1": f"A patient asks a question. {FACTS[i][0]}", "sent2": "",
            **{f"ending{k}": o for k, o in enumerate(options)}, "label": gold}


def _medmcqa(i: int) -> dict[str, Any]:
    options, gold = _rotate(i + 1, FACTS[i])
    return {"id": f"mm{i}", "question": FACTS[i][0], "opa": options[0], "opb": options[1], "opc": options[2],
            "opd": options[3], "cop": gold, "choice_type": "single", "exp": None, "subject_name": "Medicine",
            "topic_name": None}


def _mmlu(i: int) -> dict[str, Any]:
    options, gold = _rotate(i + 2, FACTS[i])
    return {"question": FACTS[i][0], "subject": "anatomy", "choices": options, "answer": gold}


def _pubmedqa(i: int) -> dict[str, Any]:
    question, decision, contexts = ABSTRACTS[i]
    return {"pubid": str(1000 + i), "QUESTION": question, "CONTEXTS": contexts, "LABELS": ["RESULTS"] * len(contexts),
            "MESHES": [], "YEAR": "2020", "reasoning_required_pred": decision, "reasoning_free_pred": decision,
            "final_decision": decision, "LONG_ANSWER": "See the results."}


MAKERS = {"medqa": _medqa, "medmcqa": _medmcqa, "mmlu": _mmlu, "pubmedqa": _pubmedqa}


def write_items(folder: Path) -> dict[str, dict[str, Path]]:
    """Write each family's pool and scored split as JSONL under ``folder``; {family: {split: path}}."""
    files: dict[str, dict[str, Path]] = {}
    for family, (pool_split, pool, scored_split, scored) in SPLITS.items():
        files[family] = {}
        for split, indices in ((pool_split, pool), (scored_split, scored)):
            path = folder / f"{family}_{split}.jsonl"
            path.write_text("".join(json.dumps(MAKERS[family](i), ensure_ascii=False) + "\n" for i in indices),
                            encoding="utf-8")
            files[family][split] = path
    return files


def item_files(folder: Path, family: str) -> tuple[Path, Path]:
    """(pool file, scored file) of a family under ``folder``."""
    pool_split, _, scored_split, _ = SPLITS[family]
    return folder / f"{family}_{pool_split}.jsonl", folder / f"{family}_{scored_split}.jsonl"


def bos_adding_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` made to start every encoding with its BOS token (as Llama, Mistral and Gemma tokenizers do)."""
    from tokenizers.processors import TemplateProcessing

    bos = tokenizer.bos_token
    bos_id = tokenizer.convert_tokens_to_ids(bos)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    assert tokenizer.encode("Hello")[0] == bos_id and tokenizer.encode("Hello", add_special_tokens=False)[0] != bos_id
    return tokenizer
