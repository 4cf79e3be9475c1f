"""Mutation testing of the modules that decide answers, limits and durability, with mutmut.

    python scripts/mutation.py                      # every deciding module (an hour or more on 2 cores)
    python scripts/mutation.py app/search/verify.py # one module (or several)
    python scripts/mutation.py --list               # the deciding modules

mutmut changes one thing at a time in a module (a comparison, a constant, a boolean, an argument) and runs
the tests that reach the changed function; a change no test notices "survives". The score is the share of
mutants the tests kill (timeouts count as killed: the change made something hang). Runs in a work copy
(default /tmp/sourcelens-mutation), so the checkout is untouched; mutmut keeps its results there and
re-runs only functions that changed since. Process tests (subprocesses run the installed code, not the
mutant) are left out. Prints one line per module, then the surviving mutants (`--show` prints their diffs).
Equivalent mutants (a change that cannot alter behaviour) are marked in the code with `# pragma: no mutate`.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "embeddings", "index")
DECIDING = (
    # answers
    "app/search/scoring.py",
    "app/search/verify.py",
    "app/search/crops.py",
    "app/search/pipeline.py",
    "app/search/fusion.py",
    "app/search/options.py",
    # limits
    "app/api/middleware.py",
    "app/ingest/manifest.py",
    "app/ingest/archive.py",
    "app/ingest/fetch.py",
    "app/ingest/intake.py",
    "embeddings/loader.py",
    # durability
    "app/ingest/pipeline.py",
    "app/ingest/jobs.py",
    "app/catalog/service.py",
    "app/catalog/index_sync.py",
    "index/faiss_index.py",
    # the model's CPU
    "embeddings/scheduler.py",
)
KILLED = {1, 3, 36, -24, 24, 152, 255}  # test failures, and timeouts (mutmut's exit codes)
SURVIVED = {0, 5, 33}  # tests passed, or no test reached the mutant


def main() -> int:
    args = parse_args()
    if args.list:
        print("\n".join(DECIDING))
        return 0
    modules = args.modules or [m for m in DECIDING if (ROOT / m).exists()]
    work = args.workdir
    prepare(work, modules, args.tests)
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
    subprocess.run(command, cwd=work, check=False, stdout=subprocess.DEVNULL if args.quiet else None)
    return report(work, modules, args.show)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="paths of modules to mutate (default: every deciding module)")
    parser.add_argument("--tests", nargs="*", default=["tests/unit", "tests/api"], help="tests mutmut may run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sourcelens-mutation"))
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--quiet", action="store_true", help="hide mutmut's progress")
    parser.add_argument("--list", action="store_true", help="list the deciding modules and exit")
    return parser.parse_args()


def prepare(work: Path, modules: list[str], tests: list[str]) -> None:
    """A copy of the code and tests with mutmut's settings; results of earlier runs there are kept."""
    work.mkdir(parents=True, exist_ok=True)
    for name in (*PACKAGES, "tests"):
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "source_paths": list(PACKAGES),
        "only_mutate": modules,
        "pytest_add_cli_args": ["-q", "-p", "no:cacheprovider", "-m", "not process"],
        "pytest_add_cli_args_test_selection": [t for t in tests if (ROOT / t).exists()],
        "process_isolation": "forkserver",  # torch is not fork-safe once its threads run
    }
    lines = ["[tool.mutmut]", *(f"{key} = {json.dumps(value)}" for key, value in settings.items())]
    pytest_section = (ROOT / "pyproject.toml").read_text().split("[tool.pytest.ini_options]", 1)[1].split("\n[", 1)[0]
    lines += ["", "[tool.pytest.ini_options]" + pytest_section]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")


def report(work: Path, modules: list[str], show: bool) -> int:
    survivors: list[str] = []
    worst = 100.0
    for module in modules:
        meta = work / "mutants" / f"{module}.meta"
        if not meta.exists():
            print(f"mutation: {module}: no results (no mutants, or mutmut failed)")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(code in KILLED for code in codes.values())
        survived = sorted(name for name, code in codes.items() if code in SURVIVED)
        checked = killed + len(survived)
        score = 100.0 * killed / checked if checked else 100.0
        worst = min(worst, score)
        unchecked = len(codes) - checked
        extra = f", {unchecked} not checked" if unchecked else ""
        print(f"mutation: {module}: {killed}/{checked} killed, score {score:.1f}%{extra}")
        survivors += survived
    for name in survivors:
        if show:
            subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, check=False)
        else:
            print(f"  survived: {name}")
    print(f"mutation: lowest module score {worst:.1f}% (goal 85%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
