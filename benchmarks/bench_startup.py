"""TensorBoard start-up: what importing this plugin's entry point adds.

TensorBoard imports every ``tensorboard_plugins`` entry point when it
starts. Each run below is a fresh interpreter that first imports what
TensorBoard itself has loaded by then, then the entry point, and reports
both times and whether torch or scipy came along (neither may: the plugin
must start without torch, and scipy costs about 0.4 s). Target: at most
50 ms added. Run: ``.venv/bin/python benchmarks/bench_startup.py``.
"""

import json
import statistics
import subprocess
import sys

PROBE = """
import json, sys, time
started = time.perf_counter()
import numpy, werkzeug
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
tensorboard = time.perf_counter() - started
started = time.perf_counter()
import importlib.metadata
[entry] = [e for e in importlib.metadata.entry_points(group="tensorboard_plugins") if e.name == "rnn_units"]
entry.load()
plugin = time.perf_counter() - started
print(json.dumps({"tensorboard": tensorboard, "plugin": plugin,
                  "torch": "torch" in sys.modules, "scipy": "scipy" in sys.modules}))
"""


def main(runs=7):
    results = [json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                                         check=True).stdout) for _ in range(runs)]
    tensorboard = statistics.median(r["tensorboard"] for r in results)
    plugin = statistics.median(r["plugin"] for r in results)
    print(f"TensorBoard's own imports: {tensorboard * 1e3:.0f} ms; the rnn_units entry point adds "
          f"{plugin * 1e3:.0f} ms (median of {runs}); target 50 ms; ratio {plugin / 0.05:.2f}x")
    print(f"torch imported: {any(r['torch'] for r in results)}; scipy imported: {any(r['scipy'] for r in results)}")


if __name__ == "__main__":
    main()
