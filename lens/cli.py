"""The `lens` command: trace a prompt through a model's layers, list and fetch models, check a device, train a
tuned lens."""

from __future__ import annotations

import argparse
import json
import sys

from lens.errors import LensError, command
from lens.lenses.registry import KINDS, LENSES, lens_kind
from lens.reads.backends import BACKENDS


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for bad input, with a one-line message)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except LensError as error:
        print(f"lens: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lens", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("trace", help="the logit lens for one prompt, layer by layer")
    p.add_argument("model", help="a name from `lens models`, a Hub repo id, a model folder or a .gguf file")
    p.add_argument("prompt")
    p.add_argument("--answer", help="follow this answer's first token, e.g. ' Berlin'")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--lens", choices=LENSES, default=LENSES[0], help="; ".join(f"{kind.name}: {kind.about}" for kind in KINDS)
    )
    for kind in KINDS:
        if kind.source:
            p.add_argument(f"--{kind.name}-lens", metavar="SOURCE", help=f"with --lens {kind.name}: {kind.source}")
    _model_options(p)
    p.add_argument(
        "--remote",
        action="store_true",
        help="run a Hub model on NDIF through nnsight (no weights here; needs NDIF_API_KEY)",
    )
    p.set_defaults(run=_trace)

    p = sub.add_parser(
        "train-tuned", help="train a tuned lens for a model, kept in the lens cache (a second run costs nothing)"
    )
    p.add_argument("model", help="a name from `lens models`, a Hub repo id, a model folder or a .gguf file")
    p.add_argument(
        "--text",
        metavar="FILE",
        help="UTF-8 general text to train on beside the held-out prompts (lens/tuned_corpus.toml), "
        "paragraphs separated by blank lines, one in five held out (default: the Python language "
        "reference that ships with Python, pydoc_data.topics)",
    )
    p.add_argument("--tokens", type=int, default=None, help="tokens of general text to read (default: 512)")
    p.add_argument("--force", action="store_true", help="train again even where a lens is kept")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="then measure the held-out KL to the output per block, tuned lens against the logit lens",
    )
    _model_options(p)
    p.set_defaults(run=_train_tuned)

    p = sub.add_parser("models", help="the named models, and whether their weights are here")
    p.set_defaults(run=_models)

    p = sub.add_parser(
        "download",
        help="fetch a model's weights, and the published lenses models.toml names for it "
        "(Hub models and lenses go to the HF cache)",
    )
    p.add_argument("names", nargs="*", help="names from `lens models`, or Hub repo ids")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="the embedded default models (their weights only: setup "
        "stays offline; `lens download gemma3` adds its lens)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_download)

    p = sub.add_parser(
        "check",
        help="does the lens on this device agree with the CPU? (--backend nnsight: "
        "does nnsight's lens agree with the bridge's?)",
    )
    p.add_argument("model")
    _model_options(p)
    p.set_defaults(run=_check)
    return parser


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: mps > cuda > cpu)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: float32 where it fits)")
    p.add_argument("--offload", action="store_true", help="force CPU/disk offload (big models)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="what runs the forward pass: TransformerLens's bridge (default) or nnsight",
    )


def _load(args: argparse.Namespace):
    from lens.models.loader import load

    return load(args.model, device=args.device, dtype=args.dtype, offload=args.offload or None)


def _trace(args: argparse.Namespace) -> int:
    if args.temperature <= 0:
        raise LensError("--temperature must be positive, e.g. 1.0")
    from lens.reads.trace import trace

    for kind in KINDS:
        if _source(args, kind.name) and args.lens != kind.name:
            raise LensError(f"--{kind.name}-lens goes with --lens {kind.name}")
    if args.remote or _runs_remotely(args.model):
        if not lens_kind(args.lens).in_jobs:
            raise LensError(f"the {args.lens} lens is read here, not on NDIF: drop --remote (the model must be here)")
        model = _connect(args)
    else:
        model = _load(args)
    backend = model.runs_through(args.backend or "bridge")
    lens = _lens(args, model)
    (result,) = trace(
        model,
        [args.prompt],
        [args.answer],
        backend=backend,
        top_k=args.top_k,
        temperature=args.temperature,
        lens=lens,
    )
    if result.answer_note:
        print(f"lens: note: {result.answer_note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        from lens.table import trace_table

        print(trace_table(result))
    return 0


def _lens(args: argparse.Namespace, model):
    """The lens `--lens` names, for this model (from its `--NAME-lens SOURCE` where given)."""
    return lens_kind(args.lens).from_source(model, _source(args, args.lens))


def _source(args: argparse.Namespace, name: str) -> str | None:
    """What `--NAME-lens` gave (None: not given, or a lens that takes no source)."""
    return getattr(args, f"{name}_lens", None)


def _train_tuned(args: argparse.Namespace) -> int:
    from lens.lenses.lenses import EXACT
    from lens.lenses.train_tuned import TOKENS, train_tuned
    from lens.lenses.tuned_held_out import held_out_kl, report
    from lens.lenses.tuned_text import default_corpus, file_corpus

    if args.tokens is not None and args.tokens < 1:
        raise LensError("--tokens must be at least 1, e.g. 512")
    if args.backend not in (None, "bridge"):
        raise LensError("train-tuned runs the model through the bridge: drop --backend")
    corpus = file_corpus(args.text) if args.text else default_corpus()
    model = _load(args)
    trained = train_tuned(
        model, corpus, args.tokens or TOKENS, force=args.force, say=lambda line: print(f"lens: {line}", file=sys.stderr)
    )
    measured = None
    if args.evaluate:
        measured = held_out_kl(model, (EXACT, trained.lens), corpus)
    print(report(trained, measured))
    return 0


def _runs_remotely(name: str) -> bool:
    """Whether models.toml says this model runs on NDIF (`remote = true`)."""
    from lens.models.registry import registry

    spec = registry().get(name)
    return spec is not None and spec.hosted


def _connect(args: argparse.Namespace):
    """The model on NDIF (`--remote`): only nnsight runs there, and nothing is loaded here."""
    given = [f"--{name}" for name in ("device", "dtype") if getattr(args, name)] + ["--offload"] * args.offload
    if args.backend == "bridge":
        given.append("--backend bridge")
    if given:
        raise LensError(f"--remote runs the model on NDIF through nnsight: drop {' '.join(given)}")
    from lens.remote import connect

    return connect(args.model)


def _models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from lens.models.registry import registry

    rows = []
    for spec in registry().values():
        if spec.hosted:
            rows.append([spec.name, spec.describe(), "no (on NDIF)", f"nothing: `{command(f'trace {spec.name} ...')}`"])
            continue
        here = spec.is_present()
        fetch = "" if here else f"`{spec.download_command()}`"
        rows.append([spec.name, spec.describe(), "yes" if here else "no", fetch])
    print(tabulate(rows, headers=["name", "model", "weights here", "to fetch"]))
    return 0


def _download(args: argparse.Namespace) -> int:
    from lens.lenses.published import fetch_published
    from lens.models.registry import embedded_models, resolve

    named = [resolve(name) for name in args.names]
    embedded = embedded_models() if args.embedded else []
    if not named and not embedded:
        raise LensError("name a model to download, e.g. `lens download llama3` (see `lens models`)")
    for spec in named + embedded:
        spec.fetch(quiet=args.quiet)
        if spec in named:
            line = fetch_published(spec, quiet=args.quiet)  # what it could not fetch, in one line: goes on
            if line:
                print(f"lens: {line}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from lens.reads.check import check_device, compare_backends

    if args.backend not in (None, "bridge"):
        result = compare_backends(_load(args), args.backend)
    else:
        result = check_device(_load(args))
    print(result.summary())
    return 0 if result.agrees else 1


if __name__ == "__main__":
    sys.exit(main())
