"""Thread pools are sized by the cores the process may use, not the host's count."""

import pytest

from app.core.cores import usable_cores


@pytest.fixture
def four_allowed(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr("os.cpu_count", lambda: 64)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        (None, 4),  # no cgroup v2 file: the affinity decides
        ("max 100000", 4),  # no quota
        ("200000 100000", 2),  # docker --cpus=2
        ("150000 100000", 2),  # a part of a core counts as a core
        ("50000 100000", 1),
        ("800000 100000", 4),  # a quota above the allowed cores does not add any
        ("garbage", 4),
    ],
)
def test_usable_cores_follow_affinity_and_quota(tmp_path, four_allowed, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    assert usable_cores(path) == expected
