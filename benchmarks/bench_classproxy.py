"""The class proxy under a class: 30 students × 4 tasks through ``kie4o class serve`` (its own
process, as deployed) in front of a MockKieServer (another process).

Three runs. **Overhead**: the rate gate opened wide, every student (a thread) submits its four
tasks and polls each three times, at a student's pace (all start within 1 s; 0.1–0.5 s after
a submit, 0.3–1 s between polls, like the extension's poller); each request through the proxy is
paired with the same request sent straight to the mock with the teacher's key, from the same
thread at the same moment, and the overhead is the difference (p50/p95 over all pairs).
**Burst**: the same with no pause at all (30 requests always in flight): the proxy's queueing
under a load no class makes, reported, not a target. **Fair share**: the account's 20 submits
per 10 s, scaled to 20 per ``--per`` s on both the proxy and the mock; all 120 submits at once;
total time against its floor, each submit's wait, and the fairness check (every student's first
task before anyone's third).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import emit, median, percentile

from kie_jupyter.classroom.ledger import Ledger

TEACHER_KEY = "sk-BENCH-teacher-0123456789abcdef"


@dataclass
class ClassProxyResult:
    students: int
    tasks_each: int
    pairs: int
    overhead_p50_ms: float
    overhead_p95_ms: float
    direct_p50_ms: float
    proxied_p50_ms: float
    burst_overhead_p50_ms: float
    burst_overhead_p95_ms: float
    fair_per: float
    fair_total_s: float
    fair_floor_s: float
    fair_max_wait_s: float
    fair_first_max_rank: int
    fair_third_min_rank: int
    fair_ok: bool
    fair_refused: int


_MOCK = """
import sys
from kie_jupyter.testing import MockKieServer
rate = None if sys.argv[2] == "none" else (20, float(sys.argv[2]))
server = MockKieServer(api_key=sys.argv[1], duration=30.0, rate_limit=rate, credits=1e9).start()
print(server.url, flush=True)
sys.stdin.read()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/", timeout=2)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.05)


@contextmanager
def _class(db: Path, *, rate: int, per: float) -> Iterator[tuple[str, str]]:
    """(proxy URL, mock URL): the mock and ``kie4o class serve``, each in its own process."""
    mock = subprocess.Popen([sys.executable, "-c", _MOCK, TEACHER_KEY,
                             "none" if rate > 1000 else str(per)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = _free_port()
    proxy = None
    try:
        kie_url = mock.stdout.readline().strip()
        env = {**os.environ, "KIE_API_KEY": TEACHER_KEY}
        proxy = subprocess.Popen(
            [sys.executable, "-m", "kie_jupyter.cli", "class", "serve", "--db", str(db),
             "--port", str(port), "--upstream", kie_url, "--upload-upstream", kie_url,
             "--rate", str(rate), "--per", str(per), "--max-wait", str(max(20.0, 10 * per)),
             "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proxy)
        yield url, kie_url
    finally:
        for proc in (proxy, mock):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def _overhead(students: int, tasks: int, *, paced: bool
              ) -> tuple[list[float], list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "class.db")
        tokens = [ledger.add_student(f"s{i:02d}", tasks * 4) for i in range(students)]
        with _class(Path(tmp) / "class.db", rate=100_000, per=10.0) as (proxy_url, kie_url):
            overhead: list[float] = []
            direct_t: list[float] = []
            proxied_t: list[float] = []
            lock = threading.Lock()
            barrier = threading.Barrier(students)

            def student(token: str) -> None:
                rng = random.Random(token)

                def pause(low: float, high: float) -> None:
                    if paced:
                        time.sleep(rng.uniform(low, high))

                via = httpx.Client(base_url=proxy_url, timeout=30,
                                   headers={"Authorization": f"Bearer {token}"})
                direct = httpx.Client(base_url=kie_url, timeout=30,
                                      headers={"Authorization": f"Bearer {TEACHER_KEY}"})
                via.get("/class/me")  # connections open before timing
                direct.get("/api/v1/chat/credit")
                barrier.wait()
                pause(0.0, 1.0)  # a class starts within a second or so, not in one instant
                mine: list[str] = []
                for _ in range(tasks):
                    body = {"prompt": "a fox", "size": "1:1"}
                    t0 = time.perf_counter()
                    a = via.post("/api/v1/gpt4o-image/generate", json=body)
                    t1 = time.perf_counter()
                    direct.post("/api/v1/gpt4o-image/generate", json=body)
                    t2 = time.perf_counter()
                    if a.json().get("code") != 200:
                        raise RuntimeError(f"a submit through the proxy failed: {a.text[:200]}")
                    mine.append(a.json()["data"]["taskId"])
                    pause(0.1, 0.5)
                    with lock:
                        overhead.append((t1 - t0) - (t2 - t1))
                        proxied_t.append(t1 - t0)
                        direct_t.append(t2 - t1)
                for task_id in mine * 3:
                    pause(0.3, 1.0)
                    t0 = time.perf_counter()
                    via.get("/api/v1/gpt4o-image/record-info", params={"taskId": task_id})
                    t1 = time.perf_counter()
                    direct.get("/api/v1/gpt4o-image/record-info", params={"taskId": task_id})
                    t2 = time.perf_counter()
                    with lock:
                        overhead.append((t1 - t0) - (t2 - t1))
                        proxied_t.append(t1 - t0)
                        direct_t.append(t2 - t1)
                via.close()
                direct.close()

            threads = [threading.Thread(target=student, args=(t,)) for t in tokens]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        ledger.close()
    return overhead, direct_t, proxied_t


def _fair(students: int, tasks: int, per: float) -> tuple[float, list[float], list[str], int]:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "class.db")
        tokens = {f"s{i:02d}": ledger.add_student(f"s{i:02d}", tasks) for i in range(students)}
        with _class(Path(tmp) / "class.db", rate=20, per=per) as (proxy_url, _):
            async def everyone() -> list[tuple[int, float]]:
                async with httpx.AsyncClient(base_url=proxy_url, timeout=60,
                                             limits=httpx.Limits(max_connections=500)) as http:
                    async def one(name: str) -> tuple[int, float]:
                        t0 = time.perf_counter()
                        answer = await http.post(
                            "/api/v1/gpt4o-image/generate", json={"prompt": name, "size": "1:1"},
                            headers={"Authorization": f"Bearer {tokens[name]}"})
                        return answer.json()["code"], time.perf_counter() - t0

                    return await asyncio.gather(*(one(n) for n in tokens for _ in range(tasks)))

            t0 = time.perf_counter()
            results = asyncio.run(everyone())
            total = time.perf_counter() - t0
        # The order KIE took the submits in, as the ledger recorded them.
        order = [ledger.student(t.student_id).name for t in ledger.all_tasks()]
        ledger.close()
    refused = sum(1 for code, _ in results if code != 200)
    return total, [w for _, w in results], order, refused


def measure(students: int, tasks: int, per: float) -> ClassProxyResult:
    overhead, direct_t, proxied_t = _overhead(students, tasks, paced=True)
    burst, _, _ = _overhead(students, tasks, paced=False)
    total, waits, order, refused = _fair(students, tasks, per)
    names = sorted(set(order))
    firsts = [order.index(n) for n in names]
    thirds = [[i for i, p in enumerate(order) if p == n][2] for n in names
              if order.count(n) >= 3]
    ms = [x * 1000 for x in overhead]
    return ClassProxyResult(
        students=students, tasks_each=tasks, pairs=len(ms),
        overhead_p50_ms=median(ms), overhead_p95_ms=percentile(ms, 95),
        direct_p50_ms=median([x * 1000 for x in direct_t]),
        proxied_p50_ms=median([x * 1000 for x in proxied_t]),
        burst_overhead_p50_ms=median([x * 1000 for x in burst]),
        burst_overhead_p95_ms=percentile([x * 1000 for x in burst], 95),
        fair_per=per, fair_total_s=total,
        fair_floor_s=(students * tasks / 20 - 1) * per, fair_max_wait_s=max(waits),
        fair_first_max_rank=max(firsts), fair_third_min_rank=min(thirds) if thirds else -1,
        fair_ok=bool(thirds) and max(firsts) < min(thirds), fair_refused=refused)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--per", type=float, default=1.0,
                        help="the rate window in seconds (KIE's is 10; scaled to stay short)")
    parser.add_argument("--json", action="store_true", help="end with a machine-readable line")
    args = parser.parse_args(argv)
    r = measure(args.students, args.tasks, args.per)
    print(f"overhead p50 {r.overhead_p50_ms:.2f} ms, p95 {r.overhead_p95_ms:.2f} ms over "
          f"{r.pairs} paired requests (direct p50 {r.direct_p50_ms:.2f} ms, proxied "
          f"{r.proxied_p50_ms:.2f} ms); burst with no pause: p50 {r.burst_overhead_p50_ms:.1f} "
          f"ms, p95 {r.burst_overhead_p95_ms:.1f} ms")
    print(f"fair share: {r.students}×{r.tasks_each} submits in {r.fair_total_s:.2f} s "
          f"(floor {r.fair_floor_s:.2f} s at 20 per {r.fair_per:g} s), max wait "
          f"{r.fair_max_wait_s:.2f} s, firsts by rank {r.fair_first_max_rank}, thirds from "
          f"{r.fair_third_min_rank}: {'fair' if r.fair_ok else 'NOT fair'}; "
          f"{r.fair_refused} refused")
    if args.json:
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
