"""What a run of the findings computes for one model, artefact by artefact, and how much work each is: forward
passes, tokens through the blocks, rows unembedded and rows the lens reduces over the whole vocabulary. The cost
model behind the estimate line (`suite.estimate`) prices these counts; the full-size simulation
(`benchmarks/scale.py`) computes these very artefacts and counts its own passes and tokens beside them.

The counts follow the code that computes each artefact (`findings.model_findings`, `lens.reads.trace`,
`lens.reads.generate`, `lens.reads.patching`, `lens.lenses.train_tuned`). Before a run two things are not known, and are
assumed: how many tokens each continuation takes before it is decided (`MAX_NEW_TOKENS`, the most), and which capitals
the model answers (patching runs on those only: every capital is assumed answered). Given the run's own readings
(`Readings`) the counts are exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from findings.data import (
    CAPITALS,
    CHAT,
    NOTES_FACT,
    NOTES_PROMPT,
    SETS,
    THRESHOLDS,
    Fact,
    forms_of,
    prompt_sets_of,
)
from lens.lenses.lenses import EXACT, RAW, JacobianLens, TunedLens
from lens.lenses.registry import READ_HERE
from lens.lenses.train_tuned import BATCH as TUNED_BATCH
from lens.lenses.train_tuned import TOKENS as TUNED_TOKENS
from lens.lenses.train_tuned import WINDOW
from lens.reads.attention import token_positions
from lens.reads.generate import MAX_NEW_TOKENS
from lens.reads.reduce import BATCH
from lens.tokens import chat_prompt
from suite.estimate import Shape, Work, WorkPlan, artefact_name

PHASES = (
    "continuations",
    "collect",
    "read exact",
    "read raw",
    "candidates",
    "tuned lens",
    "read tuned",
    "jacobian lens",
    "read jacobian",
    "grid",
    "attention",
    "patching",
)
"""The phases of a model's part of a run, in the order a run computes them (load, snapshots, verdicts and the
report are timed apart: no forward pass of theirs)."""
READS = ("candidates", "chat", "raw", "grid", "attention", "patching", "notes_patching")
"""What a claim may read besides the lens over its sets' completion and Q&A prompts (claims.toml `reads`)."""


def reads_of(claim: str) -> list[str]:
    """What a claim reads besides the lens over its prompt sets (claims.toml `reads`), for the count."""
    found = THRESHOLDS.get(claim, {}).get("reads", [])
    unknown = sorted(set(found) - set(READS))
    if unknown:
        raise ValueError(f"claims.toml [{claim}] reads {', '.join(unknown)}: name only {', '.join(READS)}")
    return found


def phase_of(key: Hashable) -> str:
    """The phase an artefact key belongs to: ("lens", set, form, "raw") -> "read raw"."""
    kind = key[0] if isinstance(key, tuple) else key
    if kind == "lens":
        return f"read {key[3]}"
    if isinstance(key, tuple) and key[1:] == ("lens",):
        return f"{kind} lens"
    return {
        "readings": "continuations",
        "residuals": "collect",
        "notes_patching": "patching",
        "subject_positions": "attention",
        "exclusions": "continuations",
    }.get(kind, kind)


def claim_of(test: str) -> str | None:
    """The claim a test node id runs ("findings/test_08_norm_correction.py::test_norm_correction[...]": a claim's test
    is named after its claims.toml section), None for a test that is not a claim (the snapshots, the fidelity
    check)."""
    found = re.search(r"::test_(\w+?)(\[|$)", test)
    return found.group(1) if found and found.group(1) in THRESHOLDS else None


def artefacts(chat: bool, lenses: Iterable[str] = READ_HERE, tests: Sequence[str] | None = None) -> list[Hashable]:
    """The artefacts a run computes for one model, in the order it computes them: `chat` for an instruct model
    (its chat form), `lenses` the lenses besides the logit lens it has, `tests` the selected node ids (None:
    every test). A selection is read off the ids: the prompt sets and lenses they name, and the claims, with what
    each reads besides the lens (claims.toml `reads`)."""
    every = tests is None
    tests = list(tests or ())
    named = {
        name for name in SETS if every or any(f"-{name}]" in t or f"[{name}]" in t or f"-{name}-" in t for t in tests)
    }
    selected = set(THRESHOLDS) if every else {claim_of(t) for t in tests} - {None}
    claims = [claim for claim in THRESHOLDS if claim in selected]  # claims.toml's order: the keys' order is fixed
    sets = [name for name in SETS if name in named]
    keys: list[Hashable] = []

    def read_on(what: str, name: str) -> bool:
        """Whether a selected claim that runs on set `name` reads `what` (claims.toml `reads`)."""
        return any(what in reads_of(claim) and name in prompt_sets_of(claim) for claim in claims)

    def forms(name: str) -> list[str]:
        return [*forms_of(name), *([CHAT] if chat and read_on("chat", name) else [])]

    for name in sets:
        keys += [("readings", name, form) for form in forms(name)] + [("exclusions", name)]
    for name in sets:
        keys += [("residuals", name, form) for form in forms(name)]
    for name in sets:
        keys += [("lens", name, form, EXACT.name) for form in forms(name)]
    keys += [("lens", name, form, RAW.name) for name in sets if read_on("raw", name) for form in ("completion", "qa")]
    for name in sets:
        keys += [("candidates", name, form) for form in forms(name) if read_on("candidates", name)]
    for lens in READ_HERE:
        read_by = {name for name in THRESHOLDS["lenses"].get(lens, []) if name in sets}
        if lens in lenses and read_by and (every or any(f"-{lens}" in t for t in tests)):
            keys.append((lens, "lens"))
            keys += [("lens", name, form, lens) for name in sets if name in read_by for form in forms_of(name)]
    special = {kind for claim in claims for kind in reads_of(claim) if CAPITALS in sets}
    if "grid" in special:
        keys.append("grid")
    if "attention" in special:
        keys += ["subject_positions", "attention"]
    if "patching" in special:
        keys += ["subject_positions", "patching"] if "subject_positions" not in keys else ["patching"]
    if "notes_patching" in special:
        keys.append("notes_patching")
    return keys


@dataclass(frozen=True)
class Readings:
    """What the run itself decided that the counts depend on; without it the counts assume (module docstring)."""

    leads: Mapping[tuple[str, str], Sequence[tuple[int, ...]]]
    """(set, form) -> per usable fact the token ids the lens reads after (the model's own lead)."""
    steps: Mapping[tuple[str, str], Sequence[int]]
    """(set, form) -> per fact of the set how many tokens its continuation generated (`len(reply.margins)`)."""
    usable: Mapping[str, Sequence[str]]
    """Set -> the ids of the facts its claims are judged on."""
    answered: Sequence[str]
    """The capitals the model answers after the completion prompt (the ones patched)."""

    @classmethod
    def of(cls, findings: Any, keys: Iterable[Hashable]) -> Readings:
        """The readings a run made (`findings.model_findings.ModelFindings`), for the counts of `keys`."""
        pairs = {(key[1], key[2]) for key in keys if isinstance(key, tuple) and key[0] == "readings"}
        every = {pair: findings.readings(*pair, every=True) for pair in pairs}
        usable = {name: [fact.id for fact in findings.facts(name)] for name in {name for name, _ in pairs}}
        return cls(
            leads={pair: [r.lead_ids for r in findings.readings(*pair)] for pair in pairs},
            steps={pair: [len(r.reply.margins) for r in rows] for pair, rows in every.items()},
            usable=usable,
            answered=[r.fact.id for r in findings.readings(CAPITALS, "completion") if r.answered and not r.lead_ids]
            if (CAPITALS, "completion") in pairs
            else [],
        )


class Counter:
    """The work of each artefact for one model: its tokenizer, depth, width and vocabulary."""

    def __init__(
        self,
        tokenizer: Any,
        n_layers: int,
        d_model: int,
        vocab: int,
        n_ctx: int = 1 << 30,
        readings: Readings | None = None,
        spot_checks: bool = False,
    ) -> None:
        self.tokenizer, self.n_layers, self.d_model, self.vocab = tokenizer, n_layers, d_model, vocab
        self.readings = readings
        self.spot_checks = spot_checks
        """Whether each collect spot-checks a prompt on the CPU (`lens.models.spot`: a model off the CPU)."""
        self._model = SimpleNamespace(tokenizer=tokenizer, n_ctx=n_ctx)  # what lens.reads.attention's helpers read
        self._lengths: dict[str, int] = {}

    def work(self, key: Hashable) -> Work:
        """The work of computing one artefact."""
        kind = key[0] if isinstance(key, tuple) else key
        count: Callable[..., Work] = getattr(self, f"_{kind}", lambda *_: Work())
        return count(*key[1:]) if isinstance(key, tuple) else count()

    def phases(self, keys: Iterable[Hashable]) -> dict[str, Work]:
        """The work of the artefacts by phase (`PHASES` order; a phase with none is left out)."""
        out: dict[str, Work] = {}
        for key in keys:
            out[phase_of(key)] = out.get(phase_of(key), Work()) + self.work(key)
        return {phase: out[phase] for phase in sorted(out, key=lambda p: PHASES.index(p) if p in PHASES else 99)}

    def length(self, text: str) -> int:
        if text not in self._lengths:
            self._lengths[text] = len(self.tokenizer(text)["input_ids"])
        return self._lengths[text]

    def facts(self, name: str) -> list[Fact]:
        """The set's facts its claims are judged on: those the run kept, or (before a run) all."""
        if self.readings is None or name not in self.readings.usable:
            return list(SETS[name])
        usable = set(self.readings.usable[name])
        return [fact for fact in SETS[name] if fact.id in usable]

    def prompts(self, name: str, form: str, facts: Sequence[Fact]) -> list[str]:
        """The facts' prompts in `form`; the chat form in the model's template."""
        return [chat_prompt(self.tokenizer, fact.qa) if form == CHAT else fact.prompt(form) for fact in facts]

    def _batches(self, lengths: Sequence[int]) -> Iterable[tuple[int, int]]:
        """(rows, padded length) of each batch of `BATCH` left-padded sequences."""
        for start in range(0, len(lengths), BATCH):
            chunk = lengths[start : start + BATCH]
            yield len(chunk), max(chunk)

    def _readings(self, name: str, form: str) -> Work:
        """Greedy continuations of every fact of the set, batches of `BATCH`: a prefill, then one pass per step
        (cached: one token per row) until every row is decided or `MAX_NEW_TOKENS`."""
        facts = list(SETS[name])
        lengths = [self.length(p) for p in self.prompts(name, form, facts)]
        steps = (self.readings.steps.get((name, form)) if self.readings else None) or [MAX_NEW_TOKENS] * len(facts)
        work = Work()
        for k, (rows, width) in enumerate(self._batches(lengths)):
            n = max(steps[k * BATCH : k * BATCH + rows])
            work += Work(passes=n, tokens=rows * width + (n - 1) * rows, unembedded=n * rows)
        return work

    def _residuals(self, name: str, form: str) -> Work:
        """One pass per batch over the usable facts' prompts and leads; the output unembedded at the last position."""
        facts = self.facts(name)
        leads = (self.readings.leads.get((name, form)) if self.readings else None) or [()] * len(facts)
        lengths = [self.length(p) + len(lead) for p, lead in zip(self.prompts(name, form, facts), leads)]
        work = Work(spots=1 if self.spot_checks and lengths else 0)
        for rows, width in self._batches(lengths):
            work += Work(passes=1, tokens=rows * width, unembedded=rows)
        return work

    def _lens(self, name: str, form: str, lens: str) -> Work:
        """Every block of every usable prompt unembedded and reduced; moved first by a tuned or Jacobian lens."""
        rows = len(self.facts(name)) * self.n_layers
        moved = len(self.facts(name)) * (self.n_layers - 1) if lens in READ_HERE else 0
        return Work(unembedded=rows, reduced=rows, moved=moved)

    def _candidates(self, name: str, form: str) -> Work:
        return Work(reduced=len(self.facts(name)))

    def _tuned(self, _: str) -> Work:
        """Training here (no published lens; `lens.lenses.train_tuned`): the corpus's training prompts, sorted by
        length, `PROMPT_BATCH` a pass, each batch followed by up to `LEADS` cached passes of one token a row while the
        model writes whitespace first (before a run: every one, the most); `TOKENS` of general text in windows of
        `WINDOW`, `BATCH` a pass, every position unembedded (more where the prompts and that text give fewer read
        positions than twice the width plus 2: an 8B's 4,096 needs 8,194); a least-squares fit per block but the
        last over every read position; `STEPS` KL steps of `BATCH_ROWS` rows moved through every translator and
        unembedded on their top tokens and the drawn tail (forward and backward: three times the forward's work);
        then the held-out prompts and one text window measured over the whole vocabulary at every block."""
        from lens.lenses import tuned_corpus, tuned_fit
        from lens.lenses.train_tuned import HELD_OUT_PROMPTS, HELD_OUT_TEXT, LEADS, PROMPT_BATCH

        prompts = tuned_corpus.prompts()
        train = sorted(self.length(p.text) for p in prompts if not p.held_out)
        held_all = [p.text for p in prompts if p.held_out]
        held = sorted(
            self.length(held_all[int(i * len(held_all) / HELD_OUT_PROMPTS)])
            for i in range(min(HELD_OUT_PROMPTS, len(held_all)))
        )
        blocks = self.n_layers - 1
        work = Work()
        for lengths in (train, held):
            for start in range(0, len(lengths), PROMPT_BATCH):
                chunk = lengths[start : start + PROMPT_BATCH]
                work += Work(
                    passes=1 + LEADS, tokens=len(chunk) * (max(chunk) + LEADS), unembedded=len(chunk) * (1 + LEADS)
                )
        windows = -(-TUNED_TOKENS // (WINDOW - 1))
        if len(train) + windows * (WINDOW - 1) < 2 * (self.d_model + 1):  # a wide model reads on in the text
            windows = -(-(2 * (self.d_model + 1) - len(train)) // (WINDOW - 1))  # the most: no prompt's lead read
        for start in range(0, windows, TUNED_BATCH):
            rows = min(TUNED_BATCH, windows - start)
            work += Work(passes=1, tokens=rows * WINDOW, unembedded=rows * WINDOW)
        work += Work(passes=1, tokens=WINDOW, unembedded=WINDOW)  # the held-out text window
        reads = len(train) * (1 + LEADS) + windows * (WINDOW - 1)
        columns = min(tuned_fit.BATCH_ROWS * tuned_fit.TOP_K + tuned_fit.TAIL_SAMPLES, self.vocab)
        step_rows = tuned_fit.STEPS * tuned_fit.BATCH_ROWS * blocks
        measured = (len(held) * (1 + LEADS) + HELD_OUT_TEXT) * self.n_layers
        return work + Work(
            fitted=blocks,
            gram_rows=blocks * reads,
            moved=3 * step_rows + measured,
            unembedded=-(-3 * step_rows * columns // self.vocab) + measured,
            reduced=measured,
        )

    def _grid(self) -> Work:
        """One pass over the notes' prompt, the lens's top token at every block and position."""
        n = self.length(NOTES_PROMPT)
        return Work(passes=1, tokens=n, unembedded=n + n * self.n_layers, reduced=n * self.n_layers)

    def _attention(self) -> Work:
        """One pass per usable capital, caching the attention patterns."""
        lengths = [self.length(fact.completion) for fact in self.facts(CAPITALS)]
        return Work(passes=len(lengths), tokens=sum(lengths), unembedded=len(lengths))

    def _patching(self) -> Work:
        """Per capital answered (before a run: every one) with a partner of as many tokens: the clean run, the
        corrupted run, and one batch of a row per block and patched position (the subject's and the last)."""
        facts = self.facts(CAPITALS)
        answered = set(self.readings.answered) if self.readings else {fact.id for fact in facts}
        work = Work()
        for i, fact in enumerate(facts):
            if fact.id in answered and self._partner(facts, i) is not None:
                n = self.length(fact.completion)
                work += self._patched(n, len({*token_positions(self._model, fact.completion, fact.subject), n - 1}))
        return work

    def _notes_patching(self) -> Work:
        """The notes' fact patched at every position (where it is usable and has a partner)."""
        facts = self.facts(CAPITALS)
        if NOTES_FACT not in facts or self._partner(facts, facts.index(NOTES_FACT)) is None:
            return Work()
        n = self.length(NOTES_FACT.completion)
        return self._patched(n, n)

    def _patched(self, n: int, positions: int) -> Work:
        rows = self.n_layers * positions
        return Work(passes=3, tokens=2 * n + rows * n, unembedded=2 + rows)

    def _partner(self, facts: Sequence[Fact], i: int) -> Fact | None:
        """As `findings.model_findings._partner`: the next fact with as many tokens and another answer."""
        length = [self.length(f.completion) for f in facts]
        for j in [*range(i + 1, len(facts)), *range(i)]:
            if length[j] == length[i] and facts[j].answer != facts[i].answer:
                return facts[j]
        return None


class Encoder:
    """Just enough of a tokenizer to count tokens before a model loads: the `tokenizers` library's own reading of
    the model folder's tokenizer.json (three times faster than transformers': Gemma's 262,144 tokens in seconds),
    and its chat template rendered by transformers' renderer."""

    def __init__(self, folder: Path) -> None:
        import json

        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = (
            json.loads((folder / "tokenizer_config.json").read_text())
            if (folder / "tokenizer_config.json").is_file()
            else {}
        )
        jinja = folder / "chat_template.jinja"
        self.chat_template = jinja.read_text() if jinja.is_file() else config.get("chat_template")
        self._special = {
            key: value for key, value in config.items() if key.endswith("_token") and isinstance(value, str)
        }

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        encoded = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": encoded.ids, **({"offset_mapping": encoded.offsets} if return_offsets_mapping else {})}

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, **kwargs: Any) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template([messages], chat_template=self.chat_template, **self._special, **kwargs)
        return rendered[0]


def lenses_here(spec: Any, plan: Any) -> tuple[list[str], bool]:
    """The lenses besides the logit lens a run reads for a model (its tuned lens always: published, kept or trained;
    its Jacobian lens where TransformerLens's published one is in the Hugging Face cache), and whether its tuned
    lens will be trained (neither a published one nor one trained here before is on this machine)."""
    from huggingface_hub import try_to_load_from_cache

    from lens.lenses.jacobian import published_entry
    from lens.lenses.published import local_folder
    from lens.lenses.tuned import CONFIG, trained_folder

    lenses = [TunedLens.name]
    named = getattr(spec, "jacobian_lens", None)
    entry = published_entry(named) if named else None
    if entry is not None and isinstance(try_to_load_from_cache(entry[0], entry[1], revision=entry[2]), str):
        lenses.append(JacobianLens.name)
    published = getattr(spec, "tuned_lens", None)
    kept = (trained_folder(SimpleNamespace(name=spec.name, weights_id=plan.weights_id)) / CONFIG).is_file()
    return lenses, not kept and (published is None or local_folder(published) is None)


def work_plan(spec: Any, plan: Any, tests: Sequence[str] | None) -> WorkPlan:
    """What a model's part of the run will compute, counted before it loads: from its configuration and tokenizer
    (the folder `lens.models.loader.plan` found), the selected tests (None: all) and the lenses that are here."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(plan.folder, local_files_only=True).get_text_config()
    folder = Path(plan.folder)
    tokenizer = (
        Encoder(folder)
        if (folder / "tokenizer.json").is_file()
        else AutoTokenizer.from_pretrained(folder, local_files_only=True)
    )
    tied = bool(getattr(config, "tie_word_embeddings", False))
    d, vocab = int(config.hidden_size), int(config.vocab_size)
    shape = Shape(
        n_layers=int(config.num_hidden_layers),
        d_model=d,
        vocab=vocab,
        parameters=plan.parameters,
        embedding=vocab * d * (1 if tied else 2),
        weight_bytes=plan.weight_bytes,
    )
    lenses, trains = lenses_here(spec, plan)
    return plan_of(
        tokenizer, shape, spec.chat, lenses, tests, spot_checks=not plan.device.startswith("cpu"), trains=trains
    )


def plan_of(
    tokenizer: Any,
    shape: Shape,
    chat: bool,
    lenses: Sequence[str],
    tests: Sequence[str] | None,
    spot_checks: bool = False,
    trains: bool = True,
    readings: Readings | None = None,
) -> WorkPlan:
    """The work plan of a model of `shape` read by `tokenizer` (see `artefacts` and `Counter`)."""
    counter = Counter(tokenizer, shape.n_layers, shape.d_model, shape.vocab, readings=readings, spot_checks=spot_checks)
    keys = artefacts(chat, lenses, tests)
    return WorkPlan(
        shape,
        {
            artefact_name(key): counter.work(key) if trains or key != (TunedLens.name, "lens") else Work()
            for key in keys
        },
    )
