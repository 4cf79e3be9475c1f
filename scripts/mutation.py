"""Mutation testing of the modules that decide answers, limits and durability, with mutmut.

    python scripts/mutation.py                        # every deciding module, a sample of each
    python scripts/mutation.py app/search/verify.py   # one module (or several)
    python scripts/mutation.py --sample 0 MODULE      # every mutant of the module, not a sample
    python scripts/mutation.py --list                 # the deciding modules and the tests run on each

mutmut changes one thing at a time in a module (a comparison, a constant, a boolean, an argument) and runs
the tests that reach the changed function; a change no test notices "survives". The score is the share of
mutants the tests kill (timeouts count as killed: the change made something hang). There are about 4,000
mutants over the deciding modules at a few seconds each on 2 cores, so by default each module is scored
on a fixed sample (`--sample`, `--seed`): 60 mutants give the score within about 5 points.

Each module runs in its own work copy under --workdir (default /tmp/sourcelens-mutation), so the
checkout is untouched, against the tests listed for it (fast unit tests first, one API module where the
module's behaviour shows only through HTTP). Prints one line per module, then the surviving mutants
(`--show` prints their diffs). Equivalent mutants (changes that cannot alter behaviour) are marked in the
code with `# pragma: no mutate`.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "embeddings", "index")
UNIT, API = "tests/unit", "tests/api"
# Module -> the tests mutmut may run on its mutants.
DECIDING: dict[str, list[str]] = {
    # answers
    "app/search/scoring.py": [f"{UNIT}/test_scoring.py", f"{UNIT}/test_search_service.py"],
    "app/search/verify.py": [
        f"{UNIT}/test_verify.py",
        f"{UNIT}/test_local_features.py",
        f"{UNIT}/test_search_service.py",
    ],
    "app/search/compare.py": [f"{UNIT}/test_compare.py", f"{UNIT}/test_verify.py"],
    "app/calibration/fit.py": [f"{UNIT}/test_calibration.py"],
    "app/search/crops.py": [f"{UNIT}/test_crops.py", f"{UNIT}/test_search_service.py"],
    "app/search/fusion.py": [f"{UNIT}/test_search_service.py"],
    "app/search/evidence.py": [f"{UNIT}/test_evidence.py"],
    "app/search/pipeline.py": [f"{UNIT}/test_search_service.py", f"{API}/test_search_api.py"],
    "app/search/options.py": [f"{UNIT}/test_search_service.py", f"{API}/test_search_api.py"],
    "app/search/lookup.py": [f"{UNIT}/test_search_service.py", f"{API}/test_search_api.py"],
    # limits
    "app/api/middleware.py": [f"{API}/test_limits.py"],
    "app/api/security.py": [f"{UNIT}/test_policies.py", f"{API}/test_access.py", f"{API}/test_operations.py"],
    "app/ingest/manifest.py": [f"{UNIT}/test_manifest.py"],
    "app/ingest/archive.py": [f"{UNIT}/test_archive.py", f"{API}/test_ingest_jobs_api.py"],
    "app/ingest/fetch.py": [f"{UNIT}/test_fetch.py"],
    "app/ingest/intake.py": [f"{UNIT}/test_intake.py", f"{API}/test_ingest_jobs_api.py", f"{API}/test_limits.py"],
    "embeddings/loader.py": [f"{UNIT}/test_loader.py"],
    # durability
    "app/ingest/pipeline.py": [f"{UNIT}/test_ingest.py", f"{UNIT}/test_jobs.py"],
    "app/ingest/jobs.py": [f"{UNIT}/test_jobs.py", f"{UNIT}/test_ingest.py"],
    "app/ingest/writer.py": [f"{UNIT}/test_jobs.py", f"{UNIT}/test_ingest.py"],
    "app/catalog/service.py": [f"{UNIT}/test_catalog_service.py"],
    "app/catalog/index_sync.py": [f"{UNIT}/test_ingest.py", f"{UNIT}/test_catalog_service.py"],
    "index/faiss_index.py": [f"{UNIT}/test_index.py", f"{UNIT}/test_index_damage.py"],
    "app/database/__init__.py": [f"{UNIT}/test_migrations.py"],
    # the model's CPU
    "embeddings/scheduler.py": [f"{UNIT}/test_scheduler.py"],
}
KILLED = {1, 3, 36, -24, 24, 152, 255}  # test failures, and timeouts (mutmut's exit codes)
SURVIVED = {0, 5, 33}  # tests passed, or no test reached the mutant
NO_MATCH = "no-such-mutant-*"  # generates mutants and collects coverage, runs none


def main() -> int:
    args = parse_args()
    if args.list:
        for module, tests in DECIDING.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    scores = []
    for module in args.modules or list(DECIDING):
        work = args.workdir / module.replace("/", "_").removesuffix(".py")
        tests = args.tests or DECIDING.get(module) or [UNIT, API]
        prepare(work, module, tests)
        scores.append(score(work, module, args))
    print(f"mutation: lowest module score {min(scores):.1f}% (goal 85%)")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="paths of modules to mutate (default: every deciding module)")
    parser.add_argument("--tests", nargs="*", help="tests mutmut may run (default: those listed for the module)")
    parser.add_argument("--sample", type=int, default=60, help="mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sourcelens-mutation"))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--list", action="store_true", help="list the deciding modules and their tests")
    return parser.parse_args()


def prepare(work: Path, module: str, tests: list[str]) -> None:
    """A copy of the code and tests with mutmut's settings; results of earlier runs there are kept."""
    work.mkdir(parents=True, exist_ok=True)
    for name in (*PACKAGES, "tests"):
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "source_paths": list(PACKAGES),
        "only_mutate": [module],
        "pytest_add_cli_args": ["-q", "-p", "no:cacheprovider"],
        "pytest_add_cli_args_test_selection": tests,
        "process_isolation": "forkserver",  # torch is not fork-safe once its threads run
        "do_not_mutate_patterns": [r"^\s*log\.\w+\("],  # what a log line says is no behaviour
    }
    lines = ["[tool.mutmut]", *(f"{key} = {json.dumps(value)}" for key, value in settings.items())]
    pytest_section = (ROOT / "pyproject.toml").read_text().split("[tool.pytest.ini_options]", 1)[1].split("\n[", 1)[0]
    lines += ["", "[tool.pytest.ini_options]" + pytest_section]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")


def mutmut(work: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, check=False, capture_output=True)


def score(work: Path, module: str, args: argparse.Namespace) -> float:
    meta = work / "mutants" / f"{module}.meta"
    mutmut(work, "run", "--max-children", str(args.max_children), NO_MATCH)
    if not meta.exists():
        print(f"mutation: {module}: no mutants (or mutmut failed: run it in {work})")
        return 100.0
    names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
    if 0 < args.sample < len(names):
        names = sorted(random.Random(args.seed).sample(names, args.sample))
    mutmut(work, "run", "--max-children", str(args.max_children), *names)
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    killed = [name for name in names if codes.get(name) in KILLED]
    survived = [name for name in names if codes.get(name) in SURVIVED]
    checked = len(killed) + len(survived)
    result = 100.0 * len(killed) / checked if checked else 100.0
    unchecked = len(names) - checked
    scope = f"a sample of {len(names)} of {len(codes)}" if len(names) < len(codes) else f"all {len(codes)}"
    extra = f", {unchecked} not checked" if unchecked else ""
    print(f"mutation: {module}: {len(killed)}/{checked} killed ({scope} mutants), score {result:.1f}%{extra}")
    for name in survived:
        if args.show:
            shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, capture_output=True)
            print(shown.stdout.decode())
        else:
            print(f"  survived: {name}")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    sys.exit(main())
