"""`sourcelens queries submit|status|watch|results|cancel|list`: batch query jobs on a running service."""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.api.schemas import QueryJobRead
from app.cli.jobs import client_for
from app.core.config import Settings

if TYPE_CHECKING:
    from app.client import SourceLens


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    queries = commands.add_parser("queries", help="batch queries: many photos searched as a job (--server URL --key K)")
    actions = queries.add_subparsers(required=True, metavar="ACTION")
    submit = actions.add_parser("submit", help="send a ZIP of photos, or a CSV/text list of image URLs")
    submit.add_argument("photos", type=Path)
    submit.add_argument("--top-k", type=int, default=3, help="factories kept per photo (1-10, default 3)")
    submit.add_argument("--include-weak", action="store_true", help="keep candidates without a confident match")
    for name, kind in (("--region", str), ("--category", str), ("--max-moq", int)):
        submit.add_argument(name, type=kind)
    submit.add_argument("--min-price", type=float)
    submit.add_argument("--max-price", type=float)
    submit.add_argument("--wait", action="store_true", help="watch it to the end, then write its results")
    submit.set_defaults(handler=cmd_submit)
    for name, handler, text in (
        ("status", cmd_status, "a job's progress"),
        ("watch", cmd_watch, "follow a job to its end with a progress bar, then write its results"),
        ("results", cmd_results, "write a job's results (so far)"),
        ("cancel", cmd_cancel, "stop a job after the photo in hand (its answers so far stay)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        action.set_defaults(handler=handler)
    actions.add_parser("list", help="your recent batch query jobs").set_defaults(handler=cmd_list)
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", help="print JSON (the job, or its results)")
        action.add_argument("--out", type=Path, help="write the results here (CSV, or JSON with --json)")
        action.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from app.client import Filters

    filters = Filters(args.region, args.category, args.max_moq, args.min_price, args.max_price)
    with client_for(args) as lens:
        job = lens.submit_query_job(args.photos, args.top_k, args.include_weak, filters)
        if not args.wait:
            _show(job, args.json)
            return 0
        return _watch(lens, job, args)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        _show(lens.query_job(args.job_id), args.json)
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        return _watch(lens, lens.query_job(args.job_id), args)


def cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        _write_results(lens, args.job_id, args)
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        _show(lens.cancel_query_job(args.job_id), args.json)
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        jobs = lens.query_jobs()
    for job in jobs:
        print(job.model_dump_json() if args.json else _line(job))
    return 0


def _watch(lens: "SourceLens", job: QueryJobRead, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: each poll updates the bar
    with tqdm(total=job.total, unit="photo", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:

        def progress(report: QueryJobRead) -> None:
            bar.update(report.done - bar.n)
            bar.set_postfix(failed=report.failed)

        final = lens.wait_for_query_job(job.id, progress=progress, poll_s=args.poll)
    print(_line(final), file=sys.stderr)
    _write_results(lens, final.id, args)
    return 0 if final.state == "done" else 1


def _write_results(lens: "SourceLens", job_id: str, args: argparse.Namespace) -> None:
    if args.json:
        text = "[" + ",\n".join(item.model_dump_json() for item in lens.query_results(job_id)) + "]\n"
    else:
        text = lens.query_results_csv(job_id)
    if args.out:
        args.out.write_text(text)
        print(f"results written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _show(job: QueryJobRead, as_json: bool) -> None:
    print(job.model_dump_json(indent=2) if as_json else _line(job))


def _line(job: QueryJobRead) -> str:
    return f"query job {job.id}: {job.state}, {job.done} of {job.total} photos, {job.failed} failed ({job.source})"
