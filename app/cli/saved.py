"""`sourcelens saved add|list|matches|delete`: saved searches on a running service (--server URL --key K)."""

import argparse
from pathlib import Path

from app.cli.jobs import client_for
from app.core.config import Settings


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    saved = commands.add_parser("saved", help="saved searches: be told when a matching product is added")
    actions = saved.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="watch for catalogue images added later that match this photo")
    add.add_argument("photo", type=Path)
    add.add_argument("--name", required=True, help="what it is, for you")
    add.add_argument("--webhook", help="POST each new match here as JSON (public http(s) URL)")
    add.set_defaults(handler=cmd_add)
    actions.add_parser("list", help="your saved searches").set_defaults(handler=cmd_list)
    matches = actions.add_parser("matches", help="the matches found since a search was saved")
    matches.add_argument("saved_id", type=int)
    matches.set_defaults(handler=cmd_matches)
    delete = actions.add_parser("delete", help="stop watching")
    delete.add_argument("saved_id", type=int)
    delete.set_defaults(handler=cmd_delete)
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", help="print the API's JSON")


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        saved = lens.save_search(args.photo, args.name, args.webhook)
    print(saved.model_dump_json(indent=2) if args.json else f"saved search {saved.id}: {saved.name}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        for saved in lens.saved_searches():
            line = f"{saved.id:>5}  {saved.matches} matches  {saved.name}"
            print(saved.model_dump_json() if args.json else line)
    return 0


def cmd_matches(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        for match in lens.saved_matches(args.saved_id):
            line = f"{match.found_at:%Y-%m-%d %H:%M}  {match.factory_id}  {match.product_id}  {match.match_level}"
            print(match.model_dump_json() if args.json else line)
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    with client_for(args) as lens:
        lens.delete_saved_search(args.saved_id)
    print(f"saved search {args.saved_id} deleted")
    return 0
