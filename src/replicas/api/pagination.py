"""The one paging rule every list endpoint shares.

    paging: Annotated[Page, paged(default_limit=20)]           # ?page=&limit=
    window: Annotated[Window, windowed(default_limit=50, max_limit=500)]   # ?limit=&offset= (history)

`page`, `limit` and `offset` take any integer on the wire (the contract gives no upper bound for `page` or
`offset`), but only values a database can page through reach a service: SQLite and PostgreSQL take a
signed 64-bit OFFSET, and `(page - 1) * limit` for a page like 322274570748594560 overflows it (a 500,
issue). So a page is 1..MAX_PAGE, a limit 1..the endpoint's maximum and an offset 0..MAX_OFFSET; anything
else is a validation error, which api/errors.py answers 400 in the contract's error body, naming the field.
The bounds are far past any real list (a page beyond the last one is an empty page) and keep every offset
below 2**53, so a JavaScript client reads the echoed numbers exactly.
"""

from dataclasses import dataclass

from fastapi import Depends, Query

MAX_LIMIT = 100
MAX_OFFSET = 10**15
MAX_PAGE = 10**12  # (MAX_PAGE - 1) * 500, the largest limit anywhere, stays below MAX_OFFSET


@dataclass(frozen=True)
class Page:
    """A validated `?page=&limit=`: `(page - 1) * limit` fits any database's OFFSET."""

    page: int
    limit: int

    def total_pages(self, total: int) -> int:
        return total_pages(total, self.limit)


@dataclass(frozen=True)
class Window:
    """A validated `?limit=&offset=` (history: `offset` counts from the end)."""

    limit: int
    offset: int


def total_pages(total: int, limit: int) -> int:
    """Pages needed for `total` items, `limit` a page; 0 for an empty list (and never a division by zero)."""
    return -(-total // limit) if limit > 0 else 0


def paged(default_limit: int, max_limit: int = MAX_LIMIT):
    """A dependency reading `?page=&limit=` with the shared bounds and this endpoint's default limit (async: a
    plain `def` dependency would run in a worker thread on every request)."""

    async def dependency(page: int = Query(1, ge=1, le=MAX_PAGE, description="1-based page number"),
                         limit: int = Query(default_limit, ge=1, le=max_limit, description="Items per page")) -> Page:
        return Page(page, limit)

    return Depends(dependency)


def windowed(default_limit: int, max_limit: int):
    """A dependency reading `?limit=&offset=` with the shared bounds and this endpoint's default limit."""

    async def dependency(limit: int = Query(default_limit, ge=1, le=max_limit, description="Items to return"),
                         offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Items to skip")) -> Window:
        return Window(limit, offset)

    return Depends(dependency)
