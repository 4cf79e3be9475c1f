"""The `sourcelens` console script, run as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

SCRIPT = Path(sys.executable).parent / "sourcelens"


def run(data_dir: Path, *args: str, model: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCELENS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    env.pop("SOURCELENS_MODEL", None)
    if model:
        env["SOURCELENS_MODEL"] = model
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_ingest_search_and_mismatch_then_reindex(data_dir, catalogue):
    tiny = "openclip:sourcelens-tiny:random"
    ingested = run(data_dir, "ingest", str(catalogue), model=tiny)
    assert ingested.returncode == 0, ingested.stderr
    assert "28 added, 0 updated, 0 unchanged, 0 failed" in ingested.stdout

    photo = catalogue.parent / "images" / "F003-P001-1.jpg"
    found = run(
        data_dir, "search", str(photo), "--top-k", "2", "--json", "--include-weak"
    )  # model taken from the index
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    assert body["factories"][0]["factory_id"] == "F003" and len(body["factories"]) == 2

    mismatch = run(data_dir, "search", str(photo), model="effnet-lite0")
    assert mismatch.returncode == 2
    assert "sourcelens reindex" in mismatch.stderr and "Traceback" not in mismatch.stderr

    reindexed = run(data_dir, "reindex", model="effnet-lite0")
    assert reindexed.returncode == 0, reindexed.stderr
    assert "re-embedded 28 images with effnet-lite0" in reindexed.stdout
    table = run(data_dir, "search", str(photo), "--top-k", "3", model="effnet-lite0")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[0] == "1." and "F003" in table.stdout.splitlines()[0]


def test_ingest_reports_bad_rows_and_missing_manifest(data_dir, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("factory_id,product_id,image\nF1,P1,nowhere.jpg\n")
    result = run(data_dir, "ingest", str(manifest), model="openclip:sourcelens-tiny:random")
    assert result.returncode == 1
    assert "line 2: nowhere.jpg: file not found" in result.stderr
    assert "1 failed" in result.stdout
    missing = run(data_dir, "ingest", str(tmp_path / "absent.csv"), model="openclip:sourcelens-tiny:random")
    assert missing.returncode == 2 and "absent.csv" in missing.stderr


def test_demo_falls_back_to_offline_model_and_ingests_sample(data_dir):
    result = run(data_dir, "demo", "--no-serve", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FALLING BACK to effnet-lite0" in result.stderr
    assert "60 added" in result.stdout and "0 failed" in result.stdout
    keys = [line for line in result.stdout.splitlines() if " key" in line and "slk_" in line]
    assert [line.split(":")[0] for line in keys] == ["admin key", "factory key (F001)"]
    again = run(data_dir, "demo", "--no-serve", timeout=600)
    assert "0 added, 0 updated, 60 unchanged" in again.stdout
    assert all(line in again.stdout for line in keys)  # the same keys, kept in the data directory


def test_keys_are_created_listed_and_revoked_from_the_command_line(data_dir):
    made = run(data_dir, "keys", "create", "--name", "acme portal", "--role", "factory", "--factory", "F1")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("key 1 (factory for F1): slk_") and "shown this once" in made.stderr
    token = made.stdout.split(": ", 1)[1].strip()
    listed = run(data_dir, "keys", "list")
    assert "acme portal" in listed.stdout and "active" in listed.stdout and token not in listed.stdout
    assert token[:12] in listed.stdout  # the prefix tells keys apart
    assert run(data_dir, "keys", "revoke", "1").stdout.strip() == "key 1 (acme portal) revoked"
    assert "revoked" in run(data_dir, "keys", "list").stdout
    bad = run(data_dir, "keys", "create", "--name", "x", "--role", "factory")
    assert bad.returncode == 2 and "needs the ids" in bad.stderr and "Traceback" not in bad.stderr
    assert run(data_dir, "keys", "revoke", "99").returncode == 2
