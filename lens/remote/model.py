"""A Hub model run on NDIF (the National Deep Inference Fabric) through nnsight: `RemoteModel`, which answers the
`lens.models.model.Model` protocol as a model here does, and builds the jobs its reads send.

The weights never come here. nnsight builds the model on the meta device from its config (and loads its
tokenizer) from the Hub (`lens.remote.session.connect`), and ships each job's trace to NDIF, which runs it on the
model it hosts. What a job computes runs there (`lens.remote.blocks`, `lens.reads.intrace`): the lens at the last
position, reduced to what the claims read (`lens.reads.reduce`: followed tokens' logits and ranks, top-k, entropy
and KL per temperature, the last block's difference from the output), the model's own greedy continuation, the
logit-lens grid, activation patching (p(answer) per patched row); so what comes back is figures, a few kilobytes a
prompt, never activations (attention patterns are not read there: `lens.remote.reads`). Jobs are queued without
waiting, polled and kept on disk (`lens.remote.jobs`). A model here can take the same path, each request
serialized, unpacked where no `lens` is and the unpacked code run here (`simulated`: one device, no HTTP, queue
or sandbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lens.errors import NotRemote
from lens.models.registry import ModelSpec
from lens.reads.backends import nnsight_model
from lens.reads.reduce import BATCH
from lens.reads.trace import padded_ids
from lens.remote import blocks, jobs, results, submit
from lens.tokens import encode, encode_ids

PATCHES_PER_JOB = 8
"""Patchings per session job: each is one forward of (1 + 1 + blocks x positions) rows."""
NDIF_DTYPE = torch.bfloat16
"""The dtype NDIF runs its models in (its ModelActor's default, under autocast)."""


@dataclass
class RemoteModel:
    """A Hub model hosted by NDIF, ready for the lens: no weights here, only its config and tokenizer."""

    spec: ModelSpec
    repo: str
    nn: Any
    """nnsight's TransformersModel, built on the meta device (never dispatched here)."""
    tokenizer: Any
    n_layers: int
    n_ctx: int
    softcap: float | None
    host: str
    via: bool | str = True
    """nnsight's `remote=`: True runs on NDIF; "local" is nnsight's dry run here of exactly that request
    (serialized, run back where no `lens` package is, against a model loaded here: `simulated`)."""
    model_key: str | None = None
    """nnsight's name of the model to NDIF (class, the Hub's repo id, revision, task)."""
    dtype: torch.dtype = NDIF_DTYPE
    weights_id: str = ""
    """What the results are of: NDIF's model key, or the simulated model's weights."""
    spot_checks: bool | None = False
    """Nothing runs here to spot-check against the CPU."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> str:
        """Where it runs, as a report says it: "ndif (api.ndif.us)"."""
        return f"ndif ({self.host.split('://')[-1]})" if self.via is True else "ndif, simulated here"

    @property
    def identity(self) -> str:
        """The model its jobs run on, as the cache of finished jobs knows it."""
        return self.model_key or f"{self.repo}@{self.weights_id}"

    @property
    def code_version(self) -> str:
        """A digest of the code that runs its jobs (`lens.remote.blocks.code_version`): kept results of other code
        are not reused."""
        return blocks.code_version()

    @property
    def generation_config(self) -> Any:
        return self.nn._module.generation_config

    def runs_through(self, asked: str) -> str:
        """nnsight, whatever is asked: it is what runs a trace on NDIF."""
        return "nnsight"

    @property
    def bridge(self) -> Any:
        """No bridge here: the model's modules are on NDIF, where its reads go as jobs (`lens.remote.reads`)."""
        raise NotRemote(f"{self.name} runs on NDIF: its modules are not here (its reads go there as jobs)")

    @property
    def hf_model(self) -> Any:
        return self.bridge

    def reduce_lens(
        self,
        sequences: Sequence[Sequence[int]],
        ids: dict[str, tuple[tuple[int, ...], ...]],
        output_ids: tuple[tuple[int, ...], ...],
        top_k: int,
        temperatures: tuple[float, ...],
        batch_size: int = BATCH,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """The lens of each token sequence, read after its last token, reduced on NDIF (`lens.reads.reduce`) for each
        lens named in `ids` (per prompt the token ids it follows), one job per batch."""
        jobs_ = []
        for start in range(0, len(sequences), batch_size):
            stop = min(len(sequences), start + batch_size)
            batch = encode_ids(self.tokenizer, [list(s) for s in sequences[start:stop]], self.n_ctx)
            follow = {name: padded_ids(rows[start:stop]) for name, rows in ids.items()}
            extra = padded_ids(output_ids[start:stop])
            args = {
                "lenses": tuple(ids),
                "ids": follow,
                "output_ids": extra,
                "top_k": top_k,
                "temperatures": tuple(temperatures),
                "softcap": self.softcap,
            }
            jobs_.append(jobs.Job("lens", dict(batch), args, stop - start, results.lens_job_bytes(self.n_layers, args)))
        done = jobs.run(self, jobs_, f"the lens over {jobs.count(len(sequences), 'prompt')}")
        joined = {name: results.join([result[name] for result in done]) for name in ids}
        if "exact" in joined:
            results.require_exact(self, joined["exact"])
        return joined

    def continuations(
        self, prompts: Sequence[str], max_new_tokens: int, batch_size: int = BATCH
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Each prompt's greedy continuation by the model on NDIF (`max_new_tokens` token ids) and its margins
        (`lens.reads.reduce.margins`), one job per batch."""
        jobs_ = []
        for start in range(0, len(prompts), batch_size):
            batch = encode(self.tokenizer, list(prompts[start : start + batch_size]), self.n_ctx)
            n = batch["input_ids"].shape[0]
            pad = self.tokenizer.pad_token_id
            args = {"max_new_tokens": max_new_tokens, "pad": self.tokenizer.eos_token_id if pad is None else pad}
            jobs_.append(jobs.Job("continuation", dict(batch), args, n, results.continuation_bytes(n, max_new_tokens)))
        done = jobs.run(self, jobs_, f"its own continuation of {jobs.count(len(prompts), 'prompt')}")
        return (
            [row for ids, _ in done for row in ids.tolist()],
            [row for _, margin in done for row in margin.tolist()],
        )

    def grid(self, prompt: str) -> dict[str, torch.Tensor]:
        """The exact lens's top token and its probability at every (block, position) of one prompt, on NDIF."""
        batch = encode(self.tokenizer, [prompt], self.n_ctx)
        cells = self.n_layers * batch["input_ids"].shape[1]
        (result,) = jobs.run(
            self,
            [jobs.Job("grid", dict(batch), {"softcap": self.softcap}, 1, jobs.saved_bytes(cells * 8, 2))],
            "the logit-lens grid",
        )
        return result

    def patch(self, cases: Sequence[Any]) -> list[torch.Tensor]:
        """Activation patching of each case (`lens.reads.patching.Case`) on NDIF: one forward per case whose batch holds
        the clean prompt, the corrupted one and a corrupted row per (block, position) patched from the clean row
        in the same pass; `PATCHES_PER_JOB` cases per session job; p(answer) per row comes back."""
        jobs_ = []
        for start in range(0, len(cases), PATCHES_PER_JOB):
            chunk = cases[start : start + PATCHES_PER_JOB]
            inputs, rows = [], 0
            for case in chunk:
                k = len(case.positions)
                ids = torch.cat([case.clean_ids, case.corrupt_ids, case.corrupt_ids.expand(self.n_layers * k, -1)])
                inputs.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
                rows += ids.shape[0]
            args = {
                "inputs": inputs,
                "k": [len(c.positions) for c in chunk],
                "where": [torch.tensor(c.positions) for c in chunk],
                "target": [c.target for c in chunk],
            }
            jobs_.append(jobs.Job("patching", {}, args, len(chunk), jobs.saved_bytes(4 * rows, len(chunk))))
        done = jobs.run(self, jobs_, f"patching {jobs.count(len(cases), 'prompt')}")
        return [p for result in done for p in result]

    # ---- where its jobs run (`lens.remote.jobs.Runner`) ----------------------------------------------------------

    def submit(self, job: jobs.Job) -> str | jobs.Done:
        """Send a job to NDIF without waiting (its id); a simulated one runs here at once (`jobs.Done`)."""
        return submit.submit(self, job)

    def poll(self, job_id: str) -> Any:
        """A submitted job's result, or `jobs.Pending` while it is not back (`lens.remote.submit.poll`)."""
        return submit.poll(self, job_id)

    def request_bytes(self, job: jobs.Job) -> int:
        """The size of the request a job sends, serialized here as nnsight would send it (nothing is sent)."""
        return blocks.request_bytes(self, job)


def simulated(model: Any) -> RemoteModel:
    """A model loaded here, taken as if NDIF ran it: every job goes through the remote path (serialized, unpacked
    where no `lens` package is, the unpacked code run on this model), so its figures are those a remote run
    computes (tests, and `LENS_NDIF=simulate`)."""
    spec = model.spec
    nn = nnsight_model(model)
    return RemoteModel(
        spec=spec,
        repo=getattr(spec, "repo", spec.name),
        nn=nn,
        tokenizer=model.tokenizer,
        n_layers=model.n_layers,
        n_ctx=model.n_ctx,
        softcap=model.softcap,
        host="here",
        via="local",
        dtype=model.dtype,
        weights_id=model.weights_id,
    )
