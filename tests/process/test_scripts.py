"""The evaluation script runs as a user would run it and prints its table."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[2]


def test_the_script_prints_a_row_per_transform(catalogue, tmp_path):
    command = [sys.executable, "scripts/evaluate.py", str(catalogue), "--queries", "6", "--holdout", "2"]
    command += ["--transforms", "crop", "banner", "--data-dir", str(tmp_path / "eval")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.split()}
    assert {"crop", "banner", "overall"} <= set(rows)
    assert rows["overall"][1] == "12" and float(rows["overall"][2]) >= 0.8  # factory top-1 on easy queries
    assert "held-out products" in done.stdout and "latency per search" in done.stdout
