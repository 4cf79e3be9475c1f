"""`sourcelens jobs submit|status|watch|cancel|errors|list`: ingest jobs on a running service (`--server`, `--key`)."""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.api.schemas import IngestJobRead
from app.core.config import Settings
from app.core.errors import InvalidInputError

if TYPE_CHECKING:
    from app.client import SourceLens


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    jobs = commands.add_parser("jobs", help="ingest jobs on a running service (--server URL --key K)")
    actions = jobs.add_subparsers(required=True, metavar="ACTION")
    submit = actions.add_parser("submit", help="send a ZIP (manifest.csv + images) or a CSV of image URLs")
    submit.add_argument("catalogue", type=Path)
    submit.add_argument("--wait", action="store_true", help="watch it to the end, with a progress bar")
    submit.set_defaults(handler=cmd_submit)
    for name, handler, text in (
        ("status", cmd_status, "a job's report"),
        ("watch", cmd_watch, "follow a job to its end, with a progress bar"),
        ("cancel", cmd_cancel, "stop a job after its batch in hand (what it stored stays)"),
        ("errors", cmd_errors, "its failed rows as CSV, with an error column (to fix and send again)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        action.set_defaults(handler=handler)
    actions.add_parser("list", help="recent jobs, newest first").set_defaults(handler=cmd_list)
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", help="print the API's JSON")
        action.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)


def client_for(args: argparse.Namespace) -> "SourceLens":
    from app.client import SourceLens

    if not args.server:
        raise InvalidInputError("this runs on a service: give --server URL (and --key K)")
    return SourceLens(args.server, key=args.key)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        job = lens.submit_job(args.catalogue)
        if not args.wait:
            _show(job, args.json)
            return 0
        return _watch(lens, job, args)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        _show(lens.job(args.job_id), args.json)
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        return _watch(lens, lens.job(args.job_id), args)


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        _show(lens.cancel_job(args.job_id), args.json)
    return 0


def cmd_errors(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        sys.stdout.write(lens.job_errors_csv(args.job_id))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        jobs = lens.jobs()
    if args.json:
        print("[" + ",\n".join(job.model_dump_json() for job in jobs) + "]")
    for job in [] if args.json else jobs:
        print(f"{job.id}  {job.state:<9}  {job.done}/{job.total}  added {job.added}  failed {job.failed}  {job.source}")
    return 0


def _watch(lens: "SourceLens", job: IngestJobRead, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: the bar is updated by each poll anyway
    with tqdm(total=job.total or None, unit="row", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:

        def progress(report: IngestJobRead) -> None:
            bar.total = report.total
            bar.update(report.done - bar.n)
            bar.set_postfix(added=report.added, failed=report.failed)

        final = lens.wait_for_job(job.id, progress=progress, poll_s=args.poll)
    _show(final, args.json)
    return 0 if final.state == "done" else 1


def _show(job: IngestJobRead, as_json: bool) -> None:
    if as_json:
        print(job.model_dump_json(indent=2))
        return
    print(f"job {job.id}: {job.state}, {job.done} of {job.total} rows, {job.added} added, {job.failed} failed")
    for error in job.errors:
        print(f"  line {error.line}: {error.image}: {error.reason}")
    if job.error:
        print(f"  {job.error}")
