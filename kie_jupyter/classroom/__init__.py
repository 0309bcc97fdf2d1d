"""The class proxy: one teacher's KIE key shared with a class, safely.

``kie4o class serve`` runs :func:`.app.build_app` on uvicorn. Students send their own token (or a
JupyterHub token) instead of the key; the proxy checks it, keeps each student within an image
quota and optional KIE credit budgets, and the class within the account's rate limit (served
round-robin), and forwards only the endpoints the extension uses, with the teacher's key, which
never leaves the proxy.

Needs the optional extra ``kie-jupyter[class]`` (Starlette, uvicorn, httpx). Modules:
``tokens`` (minting and checking tokens), ``ledger`` (SQLite: students, tasks, settings) with
``schema`` (its tables and their migration) and ``rows`` (its rows as values), ``budget`` (the
class's rules: credit budgets, models, reset period), ``endpoints`` (what is forwarded and how
a task is counted), ``costs`` (a submit body priced in credits), ``admit`` (whether a submit may
go, and what it is charged), ``fairshare`` (round-robin rate gate), ``guard`` (slowing and
locking out bad tokens), ``hub`` (JupyterHub identities), ``forward`` (the forwarding routes),
``teacher`` (the teacher page), ``app`` (assembly) and ``cli`` (``kie4o class …``).
"""
