"""``%kie4o class URL`` against the real class proxy (uvicorn, before the fake KIE server),
through a real IPython shell: join, make images, run out of quota, see why, leave."""

from __future__ import annotations

import getpass

import pytest
from IPython.core.error import UsageError

from kie_jupyter.classroom.hub import HubIdentity

from class_helpers import TEACHER_KEY
from magic_helpers import all_text, run, server, shell  # noqa: F401 - fixtures


def test_a_student_joins_makes_images_runs_out_and_leaves(shell, proxy, ledger, monkeypatch):
    token = ledger.add_student("ada", 2)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": token)
    joined = run(shell, f"%kie4o class {proxy.url}")
    text = all_text(joined)
    assert "ada" in text and "2 of 2" in text, text
    assert token not in text and TEACHER_KEY not in text
    made = run(shell, "%%kie4o -n 2 -o fox\nA fox in the snow")
    assert len(shell.user_ns["fox"].images) == 2, all_text(made)
    assert ledger.student_named("ada").used == 2
    refused = run(shell, "%%kie4o -o cat\nA cat")
    assert "class quota used: 2 of 2 images — ask your teacher" in all_text(refused)
    credits = all_text(run(shell, "%kie4o credits"))
    assert "0" in credits and "image" in credits, credits
    assert proxy.url in all_text(run(shell, "%kie4o config"))
    run(shell, "%kie4o class off")
    assert proxy.url not in all_text(run(shell, "%kie4o config"))
    assert ledger.student_named("ada").used == 2


def test_a_revoked_token_cannot_join(shell, proxy, ledger, monkeypatch):
    token = ledger.add_student("ada", 2)
    ledger.revoke(ledger.student_named("ada").id)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": token)
    with pytest.raises(UsageError, match="revoked — ask your teacher"):
        shell.run_line_magic("kie4o", f"class {proxy.url}")


def test_on_a_hub_the_student_is_asked_nothing(shell, make_proxy, ledger, hub, monkeypatch):
    proxy = make_proxy(hub=HubIdentity(hub.api_url), default_quota=3,
                       prefix="/services/kie-class")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-ada")
    # The proxy is a service on the hub's own address, as the hub's proxy routes it.
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", proxy.url.split("/services/")[0] + "/")

    def no_prompt(prompt: str = "") -> str:
        raise AssertionError("asked for a token on a hub")

    monkeypatch.setattr(getpass, "getpass", no_prompt)
    assert "ada" in all_text(run(shell, f"%kie4o class {proxy.url}"))
    run(shell, "%%kie4o -o fox\nA fox")
    assert shell.user_ns["fox"].status.value == "success"
    assert ledger.student_named("ada").hub and ledger.student_named("ada").used == 1
