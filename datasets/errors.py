"""The one error type every loader raises for bad input, so callers can catch it and users can fix it."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad dataset input: names the file (and line), says what is wrong and how to fix it."""

    def __init__(self, problem: str, *, path: Path | str | None = None, line: int | None = None,
                 fix: str = "") -> None:
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        message = where + problem + (f" Fix: {fix}" if fix else "")
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.line = line


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a DataError that says how to point at one."""
    if not path.is_dir():
        raise DataError(
            f"{what} directory does not exist.",
            path=path,
            fix="set the run-config key data-dir (or GFMFR_DATA_DIR) to the folder that holds the "
            "dataset; from a checkout, `ln -s ../shared/data data` links the shared copy.",
        )
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a DataError naming the expected layout."""
    if not path.is_file():
        raise DataError(f"missing {what}.", path=path,
                        fix=f"put the {what} at this path (see the dataset layout in the README).")
    return path
