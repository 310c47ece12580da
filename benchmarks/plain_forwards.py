"""The suite's baseline: one cached load and plain transformers forward passes over every findings prompt
(every prompt set).

Usage: python benchmarks/plain_forwards.py MODEL"""

import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent.parent))
from findings.data import NOTES_PROMPT, SETS, forms_of  # noqa: E402
from lens.models.registry import resolve  # noqa: E402

folder, _ = resolve(sys.argv[1]).weights_folder()
tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
prompts = [fact.prompt(form) for name in SETS for form in forms_of(name) for fact in SETS[name]]
prompts.append(NOTES_PROMPT)
with torch.inference_mode():
    for start in range(0, len(prompts), 16):
        model(**tokenizer(prompts[start : start + 16], return_tensors="pt", padding=True))
