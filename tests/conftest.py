"""Test-wide settings: no first-compile notice on stderr (tests that capture stderr expect
exactly their own lines; tests/test_jit_cache.py checks the notice in a subprocess)."""
import os

os.environ["TMAC_QUIET"] = "1"
