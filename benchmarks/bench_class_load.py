"""The class proxy under a class's rush (issue 26): N students each ask two images at once.

``kie4o class serve`` runs in its own process, as deployed, in front of a MockKieServer in this
process that refuses (HTTP 429) any generate over 20 per ``--per`` s, as KIE would. Every
student of the roster (quota 2) sends two 1-image 4o submits at the same moment, with the
extension client's sending rules (``kie_jupyter/api/client.py`` ``_send``): after a "place
kept" 429 it sends again after ``Retry-After`` (not a retry); a refused connection is retried
with the client's backoff; a read timeout (30 s) or a dropped connection is never resent (the
task may exist: the student is told so, counted here as *unsure*).

Every student has a client (a kernel) of their own; all join first (``GET /class/me``, which
warms the proxy), then those idle connections close, as the proxy closes them after 5 s: both
submits of a student open a connection of their own, at the same moment as everyone's.

Two runs per class size. **Rush**: the order KIE made the tasks in (a student's first image is
whichever of their two tasks KIE received first; a second image made before the last
student's first is an ordering violation), the time to the last first image against its floor
N ÷ (20/per) s, the most submits KIE saw in any ``per``-second window, KIE's refusals, and the
longest a student waited for a first image. **Restart**: the same class, the proxy killed
(SIGKILL) once 40 % of the tasks are made and started again at once on the same ledger and
port. The submits in flight then are not resent (the client cannot tell one waiting in the
proxy from one sent to KIE), so 20 late students ask their two images the moment the new proxy
is up: the window it restored must hold them back. Then the quota lost (images charged with
neither a task at KIE nor an *unsure* row in the ledger), tasks made twice, and KIE's window
across the restart.

KIE's window (20 submits per 10 s) is scaled to 20 per ``--per`` s on the proxy and the mock;
the proxy's ``--max-wait`` (20 s), the client's 30 s read timeout, the proxy's 1 s Retry-After
and its 15 s kept place are not scaled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import emit

from kie_jupyter.api.retry import RetryPolicy, backoff_delay, parse_retry_after
from kie_jupyter.classroom.ledger import Ledger
from kie_jupyter.testing import MockKieServer

TEACHER_KEY = "sk-BENCH-teacher-0123456789abcdef"
GENERATE = "/api/v1/gpt4o-image/generate"
RATE = 20  # KIE's account limit: submits per window
IMAGES_EACH = 2
KILL_AT = 0.4  # share of the tasks made when the proxy is killed
#: Students who ask their two images the moment the restarted proxy takes connections (the
#: class's submits that were in flight are not resent, so these test the window it restored).
LATE = RATE
FLOOR_SLACK = 0.10  # the last first image within floor + 10 %
#: The extension client's numbers (api/client.py): its timeouts, its retry policy, and how
#: often it follows "place kept" (``_QUEUE_RESENDS``, private there).
READ_TIMEOUT, CONNECT_TIMEOUT = 30.0, 5.0
RETRY = RetryPolicy()
QUEUE_RESENDS = 60
_PROMPT = re.compile(r"^bench s(\d+) image (\d+) send (\d+)$")


@dataclass
class LoadRun:
    """One class through the proxy: the rush, or the rush with a restart."""

    students: int
    restart: bool
    wall_s: float  # start to the last student's last answer
    asked: int  # images asked ((students + late) × 2)
    late: int  # late students (restart: they ask once the new proxy is up)
    made: int  # tasks KIE made
    violations: int  # second images made before the last student's first
    no_first: int  # students KIE made no task for
    last_first_s: float
    floor_s: float
    max_in_window: int  # generate requests at KIE in any `per`-second window
    kie_refused: int  # generate requests KIE refused (429)
    cut_off: int  # generate requests that reached KIE without their body (the kill)
    max_first_wait_s: float  # longest a student waited for their first task id
    first_at_kie_s: float  # start → the first submit at KIE (the proxy reading the rush)
    kept_resends: int  # sends after a "place kept" 429
    refused_resends: int  # sends after a refused connection
    dropped: int  # submits whose answer was lost: not resent (unsure to the student)
    other: int  # submits answered without a task (neither of the above)
    load: float = 0.0  # the machine's 1-minute load average as the run started
    # The restart (zero without one).
    kie_before_kill: int = 0  # generate requests at KIE before the kill
    down_s: float = 0.0  # kill → the new proxy accepting connections
    given_back_at_start: int = 0  # 'waiting' reservations the new proxy gave back
    unsure_at_start: int = 0  # 'sending' ones it marked unsure
    kie_after_restart: int = 0  # and after the restarted proxy was up
    max_in_window_restart: int = 0  # in windows that reach past the kill
    quota_lost: int = 0  # Σ max(0, used − made − unsure images)
    unsure: int = 0  # images in the ledger's unsure rows at the end
    unsure_made: int = 0  # of those, tasks KIE did make (answer lost)
    uncharged: int = 0  # Σ max(0, made − used): tasks nobody was charged for
    made_twice: int = 0  # students with more tasks at KIE than they asked


@dataclass
class ClassLoadResult:
    per: float
    max_wait: float
    kill_at: float = KILL_AT
    runs: list[LoadRun] = field(default_factory=list, metadata={"item": LoadRun})


@dataclass
class _Send:
    """What one of a student's two submits came to, as their client saw it."""

    student: int
    image: int
    outcome: str = ""  # task | unsure | unreachable | code <n>
    answered: float | None = None  # monotonic, when the task id came back
    kept: int = 0
    refused: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proxy:
    """``kie4o class serve`` as a child process, killable and restartable on one port."""

    def __init__(self, db: Path, kie_url: str, per: float, max_wait: float, logs: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--db", str(db),
                     "--port", str(self.port), "--upstream", kie_url, "--upload-upstream",
                     kie_url, "--rate", str(RATE), "--per", str(per), "--max-wait",
                     str(max_wait), "--log-level", "warning"]
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"proxy{self.starts}.log").open("wb")
        env = {**os.environ, "KIE_API_KEY": TEACHER_KEY}
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()

    async def up(self) -> None:
        """Until the proxy accepts connections (uvicorn listens once its startup is done)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if (self.proc is not None and self.proc.poll() is not None) \
                        or time.monotonic() > deadline:
                    raise RuntimeError("the class proxy did not come up:\n"
                                       + self.log(self.starts)[-2000:]) from None
                await asyncio.sleep(0.005)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def log(self, start: int) -> str:
        return (self.logs / f"proxy{start}.log").read_text(errors="replace")


async def _submit(http: httpx.AsyncClient, student: int, image: int,
                  rng: random.Random) -> _Send:
    """One image asked the way the extension's client asks it."""
    send = _Send(student, image)
    attempt = 0
    for tries in range(1, 1000):
        # A tag per send, so that KIE's log says which send made a task.
        prompt = f"bench s{student:03d} image {image} send {tries}"
        try:
            answer = await http.post(GENERATE, json={"prompt": prompt, "size": "1:1",
                                                     "nVariants": 1})
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Never connected, so it cannot have arrived: a retry, with the client's backoff.
            if attempt >= RETRY.max_retries:
                send.outcome = "unreachable"
                return send
            send.refused += 1
            await asyncio.sleep(backoff_delay(attempt, RETRY, None, rng))
            attempt += 1
            continue
        except httpx.TransportError:  # read timeout, dropped answer: the task may exist
            send.outcome = "unsure"
            return send
        try:
            body = answer.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        if body.get("classProxy") is True and body.get("placeKept") is True \
                and send.kept < QUEUE_RESENDS:
            send.kept += 1  # the proxy kept this submit's place: send again as told
            await asyncio.sleep(min(retry_after or 1.0, 5.0))
            continue
        data = body.get("data")
        if body.get("code") == 200 and isinstance(data, dict) and data.get("taskId"):
            send.outcome = "task"
            send.answered = time.monotonic()
            return send
        if (answer.status_code == 429 or body.get("code") == 429) \
                and attempt < RETRY.max_retries \
                and (retry_after is None or retry_after <= RETRY.max_retry_after):
            await asyncio.sleep(backoff_delay(attempt, RETRY, retry_after, rng))
            attempt += 1
            continue
        send.outcome = f"code {body.get('code', answer.status_code)}"
        return send
    raise AssertionError("unreachable: the client gives up long before")


async def _class(proxy: _Proxy, mock: MockKieServer, tokens: list[str], students: int,
                 restart: bool, kill_at: float
                 ) -> tuple[float, float, list[_Send], dict[str, float]]:
    """The first ``students`` ask at once; with ``restart``, the proxy is killed and started
    again once ``kill_at`` of their tasks are made, and the rest of ``tokens`` (late
    students) ask as soon as it is up. (start, end, the sends, the restart's times)."""
    restart_at: dict[str, float] = {}
    late: list[_Send] = []

    async def kill_and_restart(clients: list[httpx.AsyncClient]) -> None:
        made = round(kill_at * students * IMAGES_EACH)
        while len(mock.requests_to("generate")) < made:
            await asyncio.sleep(0.002)
        restart_at["kill"] = time.monotonic()
        proxy.kill()
        proxy.start()  # at once, on the same ledger and port
        await proxy.up()
        restart_at["up"] = time.monotonic()
        late.extend(await asyncio.gather(*(
            _submit(http, s, k, random.Random(s * 10 + k))
            for s, http in enumerate(clients) if s >= students for k in range(IMAGES_EACH))))
        restart_at["late done"] = time.monotonic()

    async with contextlib.AsyncExitStack() as stack:
        # A client per student, as each has their own kernel (one shared pool of 600
        # connections would also cost httpcore O(requests × connections) per event).
        clients = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=proxy.url, headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))) for token in tokens]
        # Everyone joins first, as ``%kie4o class URL`` does (GET /class/me), which warms
        # the proxy; then those connections close, as the proxy closes idle ones after 5 s
        # (uvicorn's keep-alive): both submits of a student open a connection of their own.
        for chunk in range(0, len(clients), 50):
            await asyncio.gather(*(c.get("/class/me") for c in clients[chunk:chunk + 50]))
        for c in clients:
            await c.aclose()
        clients = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=proxy.url, headers=c.headers,
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))) for c in clients]
        killer = asyncio.ensure_future(kill_and_restart(clients)) if restart else None
        start = time.monotonic()
        sends = await asyncio.gather(*(
            _submit(http, s, k, random.Random(s * 10 + k))
            for s, http in enumerate(clients[:students]) for k in range(IMAGES_EACH)))
        end = time.monotonic()
        if killer is not None:
            if "kill" not in restart_at:
                killer.cancel()
                raise RuntimeError(f"the class was done before {kill_at:.0%} of the tasks "
                                   "were made")
            await killer  # every answer may be in before the new proxy is up
            end = max(end, restart_at["late done"])
    return start, end, [*sends, *late], restart_at


def _max_in_window(times: list[float], per: float) -> int:
    """The most arrivals in any half-open ``per``-second window."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - per:
            j += 1
        best = max(best, i - j + 1)
    return best


def _kie_tasks(mock: MockKieServer) -> tuple[dict[int, list[float]], list[float], int]:
    """The tasks KIE made, per student, as the arrival times of the sends that made them;
    every generate's arrival time; and how many came cut off (no JSON body: a proxy killed
    while sending)."""
    requests = mock.requests_to("generate")
    whole = [r for r in requests if isinstance(r.json, dict)]
    arrivals = {r.json["prompt"]: r.time for r in whole}
    made: dict[int, list[float]] = defaultdict(list)
    for task in mock.tasks.values():
        prompt = task["params"]["prompt"]
        match = _PROMPT.match(prompt)
        assert match is not None, prompt
        # The proxy sends the same body again only after KIE's 429 (no task): the send that
        # made the task is the last with its prompt.
        made[int(match.group(1))].append(arrivals[prompt])
    return made, [r.time for r in requests], len(requests) - len(whole)


def _startup_counts(log: str) -> tuple[int, int]:
    """(given back, unsure) from the restarted proxy's warning at start, if it wrote one."""
    match = re.search(r"at start: (\d+) reservation.*?; (\d+) sent with no answer", log)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def measure(students: int, per: float, max_wait: float, restart: bool,
            kill_at: float = KILL_AT) -> LoadRun:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kie-bench-class-") as tmp:
        db = Path(tmp) / "class.db"
        ledger = Ledger(db)
        late = LATE if restart else 0
        names = [f"s{i:03d}" for i in range(students + late)]
        tokens = [t for _, t in ledger.add_students(names, IMAGES_EACH)]
        ids = {s.name: s.id for s in ledger.students()}
        ledger.close()
        with MockKieServer(api_key=TEACHER_KEY, duration=60.0, rate_limit=(RATE, per),
                           credits=1e9) as mock:
            proxy = _Proxy(db, mock.url, per, max_wait, Path(tmp))
            proxy.start()
            try:
                asyncio.run(proxy.up())
                start, end, sends, times = asyncio.run(_class(proxy, mock, tokens, students,
                                                                restart, kill_at))
            finally:
                proxy.stop()
            made, arrivals, cut_off = _kie_tasks(mock)
        ledger = Ledger(db)
        try:
            used = {s.id: s.used for s in ledger.students()}
            unsure_rows = Counter()
            for row in ledger.pending("unsure"):
                unsure_rows[row.student_id] += row.images
            recorded = Counter(t.student_id for t in ledger.all_tasks())
        finally:
            ledger.close()
        given_back, unsure_at_start = _startup_counts(proxy.log(2)) if restart else (0, 0)

    # The order figures are the class's (the late students come after a restart).
    firsts = {s: min(ts) for s, ts in made.items() if s < students}
    last_first = max(firsts.values()) if firsts else float("nan")
    violations = sum(1 for s, ts in made.items() if s < students
                     for t in sorted(ts)[1:] if t < last_first)
    first_answer: dict[int, float] = {}
    for send in sends:
        if send.answered is not None and send.student < students:
            first_answer[send.student] = min(first_answer.get(send.student, send.answered),
                                             send.answered)
    run = LoadRun(
        students=students, restart=restart, wall_s=end - start,
        asked=(students + late) * IMAGES_EACH, late=late,
        made=sum(len(ts) for ts in made.values()), first_at_kie_s=min(arrivals) - start,
        violations=violations, no_first=students - len(firsts),
        last_first_s=last_first - start, floor_s=students / (RATE / per),
        max_in_window=_max_in_window(arrivals, per),
        kie_refused=len(arrivals) - cut_off - sum(len(ts) for ts in made.values()),
        cut_off=cut_off,
        max_first_wait_s=max(first_answer.values()) - start if first_answer else float("nan"),
        kept_resends=sum(s.kept for s in sends), refused_resends=sum(s.refused for s in sends),
        dropped=sum(1 for s in sends if s.outcome == "unsure"),
        other=sum(1 for s in sends if s.outcome not in ("task", "unsure")), load=load)
    if restart:
        for i, name in enumerate(names):
            sid, at_kie = ids[name], len(made.get(i, []))
            run.quota_lost += max(0, used[sid] - at_kie - unsure_rows[sid])
            run.uncharged += max(0, at_kie - used[sid])
            run.unsure_made += min(unsure_rows[sid], max(0, at_kie - recorded[sid]))
            run.made_twice += at_kie > IMAGES_EACH
        run.unsure = sum(unsure_rows.values())
        run.kie_before_kill = sum(1 for t in arrivals if t < times["kill"])
        run.kie_after_restart = sum(1 for t in arrivals if t >= times["up"])
        run.max_in_window_restart = _max_in_window(
            [t for t in arrivals if t > times["kill"] - per], per)
        run.down_s = times["up"] - times["kill"]
        run.given_back_at_start, run.unsure_at_start = given_back, unsure_at_start
    return run


def table(r: ClassLoadResult) -> list[str]:
    """The figures as markdown tables (the rush, then the restarts)."""
    head = ("| Students | Run | Made / asked | First at KIE | Order violations "
            "| Last first image | Floor "
            "| Max per window | KIE 429 | Max wait, first image | Kept resends | Refused "
            "resends | Dropped (unsure) | Other | All answered | Load avg |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for x in r.runs:
        lines.append(
            f"| {x.students} | {'restart' if x.restart else 'rush'} | {x.made} / {x.asked} | "
            f"{x.first_at_kie_s:.2f} s | {x.violations} | {x.last_first_s:.2f} s | "
            f"{x.floor_s:.2f} s | {x.max_in_window} | "
            f"{x.kie_refused} | {x.max_first_wait_s:.2f} s | {x.kept_resends} | "
            f"{x.refused_resends} | {x.dropped} | {x.other} | {x.wall_s:.2f} s | "
            f"{x.load:.1f} |")
    restarts = [x for x in r.runs if x.restart]
    if restarts:
        head = ("| Students | At KIE before kill | Cut off at KIE | Down | Given back at start "
                "| Unsure at start "
                "| Late students | At KIE after restart | Max per window across restart "
                "| Quota lost | Unsure (of which made) | Uncharged | Made twice |")
        lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
        for x in restarts:
            lines.append(
                f"| {x.students} | {x.kie_before_kill} | {x.cut_off} | {x.down_s:.2f} s | "
                f"{x.given_back_at_start} | {x.unsure_at_start} | {x.late} | "
                f"{x.kie_after_restart} | {x.max_in_window_restart} | "
                f"{x.quota_lost} | {x.unsure} ({x.unsure_made}) | {x.uncharged} | "
                f"{x.made_twice} |")
    return lines


def verdicts(r: ClassLoadResult) -> list[tuple[str, bool]]:
    """One line per target and run: (text, met)."""
    out: list[tuple[str, bool]] = []
    for x in r.runs:
        name = f"N={x.students} {'restart' if x.restart else 'rush'}"
        if not x.restart:
            limit = x.floor_s * (1 + FLOOR_SLACK)
            out += [
                (f"{name}: ordering violations {x.violations} (target 0)", x.violations == 0),
                (f"{name}: last first image {x.last_first_s:.2f} s (target ≤ floor "
                 f"{x.floor_s:.2f} s + 10 % = {limit:.2f} s)",
                 x.no_first == 0 and x.last_first_s <= limit),
            ]
        across = (f" ({x.max_in_window_restart} in windows across the restart, "
                  f"{x.kie_after_restart} sent after it)" if x.restart else "")
        out += [
            (f"{name}: max {x.max_in_window} submits at KIE in a {r.per:g} s window{across} "
             f"(target ≤ {RATE})", x.max_in_window <= RATE),
            (f"{name}: {x.kie_refused} refused by KIE (target 0)", x.kie_refused == 0),
        ]
        if x.restart:
            out += [
                (f"{name}: quota lost {x.quota_lost} (target 0; {x.unsure} unsure)",
                 x.quota_lost == 0),
                (f"{name}: tasks made twice {x.made_twice} (target 0)", x.made_twice == 0),
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, action="append",
                        help="class size (repeatable; default: 120 and 300)")
    parser.add_argument("--per", type=float, default=1.0,
                        help="the rate window in seconds (KIE's is 10; scaled to stay short)")
    parser.add_argument("--max-wait", type=float, default=20.0,
                        help="the proxy's --max-wait (its default, 20 s; not scaled)")
    parser.add_argument("--kill-at", type=float, default=KILL_AT,
                        help="share of the tasks made when the proxy is killed (0.4)")
    parser.add_argument("--runs", default="rush,restart",
                        help="which runs per class size: rush, restart or both (default)")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    sizes = args.students or [120, 300]
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or any(r not in ("rush", "restart") for r in runs):
        parser.error("--runs: rush, restart, or rush,restart")
    print(f"KIE's 20 submits per 10 s scaled to {RATE} per {args.per:g} s (×{args.per / 10:g}) "
          f"on the proxy and the mock; not scaled: --max-wait {args.max_wait:g} s, the "
          f"client's {READ_TIMEOUT:g} s read timeout, Retry-After 1 s, a kept place 15 s; "
          f"restart: kill -9 at {args.kill_at:.0%} of the tasks", flush=True)
    began = time.monotonic()
    result = ClassLoadResult(per=args.per, max_wait=args.max_wait, kill_at=args.kill_at)
    for n in sizes:
        for restart in [r == "restart" for r in runs]:
            started = time.monotonic()
            result.runs.append(measure(n, args.per, args.max_wait, restart, args.kill_at))
            print(f"[N={n} {'restart' if restart else 'rush'}: "
                  f"{time.monotonic() - started:.1f} s]", file=sys.stderr, flush=True)
    print("\n".join(table(result)))
    for text, met in verdicts(result):
        print(f"{'met   ' if met else 'MISSED'} {text}")
    print(f"whole run {time.monotonic() - began:.0f} s")
    if args.json:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
