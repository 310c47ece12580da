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
    if sys.platform == "darwin":  # bytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        # Not ru_maxrss: Linux carries it across exec, so it would include the parent's memory.
        proc_status = open("/proc/self/status").read()
        peak = int(next(line for line in proc_status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
    with open(out, "w") as f:
        f.write(str(peak))
sys.exit(status)
