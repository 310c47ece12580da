"""The instrument stands alone: importing lens pulls in neither pytest nor the suite nor the findings."""

import subprocess
import sys


def test_lens_imports_no_pytest_suite_or_findings():
    code = (
        "import sys, lens, lens.trace, lens.cli, lens.check, lens.attention, lens.patching, lens.grid; "
        "print(sorted(m for m in ('pytest', '_pytest', 'suite', 'findings') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_suite_imports_no_findings():
    code = "import sys, suite.plugin, suite.report, suite.recorded; print('findings' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
