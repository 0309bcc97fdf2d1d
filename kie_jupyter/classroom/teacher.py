"""The teacher page: use per student (images and KIE credits), spend per model, recent prompts
with thumbnails, quota and credits, tokens, pause; submits left unsure by a stopped proxy; and
the teacher's own actions (from this page and ``kie4o class``), the audit trail.

Server-rendered HTML (no JavaScript), behind the teacher token: the login form trades it for a
session cookie (HttpOnly, SameSite=Strict, Secure over https, kept in memory: a restarted proxy
asks again), and every form carries a CSRF token tied to the session. Wrong teacher tokens are
answered slowly (a :class:`BadTokenGuard` of the page's own). Everything shown is escaped. The
CSVs — use, spend per model, teacher actions — are also available to scripts with
``Authorization: Bearer <teacher token>``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import secrets
import time
from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .bodies import TooLarge, read_capped
from .budget import ClassPolicy, shown
from .guard import BadTokenGuard
from .ledger import Ledger, LedgerError, ModelSpend, Student, TaskRow
from .tokens import same_hash, teacher_secret

__all__ = ["TeacherPage"]

_COOKIE = "kie_class_teacher"
_MAX_FORM = 16 * 1024
_SESSION_SECONDS = 12 * 3600
#: Teacher actions shown on the page (all of them are in the CSV).
_ACTIONS_SHOWN = 50
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src http: https: data:; "
                               "style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}img{width:48px;height:48px;object-fit:cover;margin-right:4px}
form{display:inline}.revoked{color:#999}.note{background:#fff6d5;padding:.6rem;margin:1rem 0}
.prompt{font-size:12px;color:#555;max-width:28rem}
#models{width:auto;margin:1rem 0}td.n{text-align:right}#actions,#unsure{font-size:13px}
.when{color:#666}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


class TeacherPage:
    """The ``/teacher`` routes over a :class:`Ledger`; ``guard`` paces wrong teacher tokens
    (default: 2 a second, at most 16 waiting)."""

    def __init__(self, ledger: Ledger, *, guard: BadTokenGuard | None = None) -> None:
        self.ledger = ledger
        self.guard = guard or BadTokenGuard(rate=2.0, max_waiting=16)
        self._sessions: dict[str, float] = {}
        self._notes: dict[str, str] = {}  # the result of a session's last action, shown once
        self._secret = secrets.token_bytes(32)

    # -- sessions ---------------------------------------------------------------------------

    def _token_ok(self, token: str) -> bool:
        secret = teacher_secret(token.strip())
        return secret is not None and same_hash(secret, self.ledger.teacher_hash())

    def _session(self, request: Request) -> str | None:
        session = request.cookies.get(_COOKIE)
        if session and self._sessions.get(session, 0) > time.time():
            return session
        return None

    def _csrf(self, session: str) -> str:
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    async def _form(self, request: Request) -> dict[str, str]:
        """The urlencoded form; :class:`TooLarge` past 16 KB (read no further)."""
        body = (await read_capped(request, _MAX_FORM)).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body).items()}

    async def _checked_form(self, request: Request) -> dict[str, str] | Response:
        session = self._session(request)
        if session is None:
            return RedirectResponse(self._url(request, ""), status_code=303)
        try:
            form = await self._form(request)
        except TooLarge:
            return _page("Refused", "<p>That form is too large.</p>", 413)
        if not hmac.compare_digest(form.get("csrf", ""), self._csrf(session)):
            return _page("Refused", "<p>This form is stale; reload the teacher page.</p>", 403)
        return form

    @staticmethod
    def _url(request: Request, tail: str) -> str:
        return f"{request.scope.get('root_path', '')}/teacher{tail}"

    # -- routes -----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                form = await self._form(request)
            except TooLarge:
                return self._login_form(request, "That form is too large.", 413)
            if self._token_ok(form.get("token", "")):
                session = secrets.token_urlsafe(32)
                self._sessions = {s: t for s, t in self._sessions.items() if t > time.time()}
                self._sessions[session] = time.time() + _SESSION_SECONDS
                self.ledger.note("page", "sign-in")
                answer = RedirectResponse(self._url(request, ""), status_code=303)
                answer.set_cookie(_COOKIE, session, max_age=_SESSION_SECONDS, httponly=True,
                                  samesite="strict", secure=_https(request),
                                  path=self._url(request, ""))
                return answer
            if not await self.guard.refused():
                return self._login_form(request, _TOO_MANY, 429)
            return self._login_form(request, "That is not the teacher token.", 401)
        return self._login_form(request, "", 200)

    def _login_form(self, request: Request, error: str, status: int) -> Response:
        note = f"<p class=note>{escape(error)}</p>" if error else ""
        return _page("Class — teacher sign-in", f"""<h1>Class proxy — teacher</h1>{note}
<form method=post action="{escape(self._url(request, '/login'))}">
<label>Teacher token <input type=password name=token autocomplete=off autofocus></label>
<button type=submit>Sign in</button></form>""", status)

    def _done(self, request: Request, note: str) -> Response:
        """After an action: remember its result for the session and send the browser back to
        the page (a reload then does not repeat the action)."""
        session = self._session(request)
        if session is not None:
            self._notes[session] = note
        return RedirectResponse(self._url(request, ""), status_code=303)

    async def dashboard(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_form(request, "", 200)
        note = self._notes.pop(session, "")
        csrf = escape(self._csrf(session))
        students = self.ledger.students()
        counts = self.ledger.task_counts()
        paused = self.ledger.paused
        policy = self.ledger.policy()
        rows = "".join(self._row(request, s, counts.get(s.id, 0), csrf, policy)
                       for s in students)
        used = sum(s.used for s in students)
        quota = sum(s.quota for s in students)
        state = "paused — no new tasks" if paused else "running"
        toggle = "Resume the class" if paused else "Pause the class"
        notice = f"<div class=note>{note}</div>" if note else ""
        return _page("Class — teacher", f"""<h1>Class proxy — teacher</h1>{notice}
<p id=summary>{len(students)} students · {used} of {quota} images used ·
{self._class_credits(policy)} · class <strong id=state>{state}</strong></p>
<form method=post action="{escape(self._url(request, '/pause'))}">
<input type=hidden name=csrf value="{csrf}"><input type=hidden name=paused
value="{'0' if paused else '1'}"><button id=pause type=submit>{toggle}</button></form>
<a href="{escape(self._url(request, '/use.csv'))}" download>Download use (CSV)</a> ·
<a href="{escape(self._url(request, '/spend.csv'))}" download>spend per model (CSV)</a> ·
<a href="{escape(self._url(request, '/actions.csv'))}" download>teacher actions (CSV)</a>
<form method=post action="{escape(self._url(request, '/logout'))}">
<input type=hidden name=csrf value="{csrf}"><button type=submit>Sign out</button></form>
<table id=students><thead><tr><th>Student</th><th>Images used / quota</th>
<th>Credits used / budget</th><th>Tasks</th><th>Recent prompts</th><th>Actions</th></tr>
</thead><tbody>{rows}</tbody></table>
{self._unsure_list(students)}{self._models_table(policy)}{self._actions_list(request)}""")

    def _class_credits(self, policy: ClassPolicy) -> str:
        """The class's credits used (of its budget), its reset period and models."""
        used = shown(self.ledger.class_credits_used())
        text = (f"{used} of {shown(policy.class_credits)} class credits used"
                if policy.class_credits is not None else f"{used} credits used")
        if policy.reset:
            text += f" (resets {policy.reset}, UTC)"
        if policy.models is not None:
            text += " · models: " + escape(", ".join(policy.models))
        return f"<span id=credits>{text}</span>"

    def _models_table(self, policy: ClassPolicy) -> str:
        """Spend per model, this period (all time with no reset)."""
        spends = self.ledger.spend_by_model(self.ledger.period() if policy.reset else None)
        if not spends:
            return ""
        when = "this period" if policy.reset else "so far"
        rows = "".join(_spend_row(m) for m in spends)
        return (f"<h2>Spend per model ({when})</h2><table id=models><thead><tr><th>Model</th>"
                "<th>Tasks</th><th>Images</th><th>Credits</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

    def _unsure_list(self, students: list[Student]) -> str:
        """Submits sent to KIE when the proxy stopped (or whose answer was lost): KIE may have
        made them, so their images and credits stay charged; the teacher may give them back."""
        unsure = self.ledger.pending("unsure")
        if not unsure:
            return ""
        names = {s.id: s.name for s in students}
        items = "".join(
            f"<li><span class=who>{escape(names.get(p.student_id, p.student_id))}</span> · "
            f"{p.images} image{'s' if p.images != 1 else ''}"
            + (f" · {shown(p.credits)} credits" if p.credits is not None else "")
            + f" · sent <span class=when>{escape(_when(p.sent or p.created))}</span></li>"
            for p in unsure)
        return ("<h2>Unsure (sent when the proxy stopped; kept charged)</h2><p>KIE may have "
                "made these tasks, or not: their images stay charged. Give a student's back "
                f"with Add quota if they lost them.</p><ul id=unsure>{items}</ul>")

    def _actions_list(self, request: Request) -> str:
        """The teacher's last actions, newest first: from this page and ``kie4o class``."""
        actions = self.ledger.audit(limit=_ACTIONS_SHOWN)
        csv_link = (f'<a href="{escape(self._url(request, "/actions.csv"))}" download>'
                    "all of them (CSV)</a>")
        if not actions:
            return "<h2>Teacher actions</h2><p id=actions>None yet.</p>"
        # Lists, not tables, here and for unsure submits: the students' table keeps the
        # page's only rows named after a student.
        items = "".join(
            f'<li data-action="{escape(a.action)}"><span class=when>{escape(_when(a.at))}'
            f"</span> · {escape(a.actor)} · <strong>{escape(a.action)}</strong>"
            + (f" · <span class=who>{escape(a.student)}</span>" if a.student else "")
            + (f" · {escape(a.detail)}" if a.detail else "") + "</li>" for a in actions)
        return (f"<h2>Teacher actions</h2><p>The last {_ACTIONS_SHOWN}, newest first, made on "
                f"this page (page) or with <code>kie4o class</code> (cli); {csv_link}.</p>"
                f"<ul id=actions>{items}</ul>")

    def _row(self, request: Request, s: Student, tasks: int, csrf: str,
             policy: ClassPolicy) -> str:
        recent = "".join(_recent(t) for t in self.ledger.tasks_of(s.id, limit=3))
        who = escape(s.name) + (" <small>(hub)</small>" if s.hub else "")
        sid = escape(s.id)
        hidden = f'<input type=hidden name=csrf value="{csrf}">' \
                 f'<input type=hidden name=student value="{sid}">'
        actions = f"""<form method=post action="{escape(self._url(request, '/quota'))}">
{hidden}<input type=number name=images value=10 min=-1000 max=10000 style="width:5em"
aria-label="images to add for {escape(s.name)}"><button type=submit>Add quota</button></form>
<form method=post action="{escape(self._url(request, '/credits'))}">{hidden}<input type=number
name=credits value=50 min=-1000000 max=1000000 step=any style="width:6em"
aria-label="credits to add for {escape(s.name)}"><button type=submit>Add credits</button>
</form>"""
        if not s.revoked:
            actions += f""" <form method=post action="{escape(self._url(request, '/revoke'))}">
{hidden}<button type=submit>Revoke</button></form>"""
        else:
            actions += f""" <form method=post action="{escape(self._url(request, '/restore'))}">
{hidden}<button type=submit>Restore</button></form>"""
        if not s.hub:
            actions += f""" <form method=post action="{escape(self._url(request, '/reissue'))}">
{hidden}<button type=submit>Re-issue token</button></form>"""
        status = " <small>(revoked)</small>" if s.revoked else ""
        if s.expires:
            status += f" <small>(until {escape(s.expires)})</small>"
        budget = s.budget(policy)
        credits = f"{shown(s.credits_used)} / {shown(budget) if budget is not None else '—'}"
        css = ' class="revoked"' if s.revoked else ""
        return (f'<tr data-student="{escape(s.name)}"{css}><td>{who}{status}</td>'
                f'<td class=use>{s.used} / {s.quota}</td><td class=credits>{credits}</td>'
                f'<td>{tasks}</td>'
                f'<td>{recent}</td><td>{actions}</td></tr>')

    async def quota(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            images = int(form.get("images", ""))
            if abs(images) > 100_000:
                raise ValueError(f"{images} is more than 100000 images at once")
            student = self.ledger.add_quota(form.get("student", ""), images)
        except (ValueError, LedgerError) as exc:
            return self._done(request, escape(f"Not changed: {exc}"))
        self.ledger.note("page", "add-quota", student.name,
                         f"{images:+d} images; quota now {student.quota}")
        return self._done(request, escape(f"{student.name}: quota now {student.quota} images."))

    async def credits(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            amount = float(form.get("credits", ""))
            if not abs(amount) <= 1_000_000:  # NaN too
                raise ValueError(f"{form.get('credits')} is not up to 1000000 credits at once")
            student = self.ledger.add_credits(form.get("student", ""), amount)
        except (ValueError, LedgerError) as exc:
            return self._done(request, escape(f"Not changed: {exc}"))
        budget = student.budget(self.ledger.policy()) or 0.0
        self.ledger.note("page", "credits", student.name,
                         f"{amount:+g} credits; budget now {shown(budget)}")
        return self._done(request, escape(f"{student.name}: credit budget now {shown(budget)} "
                                          f"({shown(student.credits_used)} used)."))

    async def revoke(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            student = self.ledger.student(form.get("student", ""))
            self.ledger.revoke(form.get("student", ""))
        except LedgerError as exc:
            return self._done(request, escape(f"Not changed: {exc}"))
        name = student.name if student else "?"
        self.ledger.note("page", "revoke", name)
        return self._done(request, escape(f"{name}: access revoked."))

    async def restore(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            student = self.ledger.student(form.get("student", ""))
            self.ledger.restore(form.get("student", ""))
        except LedgerError as exc:
            return self._done(request, escape(f"Not changed: {exc}"))
        name = student.name if student else "?"
        self.ledger.note("page", "restore", name)
        return self._done(request, escape(f"{name}: access restored (the same token works "
                                          "again)."))

    async def reissue(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            student = self.ledger.student(form.get("student", ""))
            token = self.ledger.reissue(form.get("student", ""))
        except LedgerError as exc:
            return self._done(request, escape(f"Not changed: {exc}"))
        name = student.name if student else "?"
        self.ledger.note("page", "reissue", name, "a new token; the old one stops")
        return self._done(
            request, f"New token for {escape(name)} (shown once; the old one no longer "
                     f"works): <code id=new-token>{escape(token)}</code>")

    async def pause(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        self.ledger.set_paused(form.get("paused") == "1")
        self.ledger.note("page", "pause" if self.ledger.paused else "resume")
        return self._done(request, "The class is paused: new tasks are refused, running ones "
                                   "finish." if self.ledger.paused
                          else "The class is running again.")

    async def logout(self, request: Request) -> Response:
        form = await self._checked_form(request)
        if isinstance(form, Response):
            return form
        self._sessions.pop(request.cookies.get(_COOKIE, ""), None)
        self._notes.pop(request.cookies.get(_COOKIE, ""), None)
        answer = RedirectResponse(self._url(request, ""), status_code=303)
        answer.delete_cookie(_COOKIE, path=self._url(request, ""), secure=_https(request),
                             httponly=True, samesite="strict")
        return answer

    async def _csv_refused(self, request: Request) -> Response | None:
        """A CSV is for the signed-in teacher, or a script with the teacher token (a wrong one
        is answered slowly, as on the sign-in form)."""
        if self._session(request) is not None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            if self._token_ok(token):
                return None
            if not await self.guard.refused():
                return _page("Refused", f"<p>{escape(_TOO_MANY)}</p>", 429)
        return _page("Refused", "<p>Sign in as the teacher first.</p>", 401)

    async def use_csv(self, request: Request) -> Response:
        refused = await self._csv_refused(request)
        if refused is not None:
            return refused
        counts = self.ledger.task_counts()
        overall = self.ledger.credits_overall()
        out = io.StringIO()
        writer = csv.writer(out)
        policy = self.ledger.policy()
        writer.writerow(["student", "hub_user", "quota", "used", "remaining", "tasks",
                         "revoked", "credits_budget", "credits_used", "credits_remaining",
                         "expires", "credits_overall"])
        for s in self.ledger.students():
            budget, left = s.budget(policy), s.credits_left(policy)
            writer.writerow([_cell(s.name), int(s.hub), s.quota, s.used, s.remaining,
                             counts.get(s.id, 0), int(s.revoked), _number(budget),
                             _number(s.credits_used), _number(left), s.expires or "",
                             _number(overall.get(s.id, 0.0))])
        return _csv(out.getvalue(), "class-use.csv")

    async def spend_csv(self, request: Request) -> Response:
        """Spend per model, this period and overall: model, tasks, images, credits, whether
        part is an estimate, and how many tasks have no known price."""
        refused = await self._csv_refused(request)
        if refused is not None:
            return refused
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["period", "model", "tasks", "images", "credits", "estimated",
                         "unknown_price_tasks"])
        for label, period in (("this period", self.ledger.period()), ("overall", None)):
            for m in self.ledger.spend_by_model(period):
                writer.writerow([label, _cell(m.model), m.tasks, m.images,
                                 _number(m.credits), int(m.estimated), m.unknown])
        return _csv(out.getvalue(), "class-spend.csv")

    async def actions_csv(self, request: Request) -> Response:
        """Every teacher action, newest first: when (UTC), from (page or cli), action,
        student, details. Never a token."""
        refused = await self._csv_refused(request)
        if refused is not None:
            return refused
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["at_utc", "from", "action", "student", "detail"])
        for a in self.ledger.audit():
            writer.writerow([_when(a.at), a.actor, a.action, _cell(a.student), _cell(a.detail)])
        return _csv(out.getvalue(), "class-teacher-actions.csv")


_TOO_MANY = "Too many wrong teacher tokens at once: wait a moment, then try again."


def _https(request: Request) -> bool:
    """Whether the browser came over https: this request's scheme, or the first
    ``X-Forwarded-Proto`` (a hub's proxy). The header can only add ``Secure`` to the teacher's
    own cookie, so trusting it is harmless."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _csv(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', **_HEADERS})


def _recent(task: TaskRow) -> str:
    thumb = ""
    if task.urls and task.urls[0].lower().startswith(("http://", "https://")):
        thumb = f'<img src="{escape(task.urls[0])}" alt="" loading=lazy>'
    prompt = task.prompt if len(task.prompt) <= 80 else task.prompt[:79] + "…"
    state = "" if task.state == "success" else f" <small>({escape(task.state)})</small>"
    return f"<div class=prompt>{thumb}{escape(prompt)}{state}</div>"


def _spend_row(spend: ModelSpend) -> str:
    approx = "≈ " if spend.estimated else ""
    unknown = f" + {spend.unknown} unknown" if spend.unknown else ""
    return (f'<tr data-model="{escape(spend.model)}"><td>{escape(spend.model)}</td>'
            f"<td class=n>{spend.tasks}</td><td class=n>{spend.images}</td>"
            f"<td class=n>{approx}{shown(spend.credits)}{unknown}</td></tr>")


def _number(value: float | None) -> str:
    """A CSV number: ``6.5``, ``200`` (no thousands separator); empty for none."""
    if value is None:
        return ""
    return f"{round(value, 2):.2f}".rstrip("0").rstrip(".")


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
