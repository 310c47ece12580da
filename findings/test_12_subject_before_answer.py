"""Subject before answer: a token naming the subject (" Germany") is top-1 at some layer before the answer first is.

Claim: Qwen3-8B "shows a distinctive 'Germany -> Berlin' transition pattern"; Mistral 7B shows "early
emergence of German-related tokens" (readme of experiment 001). Wendler et al. 2024 measure concept
and token separately for the same reason.

Definition: on each correctly answered completion or Q&A prompt, find the first block whose lens puts
the subject (any spelling) top-1 and the first that puts the answer top-1. The pattern is present when
the subject's comes strictly earlier. The claim holds if the 95% bootstrap interval of the share of
prompts showing it lies above 0.5.
"""

from findings.data import THRESHOLDS
from findings.evidence import first_top1, forward_prompts, result_key, share_verdict

PROMPT_SETS = ["capitals", "capitals_german"]


def test_subject_before_answer(traces, prompt_set, judge, claim):
    rows = []
    for prompt, fact, trace in forward_prompts(traces, prompt_set, answered=True):
        subject, answer = first_top1(trace, fact.subject), first_top1(trace, fact.answer)
        rows.append({"prompt": prompt, "subject_first_top1": subject,
                     "answer_first_top1": answer,
                     "subject_first": subject is not None and subject < answer})
    judge(share_verdict(claim, result_key(traces.model, prompt_set), rows, "subject_first",
                        THRESHOLDS["subject_before_answer"]["majority"],
                        "share of prompts where the subject is top-1 before the answer"))
