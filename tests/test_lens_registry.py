"""lens.lenses.registry: each lens declared once, and every layer that lists lenses reads it: the worked example
of CONTRIBUTING.md (a new lens is its module and one registry line) built from that file and run through them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lens.errors import NotRemote
from lens.lenses.lenses import EXACT, RAW
from lens.lenses.registry import KINDS, LENSES, READ_HERE, lens_for, lens_kind

ROOT = Path(__file__).parent.parent


def test_each_lens_is_declared_once_and_the_layers_list_the_same_lenses():
    import suite.order
    import suite.plugin
    from lens.cli import _parser

    assert LENSES == ("exact", "raw", "tuned", "jacobian") and len(set(LENSES)) == len(KINDS)
    assert READ_HERE == ("tuned", "jacobian")  # the lenses with matrices of their own
    assert suite.plugin.LENSES is LENSES and suite.order.LENSES is LENSES
    assert suite.plugin.lens_names("logit,tuned") == ("exact", "tuned")  # a lens by its title too
    choices = next(a for a in _parser()._subparsers._group_actions[0].choices["trace"]._actions if a.dest == "lens")
    assert tuple(choices.choices) == LENSES
    with pytest.raises(ValueError, match="no lens named 'nope': use one of exact, raw, tuned, jacobian"):
        lens_kind("nope")


def test_the_registry_costs_no_torch_to_list_the_lenses():
    code = "import sys, lens.lenses.registry as r; print(r.LENSES, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "('exact', 'raw', 'tuned', 'jacobian') False"


def test_the_logit_and_raw_lenses_are_read_on_ndif_the_others_are_refused_there(tiny_tokenizer):
    from lens.remote import simulated
    from tests.conftest import random_model

    model = random_model("llama", tiny_tokenizer)
    assert lens_for(model, "exact") is EXACT and lens_for(simulated(model), "raw") is RAW
    for name in READ_HERE:
        with pytest.raises(NotRemote, match=f"^the {name} lens is not read on NDIF: its matrices are applied here"):
            lens_for(simulated(model), name)


def example() -> tuple[str, str]:
    """CONTRIBUTING.md's worked example: the lens's module and its registry line."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text[text.index("## Add a lens") : text.index("## Add a model")]
    module, line = re.findall(r"```python\n(.*?)```", section, re.S)
    return module, line.rstrip("\n")


SCRIPT = """
import importlib.util, sys
import lens.lenses
lens.lenses.__path__.append(sys.argv[1])  # the example's module, as if it were lens/lenses/centered.py
path = sys.argv[2]
source = open(path).read()
kinds_end = source.index("\\n)\\n", source.index("KINDS = ("))
source = source[:kinds_end] + "\\n" + sys.argv[3] + source[kinds_end:]  # its one line in KINDS
registry = importlib.util.module_from_spec(importlib.util.spec_from_loader("lens.lenses.registry", loader=None))
registry.__file__ = path
sys.modules["lens.lenses.registry"] = registry
exec(compile(source, path, "exec"), registry.__dict__)
lens.lenses.registry = registry

import suite.order, suite.plugin
from lens.cli import _parser
from lens.errors import NotRemote
from lens.reads.trace import trace
from lens.remote import simulated
from tests.conftest import random_model

assert registry.LENSES[-1] == "centered" and "centered" in suite.order.LENSES
assert suite.plugin.lens_names("centered,logit") == ("centered", "exact")
args = _parser().parse_args(["trace", "m", "The capital of Germany is", "--lens", "centered"])
model = random_model("llama", sys.argv[4])
lens = registry.lens_kind(args.lens).from_source(model)
assert lens is registry.lens_for(model, "centered") and type(lens).__name__ == "CenteredLens"
(traced,) = trace(model, ["The capital of Germany is"], [" Berlin"], lens=lens)
assert traced.lens == "centered" and len(traced.layers) == model.n_layers
try:
    registry.lens_for(simulated(model), "centered")
except NotRemote:
    pass
else:
    raise AssertionError("a lens read here was read on NDIF")
print("read through", traced.lens)
"""


def test_a_new_lens_is_its_module_and_one_registry_line(tmp_path, tiny_tokenizer):
    module, line = example()
    assert line.strip().startswith('LensKind("centered"') and len(line.splitlines()) == 1
    (tmp_path / "centered.py").write_text(module)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path),
            str(ROOT / "lens" / "lenses" / "registry.py"),
            line,
            str(tiny_tokenizer),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "read through centered"
