"""``%kie4o pack``: replay packs from the notebook — export chosen tasks, show a pack.

    %kie4o pack export lesson.kiepack --search lighthouse     the tasks and their real images
    %kie4o pack show [lesson.kiepack]                         what a pack (or the loaded one) holds

The pack is written by :func:`kie_jupyter.engine.packs.export_pack` and read by demo mode's
server (:mod:`kie_jupyter.fakeapi.packs`); see ``docs/teaching.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from IPython.core.error import UsageError

from ..api.client import KieClient
from ..engine.history import HistoryEntry, HistoryStore
from ..engine.packs import SUFFIX, export_pack
from ..fakeapi.demo import PACK_ENV, DemoServer
from ..fakeapi.packs import PackError, load_pack
from .views import Table

__all__ = ["export", "show"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class PackHost(Protocol):
    """What ``%kie4o pack`` uses of the ``Kie4o`` magics."""

    @property
    def demo(self) -> DemoServer: ...

    def client(self) -> KieClient: ...

    def history(self) -> HistoryStore: ...


def export(host: PackHost, out_name: str, *, ids: Sequence[str] = (), search: str | None = None,
           starred: bool = False) -> None:
    """Write the chosen tasks of the history into a replay pack; print what was written."""
    out = Path(out_name).expanduser()
    if out.suffix.lower() != SUFFIX:
        raise UsageError(f"%kie4o pack export: {out_name}: give a file name ending in "
                         f"{SUFFIX} (e.g. lesson{SUFFIX})")
    entries = _chosen(host.history(), ids, search, starred)
    client = host.client()
    # Servers on this machine that are still there: the demo server, or a local API.
    local = {u for u in (host.demo.url, client.base_url, client.upload_url) if u}

    def fetch(url: str) -> bytes:
        # A demo task's images live in the demo server that made it: once that is gone, fail
        # at once instead of retrying a refused connection.
        if (urlsplit(url).hostname or "") in _LOOPBACK and not any(
                url.startswith(u + "/") for u in local):
            raise OSError("the demo server that made it has stopped")
        return client.fetch_image(url)

    try:
        report = export_pack(entries, out, fetch=fetch)
    except ValueError as exc:
        raise UsageError(f"%kie4o pack export: {exc}; nothing written") from None
    except OSError as exc:
        raise UsageError(f"%kie4o pack export: cannot write {out_name} "
                         f"({exc.strerror or exc})") from None
    for line in report.missing:
        print(f"kie4o: left out: {line}")
    if report.demo_tasks:
        print(f"kie4o: note: {report.demo_tasks} of these task(s) ran in demo mode, so their "
              "images are synthetic pictures, not real results")
    size = (f"{report.bytes / 1e6:.1f} MB" if report.bytes >= 100_000
            else f"{report.bytes / 1e3:.0f} KB")
    print(f"kie4o: replay pack {out} written: {report.tasks} task(s), {report.images} "
          f"image(s), {size}. In demo mode, `%kie4o demo --pack {out.name}` (or "
          f"{PACK_ENV}={out.name}) shows these images for these prompts.")


def _chosen(history: HistoryStore, ids: Sequence[str], search: str | None,
            starred: bool) -> list[HistoryEntry]:
    """The history entries named by ``ids``, or matching ``search``/``starred``, oldest first."""
    if ids:
        entries = []
        for task_id in ids:
            entry = history.get(task_id)
            if entry is None:
                raise UsageError(f"%kie4o pack export: {task_id!r} is not a task in the "
                                 "history; nothing written")
            entries.append(entry)
        return entries
    found, _ = history.query(search=search, starred=starred, per_page=10**9)
    if not found:
        what = " and ".join(filter(None, [f"matches {search!r}" if search else "",
                                          "is starred" if starred else ""]))
        raise UsageError(f"%kie4o pack export: no task in the history {what or 'yet'}; "
                         "nothing written")
    return list(reversed(found))  # oldest first, as they were made


def show(host: PackHost, file: str | None) -> Table:
    """The recorded prompts of a pack file, or of the pack demo mode serves."""
    if file is None:
        pack = host.demo.pack
        if pack is None:
            raise UsageError("%kie4o pack show: no replay pack is loaded; give a file "
                             f"(`%kie4o pack show lesson{SUFFIX}`)")
    else:
        try:
            pack = load_pack(file)
        except PackError as exc:
            raise UsageError(f"%kie4o pack show: {exc}") from None
    rows = [[" ".join(t.prompt.split()), t.model, t.size, str(len(t.images))]
            for t in pack.tasks]
    title = (f"kie4o replay pack {pack.name}" + (f" ({pack.title})" if pack.title else "")
             + f": {len(pack.tasks)} recorded prompt(s), {pack.image_count} image(s)")
    return Table(title, ["prompt", "model", "size", "images"], rows)


