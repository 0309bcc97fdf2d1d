"""What a call costs through the Python API (issue #22 "Know the cost"), with no extension
loaded: ``kie_jupyter.generate`` and ``sweep`` against a mock server.

An unknown price and a call over ``confirm_over_credits`` need ``yes=True``; ``max_credits``
and the session's budget refuse even with it; ``task.cost`` is the table's estimate until KIE
reports what the task consumed; a task KIE failed keeps its estimate (≈) unless KIE reports
a figure; a demo call is never asked."""

from __future__ import annotations

import pytest

import kie_jupyter
from kie_jupyter import KieClient, KieUsageError, TaskStatus, pyapi
from kie_jupyter.api.prices import package_prices, use_prices
from kie_jupyter.engine.plan import Wanted, make_plan
from kie_jupyter.engine.spend import REPORTED_SOURCE
from kie_jupyter.fakeapi import TaskScript
from kie_jupyter.session import Session, active
from kie_jupyter.testing import MockKieServer

KEY = "sk-cost-test-0123456789"
BUDGET = "the session's budget (%config Kie4o.budget)"


@pytest.fixture(autouse=True)
def _own_session(monkeypatch):
    """The package's table, and a fresh session of the Python API's own (its spend and budget
    are per process: a test must not inherit another's)."""
    assert active() is None  # no extension loaded: the API's own session is used
    use_prices(None)
    session = Session()
    monkeypatch.setattr(pyapi, "_own", session)
    yield session
    use_prices(None)


def _serve(monkeypatch, tmp_path, **options):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
    monkeypatch.delenv("KIE_DEMO", raising=False)
    monkeypatch.delenv("KIE_PRICES", raising=False)
    return MockKieServer(api_key=KEY, duration=0.2, rate_limit=None, **options)


@pytest.fixture()
def server(monkeypatch, tmp_path):
    with _serve(monkeypatch, tmp_path) as srv:
        yield srv


@pytest.fixture()
def reporting(monkeypatch, tmp_path):
    """A fake KIE whose Market records report ``creditsConsumed`` (3 per task)."""
    with _serve(monkeypatch, tmp_path, report_credits=True, cost_per_image=3) as srv:
        yield srv


def client_for(srv: MockKieServer) -> KieClient:
    return KieClient(KEY, base_url=srv.url, upload_url=srv.url)


def created(srv: MockKieServer) -> list:
    """Every task-creating request and upload the server saw."""
    return [r for r in srv.requests
            if r.endpoint in ("generate", "createTask", "kontext-generate")
            or r.endpoint.startswith("file-")]


def table(params) -> float:
    value = package_prices().estimate(params).value
    assert value is not None
    return value


# -- asking before paying ----------------------------------------------------------------------


def test_an_unknown_price_raises_naming_the_model_before_anything_is_sent(server):
    with pytest.raises(KieUsageError) as refused:
        kie_jupyter.generate("a fox", model="qwen-image", client=client_for(server))
    message = str(refused.value)
    assert "qwen-image" in message and "unknown" in message
    assert "yes=True" in message and "nothing was sent" in message
    assert server.requests == []


def test_an_unknown_price_runs_with_yes(server):
    task = kie_jupyter.generate("a fox", model="qwen-image", yes=True, client=client_for(server))
    assert task.status is TaskStatus.SUCCESS
    assert len(server.requests_to("createTask")) == 1
    assert task.cost.value is None and not task.cost.known
    assert str(task.cost) == "cost unknown"
    assert "per megapixel" in task.cost.source  # why, in the table's words


def test_an_edit_with_4o_has_no_confirmed_price(server, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "in.png")
    with pytest.raises(KieUsageError, match=r"4o edit.*unknown"):
        kie_jupyter.generate("make it blue", images=tmp_path / "in.png",
                             client=client_for(server))
    assert created(server) == []  # not even the upload
    task = kie_jupyter.generate("make it blue", images=tmp_path / "in.png", yes=True,
                                client=client_for(server))
    assert task.status is TaskStatus.SUCCESS and task.cost.value is None


def test_a_call_over_confirm_over_credits_needs_yes(server):
    with pytest.raises(KieUsageError) as refused:
        kie_jupyter.generate("a fox", variants=4, confirm_over_credits=10,
                             client=client_for(server))
    message = str(refused.value)
    assert "≈ 24 credits" in message and "confirm_over_credits = 10" in message
    assert "yes=True" in message
    assert server.requests == []
    task = kie_jupyter.generate("a fox", variants=4, confirm_over_credits=10, yes=True,
                                client=client_for(server))
    assert task.status is TaskStatus.SUCCESS and task.cost.value == 24


def test_the_default_credit_gate_is_200(server):
    assert pyapi.CONFIRM_OVER_CREDITS == 200
    # 9 tasks of 24 credits, 216 in all; confirm_over is raised so that the credit gate asks.
    with pytest.raises(KieUsageError, match=r"≈ 216 credits.*confirm_over_credits = 200"):
        kie_jupyter.sweep("a {a|b|c} fox", size=["1:1", "3:2", "2:3"], variants=4,
                          confirm_over=20, client=client_for(server))
    assert server.requests == []


def test_max_credits_refuses_even_with_yes(server):
    for yes in (False, True):
        with pytest.raises(KieUsageError) as refused:
            kie_jupyter.generate("a fox", variants=4, max_credits=5, yes=yes,
                                 client=client_for(server))
        message = str(refused.value)
        assert "max-credits 5" in message and "≈ 24 credits" in message
        assert "nothing was sent" in message
    assert server.requests == []
    task = kie_jupyter.generate("a fox", variants=4, max_credits=24, client=client_for(server))
    assert task.status is TaskStatus.SUCCESS  # exactly the limit fits


def test_max_credits_refuses_an_unknown_price_even_with_yes(server):
    with pytest.raises(KieUsageError, match=r"qwen-image is unknown"):
        kie_jupyter.generate("a fox", model="qwen-image", max_credits=100, yes=True,
                             client=client_for(server))
    assert server.requests == []


def test_max_credits_holds_a_whole_sweep(server):
    with pytest.raises(KieUsageError, match=r"2 tasks, 2 images, ≈ 24 credits"):
        kie_jupyter.sweep("a fox", model=["4o", "nano-banana-pro"], max_credits=20, yes=True,
                          client=client_for(server))
    assert server.requests == []


@pytest.mark.parametrize("value", [-1, "10", True, float("nan")])
def test_a_bad_max_credits_is_refused(server, value):
    with pytest.raises(KieUsageError, match="max_credits"):
        kie_jupyter.generate("a fox", max_credits=value, client=client_for(server))
    assert server.requests == []


# -- what it cost ------------------------------------------------------------------------------


def test_a_tasks_cost_is_the_tables_estimate(server):
    task = kie_jupyter.generate("a fox", client=client_for(server))
    assert task.status is TaskStatus.SUCCESS
    cost = task.cost
    assert cost.value == 6 == table({"model": "4o"})
    assert cost.unit == "credits" and cost.basis == "estimate" and cost.estimated
    assert cost.demo is False
    assert "kie.ai/pricing" in cost.source and "read " in cost.source
    assert cost.usd == pytest.approx(0.03)
    assert str(cost) == "≈ 6 credits"
    assert cost.with_usd() == "≈ 6 credits (≈ $0.03)"
    assert cost.to_dict() == {"value": 6.0, "unit": "credits", "basis": "estimate",
                              "demo": False, "source": cost.source, "usd": cost.usd}


def test_a_sweeps_cost_is_the_sum_of_the_tables_estimates(server):
    sw = kie_jupyter.sweep("a fox", model=["4o", "nano-banana-pro"], size=["1:1", "3:2"],
                           client=client_for(server))
    assert all(t.status is TaskStatus.SUCCESS for t in sw.tasks)
    expected = [table({"model": t.model, **t.params}) for t in sw.tasks]
    assert [t.cost.value for t in sw.tasks] == expected
    assert sw.cost.value == sum(expected) == 2 * 6 + 2 * 18
    assert sw.cost.basis == "estimate" and sw.cost.unit == "credits"
    assert sw.cost.usd == pytest.approx(sum(expected) * 0.005)
    assert str(sw.cost) == "≈ 48 credits"


def test_a_sweep_with_an_unknown_price_has_an_unknown_total(server):
    sw = kie_jupyter.sweep("a fox", model=["4o", "qwen-image"], yes=True,
                           client=client_for(server))
    assert sw.cost.value is None
    assert "1 of 2 tasks of unknown price" in sw.cost.source


def test_a_reported_consumption_replaces_the_estimate(reporting):
    assert table({"model": "nano-banana-2-lite"}) == 4  # what KIE's 3 replaces
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite",
                                client=client_for(reporting))
    assert task.status is TaskStatus.SUCCESS
    assert task.cost.basis == "reported" and not task.cost.estimated
    assert task.cost.value == 3 and task.cost.source == REPORTED_SOURCE
    assert str(task.cost) == "3 credits" and "≈" not in str(task.cost)
    assert task.estimated_cost.value == 4  # the estimate is still there to compare


def test_a_reported_consumption_covers_an_unknown_price(reporting):
    task = kie_jupyter.generate("a fox", model="qwen-image", yes=True,
                                client=client_for(reporting))
    assert task.cost.value == 3 and task.cost.basis == "reported"


def test_a_market_task_kie_failed_keeps_its_estimate(server):
    # Whether KIE charges a failure is not documented: the estimate stays, marked ≈.
    server.script_next_task(TaskScript(success_flag=3))
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite", client=client_for(server))
    assert task.status is TaskStatus.FAILED
    assert task.cost.value == 4 and task.cost.estimated and str(task.cost) == "≈ 4 credits"
    assert "whether a failure is charged is not documented" in task.cost.source


def test_a_task_kie_never_made_costs_nothing(server):
    server.add_fault("createTask", code=422, msg="bad input")
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite", client=client_for(server))
    assert task.status is TaskStatus.FAILED and task.task_id is None
    assert task.cost.value == 0 and "KIE made no task" in task.cost.source


def test_a_failed_task_with_a_reported_zero_costs_nothing(reporting):
    reporting.script_next_task(TaskScript(success_flag=3))
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite",
                                client=client_for(reporting))
    assert task.status is TaskStatus.FAILED
    assert task.cost.value == 0 and task.cost.basis == "reported"


def test_the_history_records_the_cost(reporting, tmp_path):
    from kie_jupyter.engine.history import HistoryStore

    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite",
                                client=client_for(reporting))
    entry = HistoryStore(tmp_path / "kie").get(task.task_id)
    assert entry is not None and entry.cost is not None
    assert entry.cost["value"] == 3 and entry.cost["basis"] == "reported"


# -- demo calls --------------------------------------------------------------------------------


def test_a_demo_call_never_asks_or_refuses_on_cost(monkeypatch, tmp_path):
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "kie"))
    with MockKieServer(api_key=None, duration=0.2, rate_limit=None) as demo_server:
        client = KieClient("demo-key", base_url=demo_server.url, upload_url=demo_server.url,
                           demo=True)
        task = kie_jupyter.generate("a fox", model="qwen-image", max_credits=0, client=client)
        assert task.status is TaskStatus.SUCCESS
        assert task.cost.demo and str(task.cost) == "cost unknown (demo: not charged)"
        task = kie_jupyter.generate("a fox", variants=4, max_credits=0,
                                    confirm_over_credits=1, client=client)
        assert task.cost.value == 24 and task.cost.demo
        assert str(task.cost) == "≈ 24 credits (demo: not charged)"
        assert task.cost.with_usd() == str(task.cost)  # no dollars: nothing is charged


# -- the session's budget ----------------------------------------------------------------------


def _gate(session: Session, plan, *, yes: bool = False, demo: bool = False):
    return session.gate(plan, demo=demo, yes=yes, over=8, over_credits=200.0, max_credits=None,
                        setting="confirm_over", credits_setting="confirm_over_credits",
                        how="pass yes=True", budget=BUDGET)


def test_the_session_gate_refuses_a_plan_over_what_is_left(server):
    session = Session()
    session.budget = 20
    twelve = make_plan(Wanted("a fox", variants=2))
    six = make_plan(Wanted("a fox"))
    assert _gate(session, twelve).total == 12
    tasks = twelve.new_tasks(client_for(server), timeout=60)  # made, never started
    session.spend.add(tasks)
    assert session.spend.spent == 12 and session.budget_left() == 8
    for yes in (False, True):  # yes does not lift a budget
        with pytest.raises(KieUsageError) as refused:
            _gate(session, twelve, yes=yes)
        assert f"{BUDGET}: 8 credits left" in str(refused.value)
        assert "≈ 12 credits" in str(refused.value)
    assert _gate(session, six).total == 6  # fits
    with pytest.raises(KieUsageError, match="cannot be held"):
        _gate(session, make_plan(Wanted("a fox", model="qwen-image")), yes=True)
    assert _gate(session, twelve, demo=True).demo  # a demo plan is never refused
    assert server.requests == []


def test_the_budget_holds_across_calls(server, _own_session):
    _own_session.budget = 10
    kie_jupyter.generate("a fox", client=client_for(server))  # 6 of 10
    assert _own_session.budget_left() == 4
    with pytest.raises(KieUsageError, match=r"4 credits left.*≈ 6 credits"):
        kie_jupyter.generate("another fox", yes=True, client=client_for(server))
    assert len(server.requests_to("generate")) == 1
    # A cheaper model still fits what is left.
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite", client=client_for(server))
    assert task.status is TaskStatus.SUCCESS and _own_session.budget_left() == 0


def test_a_failure_kie_reports_as_free_gives_its_estimate_back(reporting, _own_session):
    _own_session.budget = 6
    reporting.script_next_task(TaskScript(success_flag=3))
    failed = kie_jupyter.generate("a fox", model="nano-banana-2-lite",
                                  client=client_for(reporting))
    assert failed.status is TaskStatus.FAILED and failed.cost.value == 0
    assert _own_session.budget_left() == 6  # KIE said: nothing consumed
    task = kie_jupyter.generate("a fox", client=client_for(reporting))  # 6: fits
    assert task.status is TaskStatus.SUCCESS


def test_two_threads_cannot_both_spend_the_last_credits(server, _own_session):
    import threading

    _own_session.budget = 10
    client = client_for(server)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def pay() -> None:
        barrier.wait()
        try:
            kie_jupyter.generate("a fox", client=client, wait=False)  # ≈ 6 each
            outcomes.append("sent")
        except KieUsageError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=pay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("sent") == 1, outcomes
    assert any("credits left" in o for o in outcomes if o != "sent")


def test_a_reported_consumption_settles_the_budget(reporting, _own_session):
    _own_session.budget = 10
    task = kie_jupyter.generate("a fox", model="nano-banana-2-lite",
                                client=client_for(reporting))
    assert task.cost.value == 3 and task.cost.basis == "reported"
    assert _own_session.spend.spent == 3
    assert _own_session.budget_left() == 7
