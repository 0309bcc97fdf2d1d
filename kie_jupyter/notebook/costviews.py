"""What things cost, as the line magic shows it: ``%kie4o prices``, ``%kie4o spend`` and what
a balance buys (``%kie4o credits``). Static tables; every value is escaped by :class:`Table`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..api.errors import KieUsageError
from ..api.prices import PriceTable, format_credits
from ..engine.history import HistoryEntry
from ..engine.spend import spend_report, spend_text
from .views import Table

__all__ = ["prices_table", "spend_table", "what_it_buys", "parse_since"]


def prices_table(table: PriceTable) -> Table:
    """The price table in use: one row per price, with its source and the date read."""
    header = ["model", "when", "credits", "≈ USD", "source", "read", "note"]
    rows = []
    for row in table.effective_rows():
        usd = table.usd(row.credits)
        rows.append([row.model, row.condition(),
                     "unknown" if row.credits is None
                     else f"{format_credits(row.credits)} per {row.per}",
                     "" if usd is None else f"${usd:.4g}",
                     row.source + ("" if row.origin == "package" else f" [{row.origin}]"),
                     row.read or "unknown", row.note])
    rate = ("1 credit = $ unknown" if table.usd_per_credit is None
            else f"1 credit ≈ ${table.usd_per_credit:g} ({table.usd_source}; read "
                 f"{table.usd_read or 'unknown'})")
    files = ", ".join(o for o in table.origins if o != "package")
    extra = f"; your file: {files}" if files else ""
    return Table(f"kie4o prices — in KIE credits; {rate}{extra}", header, rows)


def parse_since(text: str | None) -> datetime | None:
    """``--since 2026-11-01`` (a date, or a date and time) as an aware datetime."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise KieUsageError(f"--since: {text!r} is not a date (e.g. 2026-11-01)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def spend_table(entries: list[HistoryEntry], *, since: datetime | None, by: str,
                demo: bool) -> Table:
    """What the history spent, by model or day: what KIE reported, else the estimate (≈)."""
    rows, total = spend_report(entries, since=since, by=by, demo=demo)
    what = "demo tasks (not charged)" if demo else "live tasks"
    after = f" since {since.date().isoformat()}" if since else ""
    title = f"kie4o spend — {what}{after}: {spend_text(total)}"
    if not rows:
        return Table(f"kie4o spend — no {what}{after} in this history", [by, "spent"], [])
    body = [[r.key, spend_text(r)] for r in rows]
    return Table(title, [by, "spent (≈: estimated; KIE's figure where it reported one)"],
                 body)


def what_it_buys(balance: float, table: PriceTable, model: str) -> str:
    """``≈ 206 images of 4o at 6 credits each`` for a balance (empty if the price is
    unknown)."""
    cost = table.estimate({"model": model})
    if cost.value is None or cost.value <= 0:
        cost, model = table.estimate({"model": "4o"}), "4o"
    if cost.value is None or cost.value <= 0:
        return ""
    images = int(balance // cost.value)
    return (f"≈ {images:,} image{'s' if images != 1 else ''} of {model} at "
            f"{format_credits(cost.value)} credits each")
