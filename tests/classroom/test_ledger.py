"""The ledger and tokens: hashed tokens, atomic quota, settled tasks, a file that survives."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from kie_jupyter.classroom.ledger import Ledger, LedgerError
from kie_jupyter.classroom.tokens import (
    hash_secret,
    mint_student_token,
    parse_student_token,
    same_hash,
    teacher_secret,
)


def test_a_token_is_stored_only_as_its_hash(ledger, tmp_path):
    token = ledger.add_student("Ada Lovelace", 5)
    parsed = parse_student_token(token)
    assert parsed is not None and parsed.secret not in repr(parsed)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("class.db*"))
    assert token.encode() not in raw and parsed.secret.encode() not in raw
    assert same_hash(parsed.secret, ledger.token_hash(parsed.student_id))
    assert not same_hash(parsed.secret + "x", ledger.token_hash(parsed.student_id))
    assert not same_hash(parsed.secret, None)


def test_token_shapes():
    token, digest = mint_student_token("abc")
    assert token.startswith("kc_abc_") and digest == hash_secret(token.split("_", 2)[2])
    assert parse_student_token("kc_abc") is None and parse_student_token("sk-123") is None
    assert teacher_secret("kt_") is None and teacher_secret("kt_x") == "x"


def test_names_are_unique_and_quota_checked(ledger):
    ledger.add_student("ada", 3)
    with pytest.raises(LedgerError, match="already in the class"):
        ledger.add_student("  ada ", 3)
    with pytest.raises(LedgerError, match="quota"):
        ledger.add_student("bob", -1)
    with pytest.raises(LedgerError, match="no student named"):
        ledger.student_named("carol")


def test_quota_is_never_spent_twice_by_requests_at_once(ledger):
    student = parse_student_token(ledger.add_student("ada", 20)).student_id
    results: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        ok = ledger.reserve(student, 1)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=take) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 20
    assert ledger.student(student).used == 20 and ledger.student(student).remaining == 0


def test_a_failed_task_gives_its_images_back_once(ledger):
    student = parse_student_token(ledger.add_student("ada", 4)).student_id
    assert ledger.reserve(student, 4)
    ledger.record_task("t1", student, "/api/v1/gpt4o-image/generate", 4, "a fox")
    assert ledger.task_failed("t1") and not ledger.task_failed("t1")
    assert ledger.student(student).used == 0
    assert ledger.task("t1").state == "failed"


def test_a_task_that_made_more_images_is_charged_the_difference(ledger):
    student = parse_student_token(ledger.add_student("ada", 4)).student_id
    assert ledger.reserve(student, 1)
    ledger.record_task("t1", student, "/api/v1/jobs/createTask", 1, "a fox")
    assert ledger.task_succeeded("t1", ["http://x/1.png", "http://x/2.png"])
    assert not ledger.task_succeeded("t1", ["http://x/1.png"])  # settled once
    assert ledger.student(student).used == 2
    assert ledger.task("t1").urls == ("http://x/1.png", "http://x/2.png")


def test_quota_revoke_and_reissue(ledger):
    old = ledger.add_student("ada", 2)
    sid = parse_student_token(old).student_id
    assert ledger.reserve(sid, 2) and not ledger.reserve(sid, 1)
    assert ledger.add_quota(sid, 3).remaining == 3
    assert ledger.add_quota(sid, -100).quota == 2  # never below what was used
    ledger.revoke(sid)
    assert not ledger.reserve(sid, 0 + 1)
    new = ledger.reissue(sid)
    assert new != old and not ledger.student(sid).revoked
    assert not same_hash(parse_student_token(old).secret, ledger.token_hash(sid))
    with pytest.raises(LedgerError):
        ledger.revoke("nobody")


def test_hub_users_are_made_on_first_use(ledger):
    first = ledger.hub_student("ada@hub", 7)
    again = ledger.hub_student("ada@hub", 99)
    assert first.id == again.id and again.quota == 7 and again.hub
    with pytest.raises(LedgerError, match="hub users"):
        ledger.reissue(first.id)
    # A hub user named like a roster student gets a row of their own.
    roster = parse_student_token(ledger.add_student("bob", 2)).student_id
    hub_bob = ledger.hub_student("bob", 7)
    assert hub_bob.id != roster and hub_bob.name == "bob (hub)"
    assert ledger.hub_student("bob", 7).id == hub_bob.id


def test_the_file_survives_a_restart_in_wal_mode(tmp_path):
    path = tmp_path / "class.db"
    book = Ledger(path)
    sid = parse_student_token(book.add_student("ada", 5)).student_id
    assert book.reserve(sid, 2)
    book.record_task("t1", sid, "/api/v1/gpt4o-image/generate", 2, "a fox")
    book.set_paused(True)
    teacher = book.new_teacher_token()
    book.close()
    again = Ledger(path)
    assert again.student(sid).used == 2 and again.task("t1").state == "running"
    assert again.paused and same_hash(teacher_secret(teacher), again.teacher_hash())
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()
