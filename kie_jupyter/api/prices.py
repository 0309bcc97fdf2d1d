"""What a request costs: KIE's prices per model, an estimate before sending, a cost after.

The table in the package (``prices.json``, beside this module) holds what each registered
model costs in KIE credits by every option that changes the price, and what a credit costs in
USD; each row names the page it was read on and the day. A price nobody could confirm is
``null``: an *unknown* price, never a guess and never 0. A user file in the same format (JSON,
or TOML on Python 3.11+) overrides or extends it without a release: ``%config Kie4o.prices``,
``kie4o --prices FILE`` or ``KIE_PRICES=FILE`` (the class proxy too).

A :class:`Cost` is what one task costs: the credits (None: unknown), whether KIE *reported*
them or they are our *estimate* from the table, whether the task ran in demo mode (nothing
charged) and where the figure comes from. Estimates are always shown with ``≈``.

Rows are matched on our parameters (``model``, ``mode`` text/edit, ``size``, ``resolution``,
``quality``); a row's ``when`` lists the values it covers, ``null`` meaning "not given"
(where KIE's page says what the default is). The row with the most conditions wins; between
equals, the later one (a user file's rows come after the package's).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .errors import KieUsageError

__all__ = ["Cost", "PriceRow", "PriceTable", "load_prices", "package_prices", "active_prices",
           "use_prices", "estimate", "format_credits", "format_usd", "usd_of", "MATCHED_OPTIONS"]

#: The parameters a row's ``when`` may name (``fallback``: ``on`` when 4o may fall back to
#: another model).
MATCHED_OPTIONS = ("mode", "size", "resolution", "quality", "fallback")
FORMAT = "kie-jupyter prices 1"
Basis = Literal["estimate", "reported"]


def format_usd(value: float) -> str:
    """``$0.03``, ``$0.025``, ``$1.22``: cents, and a third decimal where it says more."""
    text = f"{value:,.3f}"
    if text.endswith("0"):
        text = text[:-1]
    return f"${text}"


def format_credits(value: float) -> str:
    """``6`` → ``6``, ``6.5`` → ``6.5``, ``1240`` → ``1,240`` (credits as people write them)."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Cost:
    """What one task (or a plan) costs in KIE credits.

    ``value`` is None when the price is unknown. ``basis`` is ``"reported"`` when KIE said
    what the task consumed, else ``"estimate"`` (from the price table). ``demo``: the task
    ran on the demo server, so nothing was charged; the value is what it would have cost.
    ``usd`` is the value at the table's USD rate (None when either is unknown).
    """

    value: float | None
    basis: Basis = "estimate"
    source: str = ""
    demo: bool = False
    usd: float | None = None
    unit: str = "credits"
    #: What was priced, in words (``4o edit``, ``nano-banana-pro resolution 4K``).
    what: str = ""

    @property
    def estimated(self) -> bool:
        return self.basis != "reported"

    @property
    def known(self) -> bool:
        return self.value is not None

    def short(self) -> str:
        """``≈ 6 credits``, ``6 credits`` (reported), ``cost unknown``; demo says so."""
        if self.value is None:
            text = "cost unknown"
        else:
            approx = "≈ " if self.estimated else ""
            text = f"{approx}{format_credits(self.value)} {self.unit}"
        return f"{text} (demo: not charged)" if self.demo else text

    def with_usd(self) -> str:
        """:meth:`short` with the dollars where known: ``≈ 96 credits (≈ $0.48)``."""
        text = self.short()
        if self.usd is None or self.demo:
            return text
        # Dollars are always approximate: KIE states prices in credits.
        return f"{text} (≈ {format_usd(self.usd)})"

    def __str__(self) -> str:
        return self.short()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for history, sidecars and exports."""
        return {"value": self.value, "unit": self.unit, "basis": self.basis,
                "demo": self.demo, "source": self.source, "usd": self.usd}

    @classmethod
    def from_dict(cls, data: Any) -> Cost | None:
        """The cost recorded by :meth:`to_dict` (None when ``data`` is not one)."""
        if not isinstance(data, Mapping):
            return None
        value = data.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            return None
        usd = data.get("usd")
        basis: Basis = "reported" if data.get("basis") == "reported" else "estimate"
        return cls(None if value is None else float(value), basis, str(data.get("source") or ""),
                   bool(data.get("demo")),
                   float(usd) if isinstance(usd, (int, float)) and not isinstance(usd, bool)
                   else None)


@dataclass(frozen=True)
class PriceRow:
    """One price: a model, the option values it covers, credits per image (or per task)."""

    model: str
    credits: float | None
    per: Literal["image", "task"] = "image"
    when: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)
    source: str = ""
    read: str = ""
    note: str = ""
    #: The file the row came from (the package's table, or a user's).
    origin: str = ""
    #: The date of the data itself, where the source is a dated copy (``checkedAt``).
    data_date: str = ""

    @property
    def user(self) -> bool:
        return self.origin != "package"

    def dated(self) -> str:
        """``data of 2026-10-09, read 2026-12-04`` (what is known of the dates)."""
        parts = [f"data of {self.data_date}"] if self.data_date else []
        parts.append(f"read {self.read or 'unknown'}")
        return ", ".join(parts)

    def covers(self, other: PriceRow) -> bool:
        """Whether every request ``other`` matches, this row matches too (same model)."""
        return self.model == other.model and all(
            name in other.when and set(other.when[name]) <= set(values)
            for name, values in self.when.items())

    def matches(self, options: Mapping[str, str | None]) -> bool:
        return all(options.get(name) in values for name, values in self.when.items())

    def condition(self) -> str:
        """``resolution 1K/2K`` (``—`` for a row that covers every request of the model)."""
        parts = []
        for name, values in self.when.items():
            shown = "/".join("default" if v is None else v for v in values)
            parts.append(f"{name} {shown}")
        return ", ".join(parts) or "—"


@dataclass(frozen=True)
class PriceTable:
    """Every price row in use, and what a credit costs in USD."""

    rows: tuple[PriceRow, ...]
    usd_per_credit: float | None = None
    usd_source: str = ""
    usd_read: str = ""
    #: The files the table was read from, in order (the package's first).
    origins: tuple[str, ...] = ()

    def row_for(self, model: str, options: Mapping[str, str | None]) -> PriceRow | None:
        """The row for ``model`` and ``options``: a user file's row before the package's,
        then the most specific (later rows win ties)."""
        best: PriceRow | None = None
        for row in self.rows:
            if row.model == model and row.matches(options):
                if best is None or (row.user, len(row.when)) >= (best.user, len(best.when)):
                    best = row
        return best

    def estimate(self, params: Mapping[str, Any], *, demo: bool = False) -> Cost:
        """The estimated cost of a task with our ``params`` (``Task.params``, a history
        entry's, or a request's ``to_dict()``)."""
        model, options, images = price_inputs(params)
        what = _describe(model, options)
        row = self.row_for(model, options)
        if row is None:
            return Cost(None, source=f"no price for {what} in the table", demo=demo, what=what)
        if row.credits is None:
            why = row.note or "KIE's price is not confirmed"
            return Cost(None, source=f"{why} ({row.source})", demo=demo, what=what)
        value = row.credits * (images if row.per == "image" else 1)
        return Cost(value, "estimate", self._cite(row), demo, self.usd(value), what=what)

    def usd(self, credits: float | None) -> float | None:
        if credits is None or self.usd_per_credit is None:
            return None
        return credits * self.usd_per_credit

    def _cite(self, row: PriceRow) -> str:
        return f"{row.source} ({row.dated()})"

    def merged(self, other: PriceTable) -> PriceTable:
        """This table with ``other``'s rows after (so they win) and its USD rate if it has one."""
        usd = other.usd_per_credit is not None
        return PriceTable(self.rows + other.rows,
                          other.usd_per_credit if usd else self.usd_per_credit,
                          other.usd_source if usd else self.usd_source,
                          other.usd_read if usd else self.usd_read,
                          self.origins + other.origins)

    def lines(self, models: Iterable[str] | None = None) -> list[str]:
        """The table as text lines (``%kie4o prices``), each row with its source and date."""
        wanted = None if models is None else set(models)
        out = []
        for row in self.effective_rows():
            if wanted is not None and row.model not in wanted:
                continue
            price = ("unknown" if row.credits is None
                     else f"{format_credits(row.credits)} credits per {row.per}")
            usd = self.usd(row.credits)
            dollars = f" (≈ {format_usd(usd)})" if usd is not None else ""
            note = f" — {row.note}" if row.note else ""
            out.append(f"{row.model:<18} {row.condition():<26} {price}{dollars}{note}")
            out.append(f"{'':<18} source: {row.source}; {row.dated()}"
                       + (f" [{row.origin}]" if row.user else ""))
        if self.usd_per_credit is None:
            out.append("1 credit = $ unknown")
        else:
            out.append(f"1 credit ≈ ${self.usd_per_credit:g} — {self.usd_source}; read "
                       f"{self.usd_read or 'unknown'}")
        return out

    def effective_rows(self) -> list[PriceRow]:
        """The rows in effect: a later row with the same model and conditions replaces an
        earlier one, and a package row a user's row covers is left out."""
        seen: dict[tuple[str, str], PriceRow] = {}
        for row in self.rows:
            key = (row.model, json.dumps({k: list(v) for k, v in sorted(row.when.items())}))
            seen.pop(key, None)
            seen[key] = row
        users = [r for r in seen.values() if r.user]
        return [r for r in seen.values()
                if r.user or not any(u.covers(r) for u in users)]


def price_inputs(params: Mapping[str, Any]) -> tuple[str, dict[str, str | None], int]:
    """Our model name, the options a price may depend on, and the images asked, from a
    task's parameters."""
    model = str(params.get("model") or "4o")
    files = params.get("files") or params.get("images") or ()
    options: dict[str, str | None] = {"mode": "edit" if files else "text"}
    for name in ("size", "resolution", "quality"):
        value = params.get(name)
        options[name] = None if value in (None, "") else str(value)
    options["fallback"] = "on" if params.get("fallback") is True else None
    variants = params.get("variants")
    images = variants if isinstance(variants, int) and not isinstance(variants, bool) else 1
    return model, options, max(images, 1)


def _describe(model: str, options: Mapping[str, str | None]) -> str:
    given = [("with --fallback" if k == "fallback" else f"{k} {v}")
             for k, v in options.items() if v is not None and k != "mode"]
    mode = "edit" if options.get("mode") == "edit" else ""
    return " ".join([model, *([mode] if mode else []), *given])


# -- reading a table -----------------------------------------------------------------------


def _fail(origin: str, where: str, what: str) -> KieUsageError:
    return KieUsageError(f"prices: {origin}: {where}: {what}")


def _row(raw: Any, n: int, origin: str) -> PriceRow:
    where = f"row {n}"
    if not isinstance(raw, Mapping):
        raise _fail(origin, where, "expected an object")
    model = raw.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail(origin, where, "needs a model name")
    if "credits" not in raw:
        raise _fail(origin, where, "needs credits (a number, or null for unknown)")
    credits = raw["credits"]
    if credits == "unknown":  # TOML has no null
        credits = None
    if credits is not None and (isinstance(credits, bool) or not isinstance(credits, (int, float))
                                or not math.isfinite(credits) or credits < 0):
        raise _fail(origin, where, f"credits {credits!r} is not a number ≥ 0, null or "
                                   '"unknown"')
    per = raw.get("per", "image")
    if per not in ("image", "task"):
        raise _fail(origin, where, f"per {per!r}: use image or task")
    when_raw = raw.get("when") or {}
    if not isinstance(when_raw, Mapping):
        raise _fail(origin, where, "when must be an object of option → values")
    when: dict[str, tuple[str | None, ...]] = {}
    for name, values in when_raw.items():
        if name not in MATCHED_OPTIONS:
            raise _fail(origin, where, f"when: {name!r} is not one of "
                                       f"{', '.join(MATCHED_OPTIONS)}")
        items = values if isinstance(values, list) else [values]
        if not items or any(v is not None and not isinstance(v, str) for v in items):
            raise _fail(origin, where, f"when {name}: expected text values (null or "
                                       '"default": not given)')
        when[name] = tuple(None if v == "default" else v for v in items)
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(origin, where, "needs a source (the page the price was read on)")
    return PriceRow(model.strip(), None if credits is None else float(credits), per, when,
                    source.strip(), str(raw.get("read") or ""), str(raw.get("note") or ""),
                    origin, str(raw.get("data_date") or ""))


def _parse(text: str, origin: str, toml: bool) -> Any:
    if toml:
        if sys.version_info >= (3, 11):
            import tomllib

            try:
                return tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise _fail(origin, "TOML", str(exc)) from None
        raise KieUsageError(f"prices: {origin}: TOML needs Python 3.11; use a JSON file")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _fail(origin, "JSON", str(exc)) from None


def parse_prices(data: Any, origin: str) -> PriceTable:
    """A table from parsed JSON/TOML data (:class:`KieUsageError` naming what is wrong)."""
    if not isinstance(data, Mapping):
        raise _fail(origin, "top level", "expected an object with rows")
    rows_raw = data.get("rows", [])
    if not isinstance(rows_raw, list):
        raise _fail(origin, "rows", "expected a list")
    rows = tuple(_row(r, n, origin) for n, r in enumerate(rows_raw, 1))
    usd_raw = data.get("usd_per_credit")
    usd: float | None = None
    usd_source = usd_read = ""
    if usd_raw is not None:
        if not isinstance(usd_raw, Mapping):
            raise _fail(origin, "usd_per_credit", "expected {value, source, read}")
        value = usd_raw.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise _fail(origin, "usd_per_credit", f"value {value!r} is not a number > 0")
        source = usd_raw.get("source")
        if not isinstance(source, str) or not source.strip():
            raise _fail(origin, "usd_per_credit", "needs a source")
        usd = None if value is None else float(value)
        usd_source, usd_read = source.strip(), str(usd_raw.get("read") or "")
    if not rows and usd_raw is None:
        raise _fail(origin, "rows", "no rows and no usd_per_credit: nothing to use")
    return PriceTable(rows, usd, usd_source, usd_read, (origin,))


def load_prices(path: str | os.PathLike[str]) -> PriceTable:
    """The rows of a user's price file (JSON, or TOML by its ``.toml`` suffix)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise KieUsageError(f"prices: cannot read {file} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise KieUsageError(f"prices: {file} is not UTF-8 text") from None
    return parse_prices(_parse(text, str(file), file.suffix.lower() == ".toml"), str(file))


_package: PriceTable | None = None


def package_prices() -> PriceTable:
    """The table shipped in the package."""
    global _package
    if _package is None:
        text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
        _package = parse_prices(json.loads(text), "package")
    return _package


_lock = threading.Lock()
_override: tuple[str, PriceTable] | None = None


def use_prices(path: str | os.PathLike[str] | None) -> PriceTable:
    """Use the package's table extended by the file at ``path`` (None: the package's alone)
    in this process; a bad file is one :class:`KieUsageError` and changes nothing."""
    global _override
    if path in (None, ""):
        with _lock:
            _override = None
        return package_prices()
    table = load_prices(str(path))
    with _lock:
        _override = (str(path), table)
    return package_prices().merged(table)


#: ``KIE_PRICES``'s file as last read: (path, mtime, size) → its table.
_env_table: tuple[tuple[str, float, int], PriceTable] | None = None


def _env_prices(path: str) -> PriceTable:
    """``KIE_PRICES``'s table, read again only when the file changes; a file that breaks
    after it was read keeps its last good table (a running task must not lose its cost)."""
    global _env_table
    try:
        info = os.stat(Path(path).expanduser())
        stamp = (path, info.st_mtime, info.st_size)
    except OSError:
        stamp = (path, -1.0, -1)
    with _lock:
        cached = _env_table
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        table = load_prices(path)
    except KieUsageError:
        if cached is not None and cached[0][0] == path:
            return cached[1]
        raise
    with _lock:
        _env_table = (stamp, table)
    return table


def active_prices() -> PriceTable:
    """The table in use: the package's, extended by :func:`use_prices`'s file or else by
    ``KIE_PRICES``."""
    with _lock:
        override = _override
    if override is not None:
        return package_prices().merged(override[1])
    env = os.environ.get("KIE_PRICES")
    if env:
        return package_prices().merged(_env_prices(env))
    return package_prices()


def usd_of(credits: float | None) -> float | None:
    """``credits`` in USD at the table in use; None when unknown (or the table unreadable)."""
    try:
        return active_prices().usd(credits)
    except KieUsageError:
        return None


def estimate(params: Mapping[str, Any], *, demo: bool = False) -> Cost:
    """The estimated cost of a task with our ``params``, from :func:`active_prices`."""
    return active_prices().estimate(params, demo=demo)


def total(costs: Sequence[Cost]) -> tuple[float, list[Cost]]:
    """The sum of the known costs, and the unknown ones."""
    return (sum(c.value for c in costs if c.value is not None),
            [c for c in costs if c.value is None])
