"""A student in a class with a credit budget, through the extension in a real shell: the
join line and ``%kie4o credits`` say the credits left, the 80 % notice reaches the card, and
the class's one-line refusal reaches the cell with nothing sent."""

from __future__ import annotations

import getpass

import pytest
from IPython.utils.capture import capture_output

from kie_jupyter.classroom.budget import ClassPolicy
from kie_jupyter.testing.shell import TestingShell

from class_helpers import TEACHER_KEY, kie, ledger, make_proxy  # noqa: F401 (fixtures)
from magic_helpers import cell as run


@pytest.fixture()
def shell(monkeypatch, tmp_path):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
    for name in ("KIE_API_KEY", "KIE_BASE_URL", "KIE_UPLOAD_URL", "KIE_DEMO"):
        monkeypatch.delenv(name, raising=False)
    sh = TestingShell.instance()
    sh.config.pop("Kie4o", None)
    with capture_output():
        sh.run_cell("%load_ext kie_jupyter")
    yield sh
    with capture_output():
        sh.run_cell("%kie4o class off")
        sh.run_cell("%unload_ext kie_jupyter")
    sh.user_ns.pop("t", None)


def html_of(cap) -> str:
    return "\n".join(o.data.get("text/html", "") for o in cap.outputs)


def test_a_student_sees_credits_the_notice_and_the_refusal(shell, make_proxy, ledger, kie,
                                                           monkeypatch):
    proxy = make_proxy(policy=ClassPolicy(student_credits=15))
    token = ledger.add_student("ada", 20)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": token)
    joined = run(shell, f"%kie4o class {proxy.url}").stdout
    assert "as ada — 15 of 15 class credits left · 20 of 20 images left" in joined

    first = run(shell, "%%kie4o -n 2 -o t\na fox")  # 12 of 15 credits: 80 %
    task = shell.user_ns["t"]
    assert task.status.value == "success", task.error
    assert task.notice == "you have used 12 of 15 credits"
    assert "you have used 12 of 15 credits" in html_of(first)
    assert "≈ 12 credits" in html_of(first)

    credits = run(shell, "%kie4o credits").stdout
    assert "3 of 15 class credits left · 18 of 20 images left" in credits

    before = len(kie.requests_to("generate"))
    # The class refuses it (≈ 6 credits, 3 left): the card says why, in the class's words,
    # and nothing reached KIE.
    second = run(shell, "%%kie4o -o t\nanother fox")
    refused = shell.user_ns["t"]
    assert refused.status.value == "failed" and refused.task_id is None
    message = str(refused.error)
    assert "3 of 15 left" in message and "\n" not in message
    shown = html_of(second) + second.stdout + second.stderr
    assert "3 of 15 left" in shown, shown
    assert len(kie.requests_to("generate")) == before
    assert token not in joined + credits + message + html_of(first) + shown
    assert TEACHER_KEY not in joined + credits + message + html_of(first) + shown
