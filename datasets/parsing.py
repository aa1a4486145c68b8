"""Line-oriented parsing with errors that name the file, the line and the fix."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from datasets.errors import DataError, require_file


def read_rows(path: Path, sep: str, n_fields: int, what: str, encoding: str = "utf-8",
              header: tuple[str, ...] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` of a delimited text file, skipping blank lines.

    ``header``: expected column names of a CSV first line (checked, then skipped). Quoted CSV
    fields are honoured when ``sep`` is a comma. A row with too few fields, or bytes that are not
    valid ``encoding``, is a DataError naming the line.
    """
    require_file(path, what)
    lines = decoded_lines(path, encoding)
    rows = csv.reader(lines, delimiter=sep) if sep == "," else (line.split(sep) for line in lines)
    for number, fields in enumerate(rows, start=1):
        if not fields or fields == [""]:
            continue
        if number == 1 and header is not None:
            if [f.strip() for f in fields[:len(header)]] != list(header):
                raise DataError(f"expected the header {','.join(header)}, got {fields!r}.",
                                path=path, line=1, fix="restore the header row.")
            continue
        if len(fields) < n_fields:
            raise DataError(
                f"malformed row: expected {n_fields} fields separated by {sep!r}, got "
                f"{len(fields)}: {sep.join(fields)[:80]!r}.",
                path=path, line=number, fix="repair or delete this row.")
        yield number, fields


def decoded_lines(path: Path, encoding: str) -> list[str]:
    """The file's lines (without line ends), decoded one by one so an error names its line; a
    UTF-8 byte-order mark (spreadsheets write one) is dropped."""
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            lines.append(raw.decode(encoding).removeprefix("\ufeff") if number == 1
                         else raw.decode(encoding))
        except UnicodeDecodeError as error:
            raise DataError(f"bytes that are not valid {encoding} ({error.reason} at column "
                            f"{error.start + 1}).", path=path, line=number,
                            fix=f"save the file as {encoding} or repair this row.") from None
    return lines


def to_int(value: str, path: Path, line: int, column: str) -> int:
    """Parse an integer field or raise a DataError naming the column."""
    try:
        return int(value.strip())
    except ValueError:
        raise DataError(f"column {column!r} must be an integer, got {value!r}.", path=path,
                        line=line, fix="repair or delete this row.") from None


def to_timestamp(value: str, path: Path, line: int) -> int:
    """A timestamp (an integer, possibly written as a float) or a DataError naming the line."""
    number = to_float(value, path, line, "timestamp")
    if not (math.isfinite(number) and abs(number) < 2**62):
        raise DataError(f"column 'timestamp' must be a finite time, got {value!r}.", path=path,
                        line=line, fix="repair or delete this row.")
    return int(number)


def to_float(value: str, path: Path, line: int, column: str) -> float:
    """Parse a number field or raise a DataError naming the column."""
    try:
        return float(value.strip())
    except ValueError:
        raise DataError(f"column {column!r} must be a number, got {value!r}.", path=path,
                        line=line, fix="repair or delete this row.") from None
