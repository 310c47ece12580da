"""Run `python -m MODULE ARGS...` in this process and write its peak resident memory (bytes) to a file.

Usage: python benchmarks/peak_rss.py OUT_FILE MODULE [ARGS...]"""

import resource
import runpy
import sys

out, module, *args = sys.argv[1:]
sys.argv = [module, *args]
status = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as done:
    status = done.code if isinstance(done.code, int) else 0
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(out, "w") as f:  # Linux reports KiB, macOS bytes
        f.write(str(peak if sys.platform == "darwin" else peak * 1024))
sys.exit(status)
