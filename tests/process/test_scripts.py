"""The evaluation script runs as a user would run it and prints its table."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[2]


def test_the_script_prints_a_row_per_transform(catalogue, tmp_path):
    command = [sys.executable, "scripts/evaluate.py", "--catalogue", str(catalogue), "--queries", "6", "--holdout", "2"]
    command += [
        "--transforms",
        "crop",
        "banner",
        "--data-dir",
        str(tmp_path / "eval"),
        "--details",
        str(tmp_path / "q"),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.split()}
    assert {"crop", "banner", "overall"} <= set(rows)
    assert rows["overall"][1] == "12" and float(rows["overall"][2]) >= 0.8  # default top-1 on easy queries
    assert float(rows["overall"][4]) >= float(rows["overall"][2])  # recall@5 counts at least what top-1 does
    assert re.search(r"unknown products: [1-9]\d* queries, answered confidently", done.stdout)
    assert "reliability" in done.stdout
    assert re.search(
        r"drawn as a catalogue product is, or as its mirror: 0; without them, answered confidently 0\.\d{3}",
        done.stdout,
    )
    assert "likeliest category right: copies" in done.stdout and "latency per search" in done.stdout
    with (tmp_path / f"q.{catalogue.stem}.csv").open(newline="") as handle:
        details = list(csv.DictReader(handle))
    assert [row["kind"] for row in details] == ["copy"] * 12 + ["unknown"] * (len(details) - 12)  # no twins here
    assert {row["query"].split()[1] for row in details[:12]} == {"crop", "banner"}
    right = [row for row in details if row["default_top1"] == "True"]
    assert right and all(row["own"].startswith(row["query"].split()[0]) for row in right)  # its own evidence
    assert all(re.search(r"(identical|near_duplicate) similarity 0\.\d{3} score", row["answer"]) for row in right)
    assert all(" inliers " in row["own"] for row in right if " identical " in row["own"])


def test_the_span_measurement_reports_copies_and_what_each_span_would_check(catalogue, tmp_path):
    command = [sys.executable, "scripts/verify_span.py", "--catalogue", str(catalogue), "--queries", "6"]
    command += ["--holdout", "2", "--transforms", "resize", "mirror", "--data-dir", str(tmp_path / "span")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    copies = re.search(r"(\d+) of 12 copies proven identical", done.stdout)
    assert copies and int(copies.group(1)) >= 6, done.stdout  # easy transforms of a drawn catalogue
    assert re.search(r"below the best candidate: 99% within 0\.\d{3}, all within 0\.\d{3}", done.stdout)
    spans = re.findall(r"span (0\.\d\d): copies missed (\d+), unknown products check (\d+\.\d) of 30", done.stdout)
    assert [span for span, _, _ in spans] == ["0.05", "0.08", "0.10", "0.15", "0.20"]
    checked = [float(count) for _, _, count in spans]
    assert checked == sorted(checked) and 0 < checked[-1] <= 30  # a wider span checks at least as many
    missed = [int(count) for _, count, _ in spans]
    assert missed == sorted(missed, reverse=True)


def test_the_hostile_run_finds_no_server_error_and_no_change_by_a_refused_request():
    command = [sys.executable, "scripts/hostile.py", "--generated", "20"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    line = done.stdout.splitlines()[-1]
    assert "| 0 responses >= 500" in line and "0 of them changed the catalogue" in line and line.endswith("PASS")


def test_the_scale_benchmark_prints_its_lines_on_a_small_catalogue():
    """bench_scale.py as a user runs it (here 5,000 vectors, not its 1,000,000): a line per figure group, FAISS and
    Milvus Lite, and the summary against the filtered-recall goal."""
    command = [sys.executable, "scripts/bench_scale.py", "--vectors", "5000", "--dim", "64", "--queries", "50"]
    command += ["--milvus-queries", "20", "--seconds", "0.5", "--processes", "1,2", "--extra-ef", ""]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines() if line.startswith("bench_scale")}
    assert {"bench_scale data", "bench_scale faiss", "bench_scale throughput", "bench_scale milvus-lite"} <= set(lines)
    assert re.search(r"1% filter .* recall@10 [01]\.\d{3}", lines["bench_scale milvus-lite"])
    assert re.search(r"filtered recall@10 [01]\.\d{3} with a 1% filter vs goal ≥ 0\.95", done.stdout)
