"""`sourcelens search`: every option of the search API, on a data directory or on a running service."""

import argparse
import json
from pathlib import Path

from app.api.schemas import SearchRead, SubjectSearchRead
from app.core.config import Settings
from app.core.errors import InvalidInputError


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    search = commands.add_parser(
        "search", help="rank source factories for a product photo (or words, or like a catalogue image)"
    )
    search.add_argument("photos", type=Path, nargs="*", help="the product's photo; several are views of it")
    search.add_argument("--text", help="words describing the product (CLIP models)")
    search.add_argument("--url", action="append", help="a photo by its URL, fetched by the service (--server)")
    search.add_argument(
        "--bbox", action="append", help="per photo, in order: its product's box x0,y0,x1,y1 (pixels or 0..1); '' none"
    )
    search.add_argument("--like", type=int, metavar="IMAGE_ID", help="more like this catalogue image")
    search.add_argument("--region")
    search.add_argument("--category")
    search.add_argument("--max-moq", type=int)
    search.add_argument("--min-price", type=float)
    search.add_argument("--max-price", type=float)
    search.add_argument("--attributes", help="JSON the factory's attributes must match, e.g. '{\"oem\": true}'")
    search.add_argument("--top-k", type=int, help="factories per page (default 10)")
    search.add_argument("--offset", type=int, default=0, help="factories to skip (paging)")
    search.add_argument("--min-score", type=float, help="leave out products scoring below this")
    search.add_argument("--include-weak", action="store_true", help="list candidates without a confident match")
    search.add_argument("--no-verify", action="store_true", help="skip the local-feature check")
    search.add_argument("--no-auto-crop", action="store_true", help="search the photo only, not its crops")
    search.add_argument("--per-subject", action="store_true", help="one photo of several products: answer each")
    search.add_argument("--json", action="store_true", help="print the API's JSON body")
    search.set_defaults(handler=cmd_search)


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    if args.like is not None and (args.photos or args.text):
        raise InvalidInputError("--like searches by a catalogue image: give no photo and no --text with it")
    if not args.photos and not args.text and args.like is None and not args.url:
        raise InvalidInputError("give a photo, --url, --text or --like")
    if args.url and not args.server:
        raise InvalidInputError("--url is fetched by a running service: give --server URL")
    if args.bbox and len(args.bbox) != len(args.photos):
        raise InvalidInputError(f"{len(args.bbox)} --bbox for {len(args.photos)} photos: give one per photo")
    body = _remote(args) if args.server else _local(args, settings)
    if args.json:
        print(body.model_dump_json(indent=2))
    else:
        print_result(body)
    return 0


def _local(args: argparse.Namespace, settings: Settings) -> SearchRead:
    from app.api.mapping import search_read
    from app.api.routes.search import SearchParams
    from app.bootstrap import build_services
    from app.search.options import QueryPhoto

    params = SearchParams(
        top_k=args.top_k,
        offset=args.offset,
        min_score=args.min_score,
        region=args.region,
        category=args.category,
        max_moq=args.max_moq,
        min_price=args.min_price,
        max_price=args.max_price,
        factory_attributes=args.attributes,
        verify=not args.no_verify,
        include_weak=args.include_weak,
    )
    options = params.options(settings.default_top_k, auto_crop=not args.no_auto_crop)
    if args.per_subject and (len(args.photos) != 1 or args.bbox):
        raise InvalidInputError("--per-subject answers for the products of one photo: give one photo, no --bbox")
    boxes = args.bbox or [None] * len(args.photos)
    photos = [QueryPhoto(path.read_bytes(), box or None) for path, box in zip(args.photos, boxes, strict=True)]
    services = build_services(settings)
    try:
        if args.like is not None:
            return search_read(services.search.similar(args.like, options), options.offset)
        if args.per_subject:
            answers = services.search.per_subject(photos[0].data, args.text, options)
            subjects = [SubjectSearchRead(box=box, answer=search_read(found, options.offset)) for box, found in answers]
            return subjects[0].answer.model_copy(update={"subjects": subjects})
        return search_read(services.search.run(photos, args.text, options), options.offset)
    finally:
        services.close()


def _remote(args: argparse.Namespace) -> SearchRead:
    from app.client import Filters, SourceLens

    try:
        attributes = json.loads(args.attributes) if args.attributes else {}
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--attributes is not JSON: {exc}") from None
    filters = Filters(args.region, args.category, args.max_moq, args.min_price, args.max_price, attributes)
    with SourceLens(args.server, key=args.key) as lens:
        if args.like is not None:
            return lens.similar(args.like, filters, args.top_k, args.offset)
        return lens.search(
            *args.photos,
            text=args.text,
            boxes=[box or None for box in args.bbox] if args.bbox else None,
            filters=filters,
            top_k=args.top_k,
            offset=args.offset,
            min_score=args.min_score,
            include_weak=args.include_weak,
            verify=not args.no_verify,
            auto_crop=not args.no_auto_crop,
            per_subject=args.per_subject,
            urls=args.url,
        )


def print_result(body: SearchRead) -> None:
    if body.subjects:
        for number, subject in enumerate(body.subjects, 1):
            box = ", ".join(f"{v:.2f}" for v in subject.box)
            print(f"product {number} of {len(body.subjects)} in the photo (box {box}):")
            print_result(subject.answer)
        return
    if body.message:
        print(body.message)
    for rank, factory in enumerate(body.factories, body.offset + 1):
        print(f"{rank:>2}. {factory.name} [{factory.factory_id}, {factory.region or '-'}]: {factory.match_words}")
        for match in factory.matches[:3]:
            facts = [f"price {match.price}" if match.price is not None else "", f"MOQ {match.moq}" if match.moq else ""]
            facts += [match.category or ""]
            evidence = f"{match.similarity:.0%} similar"
            if match.evidence and match.evidence.inliers:
                evidence += f", {match.evidence.inliers} matching points"
            details = " · ".join(fact for fact in facts if fact)
            print(f"      {match.product_id} {match.title} ({details}): {match.match_words}, {evidence}")
    if body.categories:
        print("likely categories: " + ", ".join(f"{c.category} ({c.confidence:.0%})" for c in body.categories))
    shown = f"{body.offset + 1}-{body.offset + len(body.factories)} of {body.total}" if body.factories else "none"
    print(f"(factories {shown}; {body.took_ms:.0f} ms; thresholds: {body.thresholds})")
