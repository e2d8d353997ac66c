"""A closed output pipe (`rims-rl presets | head -0`) is one line on stderr, exit 2."""
from __future__ import annotations

import subprocess
import sys


def test_a_closed_output_pipe_is_one_line(tmp_path, repo, script):
    """`rims-rl presets | head -0`: the pipe is closed before the first write."""

    result = subprocess.run(["bash", "-c", f"'{sys.executable}' '{script}' presets | head -0; exit ${{PIPESTATUS[0]}}"],
                            cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
