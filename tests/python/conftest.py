"""pytest configuration of the Python package's tests: this directory on
sys.path (for published.py, the transcription of the published code), and the
repository root for tests that build a C++ reference program."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
