"""CSV downloads (batch results, an ingest job's failed rows) that open safely in a spreadsheet."""

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import PlainTextResponse

# A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection, OWASP): titles,
# photo names and URLs come from other people, so such a cell is written with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_response(columns: list[str], rows: Iterable[Mapping[str, Any]], filename: str) -> PlainTextResponse:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: safe_cell(value) for name, value in row.items()})
    disposition = f'attachment; filename="{filename}"'
    return PlainTextResponse(out.getvalue(), media_type="text/csv", headers={"Content-Disposition": disposition})
