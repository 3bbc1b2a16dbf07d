"""Runs a probe script in a fresh interpreter with one environment variable set
or removed: childtune reads its CHILDTUNE_* settings once per process, so each
value needs a process of its own."""
import os
import subprocess
import sys


def run_probe(script, variable, value):
    """stdout of `script` with `variable` set to `value` (None: unset), stripped."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop(variable, None)
    if value is not None:
        env[variable] = value
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()
