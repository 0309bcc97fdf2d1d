"""One history, many OS processes: kernels and ``kie4o --batch`` at once, a writer killed with
SIGKILL mid-write, and the old JSON-lines history read in by two processes opening it together.

Every writer here is a real process (an ipykernel, the CLI, ``python -c``), never a thread: the
history's promise is about processes sharing ``<KIE_OUTPUT_DIR>/history.sqlite``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kie_jupyter.engine.history import HistoryStore
from kie_jupyter.testing import MockKieServer
from kie_jupyter.testing.notebooks import write_kernelspec

KEY = "test-key"
#: How long the soak of test 1 runs; the issue asks for a minute: ``KIE_SOAK_SECONDS=60``.
SOAK_SECONDS = float(os.environ.get("KIE_SOAK_SECONDS", "20"))
#: Each writer of the soak goes on past the soak time until it has made this many tasks.
MIN_TASKS_PER_WRITER = 30


def _env(server: MockKieServer | None, output: Path) -> dict[str, str]:
    """The test's environment (its temporary HOME included) with our own KIE_* only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(KIE_OUTPUT_DIR=str(output), PYTHONUNBUFFERED="1")
    if server is not None:
        env.update(KIE_API_KEY=KEY, KIE_BASE_URL=server.url, KIE_UPLOAD_URL=server.url)
    return env


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _wait_for(condition, what: str, limit: float = 60.0) -> None:
    """Wait until ``condition()`` holds (a generous limit: only a hang fails)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


# -- 1. two kernels and a batch ------------------------------------------------------------------


def _drive_kernel(kc, n: int, deadline: float, made: list[int], errors: list[str]) -> None:
    """Run ``%%kie4o`` cells in kernel ``n``: rounds of four ``--no-wait`` cells (four tasks
    writing the history at once from one kernel), then a cell that waits for them."""
    def run(code: str) -> bool:
        reply = kc.execute_interactive(code, timeout=180, output_hook=lambda msg: None)
        content = reply["content"]
        if content["status"] != "ok":
            errors.append(f"kernel {n}: {code!r}: {content.get('ename')}: "
                          f"{content.get('evalue')}")
            return False
        return True

    i = 0
    try:
        while time.monotonic() < deadline or made[n] < MIN_TASKS_PER_WRITER:
            names = []
            for _ in range(4):
                names.append(f"k{n}_{i}")
                if not run(f"%%kie4o --no-wait -o {names[-1]}\nkernel {n} prompt {i}"):
                    return
                i += 1
            tasks = ", ".join(names)
            if not run(f"for _t in ({tasks},):\n    _t.wait()\n"
                       f"assert [_t.status.value for _t in ({tasks},)] == ['success'] * 4, "
                       f"[_t.status.value for _t in ({tasks},)]"):
                return
            made[n] = i
    except Exception as exc:  # a hang (TimeoutError) or a dead kernel: reported by the test
        errors.append(f"kernel {n}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_two_kernels_and_a_batch_write_one_history(tmp_path, monkeypatch):
    """Two real kernels running ``%%kie4o`` cells and ``kie4o --batch`` runs, all at once, for
    ``KIE_SOAK_SECONDS`` (20 by default; the issue's figure is a minute:
    ``KIE_SOAK_SECONDS=60 .venv/bin/pytest tests/engine/test_history_processes.py -k kernels``)
    and then until each has made at least ``MIN_TASKS_PER_WRITER`` tasks. Every task the server
    made is in the history exactly once, finished, with its own prompt; the database is sound.
    """
    from jupyter_client.manager import KernelManager

    output = tmp_path / "kie_home"
    monkeypatch.setenv("JUPYTER_PATH", str(write_kernelspec(tmp_path / "jupyter", "kie-soak")))
    with MockKieServer(api_key=KEY, duration=0.2, rate_limit=None, credits=1e9) as server:
        env = _env(server, output)
        managers, clients = [], []
        try:
            for n in range(2):
                cwd = tmp_path / f"kernel{n}"
                cwd.mkdir()
                km = KernelManager(kernel_name="kie-soak")
                km.start_kernel(env=env, cwd=str(cwd))
                managers.append(km)
                kc = km.client()
                kc.start_channels()
                kc.wait_for_ready(timeout=120)
                clients.append(kc)
                reply = kc.execute_interactive("%load_ext kie_jupyter", timeout=120,
                                               output_hook=lambda msg: None)
                assert reply["content"]["status"] == "ok", reply["content"]

            deadline = time.monotonic() + SOAK_SECONDS
            made, errors = [0, 0], []
            drivers = [threading.Thread(target=_drive_kernel, args=(kc, n, deadline, made, errors),
                                        daemon=True) for n, kc in enumerate(clients)]
            for t in drivers:
                t.start()

            batches = 0
            batch_prompts: list[str] = []
            while time.monotonic() < deadline or len(batch_prompts) < MIN_TASKS_PER_WRITER:
                prompts = [f"batch {batches} prompt {i}" for i in range(8)]
                batch = tmp_path / f"batch{batches}.txt"
                batch.write_text("".join(p + "\n" for p in prompts))
                done = subprocess.run(
                    [sys.executable, "-m", "kie_jupyter.cli", "--batch", str(batch),
                     "--concurrency", "4", "--save", str(tmp_path / "batch_images")],
                    env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, done.stderr
                assert "8 done, 0 failed" in done.stdout, done.stdout
                batch_prompts += prompts
                batches += 1
                if errors:
                    break
            for t in drivers:
                t.join(timeout=600)
            assert not any(t.is_alive() for t in drivers), "a kernel driver hung"
            assert not errors, errors
        finally:
            for kc in clients:
                kc.stop_channels()
            for km in managers:
                km.shutdown_kernel(now=True)

        made_by_server = {tid: task["params"]["prompt"] for tid, task in server.tasks.items()}
        generates = server.requests_to("generate")

    # Each writer made many tasks, all of them sent once.
    assert len(generates) == len(made_by_server)
    writers = Counter(p.split(" ")[0] + (p.split(" ")[1] if p.startswith("kernel") else "")
                      for p in made_by_server.values())
    print(f"tasks per writer in {SOAK_SECONDS:g} s and more: {dict(writers)}")
    assert writers["kernel0"] >= MIN_TASKS_PER_WRITER, writers
    assert writers["kernel1"] >= MIN_TASKS_PER_WRITER, writers
    assert writers["batch"] == len(batch_prompts) >= MIN_TASKS_PER_WRITER, writers
    assert sorted(p for p in made_by_server.values() if p.startswith("batch")) \
        == sorted(batch_prompts)

    db = output / "history.sqlite"
    assert _integrity(db) == "ok"
    entries = HistoryStore(output).entries()
    counts = Counter(e.task_id for e in entries)
    assert [tid for tid, c in counts.items() if c > 1] == []
    assert set(counts) == set(made_by_server), (
        f"lost: {sorted(set(made_by_server) - set(counts))[:10]}, "
        f"unknown: {sorted(set(counts) - set(made_by_server))[:10]}")
    wrong = [(e.task_id, e.status, e.prompt) for e in entries
             if e.status != "success" or e.prompt != made_by_server[e.task_id]]
    assert wrong == []


# -- 2. a writer killed mid-write ----------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    from kie_jupyter.engine.history import HistoryStore

    store = HistoryStore(sys.argv[1])
    i = int(sys.argv[2])
    while True:
        store.append({"task_id": f"w{i:09d}", "prompt": f"prompt {i} " + "x" * 2000,
                      "status": "success", "labels": {"n": str(i)}})
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        i += 1
""")


def test_a_writer_killed_mid_write_loses_at_most_that_write(tmp_path):
    """A process appending records as fast as it can is killed (SIGKILL) at a random moment,
    three times: every record whose ``append`` returned is there, at most the one in flight
    beyond it, and the database is sound."""
    output = tmp_path / "kie_home"
    env = _env(None, output)
    rng = random.Random()
    start = 0
    printed_all: set[int] = set()
    allowed_extra: set[int] = set()
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(output), str(start)],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        printed: list[int] = []
        try:
            target = rng.randint(150, 400)
            assert proc.stdout is not None
            while len(printed) < target:
                line = proc.stdout.readline()
                if not line:
                    break
                printed.append(int(line))
            time.sleep(rng.uniform(0, 0.05))  # a random moment of the write going on
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            # Read through the pipe's own buffer (communicate() reads the descriptor and
            # would skip the lines readline() had already buffered).
            rest, err = proc.stdout.read(), proc.stderr.read()
        printed += [int(x) for x in rest.split()]
        assert proc.returncode == -signal.SIGKILL, err
        assert len(printed) >= 150, err  # it did write (and was not dead before the kill)
        assert printed == list(range(start, start + len(printed)))

        assert _integrity(output / "history.sqlite") == "ok"
        last = printed[-1]
        printed_all.update(printed)
        allowed_extra.add(last + 1)
        present = {int(e.task_id[1:]): e for e in HistoryStore(output).entries()}
        missing = sorted(printed_all - set(present))
        assert missing == [], f"appends that returned but are lost: {missing[:10]}"
        extra = set(present) - printed_all
        assert extra <= allowed_extra, sorted(extra)
        for i in printed:
            entry = present[i]
            assert entry.status == "success" and entry.labels == {"n": str(i)}
            assert entry.prompt.startswith(f"prompt {i} ") and len(entry.prompt) > 2000
        start = last + 2  # past the one in flight, whether it was committed or not


# -- 3. the old JSON-lines history, opened by two processes at once -----------------------------

_OPENER = textwrap.dedent("""
    import os, sys, time
    from kie_jupyter.engine.history import HistoryStore

    folder, go, parity = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    while not os.path.exists(go):
        pass
    store = HistoryStore(folder)
    entries = store.entries()
    print(len(entries), sum(e.status == "success" for e in entries), flush=True)
    # Something newer than the old history: a star on every task of this process's half.
    # Were the JSON lines (which say "starred": false) read in again later, it would be lost.
    for e in entries:
        if int(e.task_id[1:]) % 2 == parity:
            store.star(e.task_id)
    print("starred", flush=True)
""")

TASKS = 1000  # two records each: 2,000 lines
ROUNDS = 3


def _old_history() -> bytes:
    """JSON lines of an earlier version: each task submitted, then finished, interleaved."""
    rng = random.Random(7)
    submitted = [{"task_id": f"j{i:05d}", "prompt": f"old prompt {i}", "status": "generating",
                  "created": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
                  "params": {"prompt": f"old prompt {i}", "size": "1:1"}, "starred": False}
                 for i in range(TASKS)]
    finished = [{"task_id": f"j{i:05d}", "status": "success", "starred": False,
                 "created": "2099-01-01T00:00:00+00:00",  # never moves the first one
                 "completed": "2025-01-02T00:00:00+00:00", "urls": [f"https://x/{i}.png"]}
                for i in range(TASKS)]
    lines: list[dict] = []
    running: list[int] = []  # submitted, not finished yet
    for i in range(TASKS):  # each task's end comes after its submission, in a shuffled order
        lines.append(submitted[i])
        running.append(i)
        while running and rng.random() < 0.5:
            lines.append(finished[running.pop(rng.randrange(len(running)))])
    rng.shuffle(running)
    lines += [finished[i] for i in running]
    assert len(lines) == 2 * TASKS
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_the_old_history_is_read_in_once_by_two_processes_opening_it_together(tmp_path):
    """Two processes open a fresh folder holding only ``history.jsonl`` at the same moment, then
    each stars its half of the tasks. Each saw the whole folded history; the database has each
    task once with its folded state and every star (a second import, or a process working on a
    copy of its own, would lose one half of them); the JSON lines are untouched. The race is
    run a few times, in fresh folders."""
    original = _old_history()
    for attempt in range(ROUNDS):
        output = tmp_path / f"kie_home{attempt}"
        output.mkdir()
        jsonl = output / "history.jsonl"
        jsonl.write_bytes(original)
        _open_together(output, tmp_path / f"go{attempt}")

        assert jsonl.read_bytes() == original  # the backup is kept as it was
        db = output / "history.sqlite"
        assert _integrity(db) == "ok"
        conn = sqlite3.connect(db)
        try:
            (read,) = conn.execute("SELECT value FROM meta WHERE key='jsonl_read'").fetchone()
            rows = conn.execute("SELECT task_id, COUNT(*), json_extract(data, '$.starred') "
                                "FROM tasks GROUP BY task_id").fetchall()
        finally:
            conn.close()
        assert int(read) == len(original)
        assert len(rows) == TASKS and all(count == 1 for _, count, _ in rows)
        unstarred = Counter(int(tid[1:]) % 2 for tid, _, starred in rows if not starred)
        assert not unstarred, (f"round {attempt}: the stars of process(es) {sorted(unstarred)} "
                               "are not in the file")

        # A third process (this one) opening it later reads nothing in again: the stars stay.
        entries = HistoryStore(output).entries()
        assert [e.task_id for e in entries if not e.starred] == []
        assert sorted(e.task_id for e in entries) == [f"j{i:05d}" for i in range(TASKS)]
        for e in entries:
            i = int(e.task_id[1:])
            assert (e.status, e.prompt, e.urls) == ("success", f"old prompt {i}",
                                                    [f"https://x/{i}.png"])
            assert e.created.startswith("2025-01-01") and e.completed.startswith("2025-01-02")
        assert jsonl.read_bytes() == original


def _open_together(output: Path, go: Path) -> None:
    env = _env(None, output)
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(output), str(go), str(n)],
                              env=env, cwd=output.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        go.touch()  # both open the history at the same moment
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err, err
        # Each saw the whole history, folded, not a half-imported one.
        assert out.splitlines() == [f"{TASKS} {TASKS}", "starred"], (out, err)
