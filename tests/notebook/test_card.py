"""The static card: each fact once, images with the expression that picks each, the reason on
failure, theme colours from JupyterLab's variables, and a grid of tasks (sweeps, galleries)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import kie_jupyter
from kie_jupyter.api.client import KieClient
from kie_jupyter.api.models import TaskStatus
from kie_jupyter.notebook.cards import Card, card_bundle, name_task, static_bundle
from kie_jupyter.testing import MockKieServer

KEY = "sk-CARD-0123456789abcdef"


@pytest.fixture(scope="module")
def srv() -> Iterator[MockKieServer]:
    with MockKieServer(api_key=KEY, duration=0.1, rate_limit=None) as server:
        yield server


def make(server: MockKieServer, prompt: str, demo: bool = False, **kwargs):
    client = KieClient(KEY, base_url=server.url, upload_url=server.url, demo=demo)
    return kie_jupyter.generate(prompt, client=client, **kwargs)


def test_success_card_says_each_fact_once(srv):
    fox = make(srv, "A <red> fox & its den", variants=2, size="3:2")
    name_task(fox, "fox")
    bundle = card_bundle(fox)
    page, text = bundle["text/html"], bundle["text/plain"]
    # What is shown (the images' alt text repeats the prompt for screen readers).
    html = re.sub(r' (alt|aria-label)="[^"]*"', "", page)
    assert html.count("A &lt;red&gt; fox &amp; its den") == 1 and "<red>" not in page
    assert page.count('alt="A &lt;red&gt; fox &amp; its den — image') == 2
    assert html.count(fox.task_id) == 1
    assert html.count("data:image/jpeg;base64,") == 2
    assert ">fox[0]<" in html and ">fox[1]<" in html
    assert html.count("Done in") == 1 and "3:2" in html and "×2" in html
    assert "4o image" in html and "demo" not in html
    assert fox.task_id in text and "A <red> fox & its den" in text  # the text fallback
    assert static_bundle(fox) == bundle  # what display(task) shows once the extension is loaded


def test_failed_card_gives_the_reason_once_and_no_image(srv):
    cat = make(srv, "A cat [mock:fail]")
    assert cat.status is TaskStatus.FAILED
    html = card_bundle(cat)["text/html"]
    assert "data:image/" not in html
    assert html.count("content polic") == 1, html  # in the reason, not in the header too
    assert 'class="kie4o-status"' in html and ">Failed<" in html
    assert html.count(cat.task_id) == 1


def test_demo_card_says_demo(srv):
    owl = make(srv, "A demo owl", demo=True)
    html = card_bundle(owl)["text/html"]
    assert ">demo</span>" in html and "(demo)" in card_bundle(owl)["text/plain"]


def test_colours_come_from_the_theme_with_fallbacks(srv):
    # The card's own colours (the full-size viewer's overlay is dark in every theme).
    html = re.sub(r"<script>.*?</script>", "", card_bundle(make(srv, "A themed fox"))["text/html"],
                  flags=re.S)
    colours = re.findall(r"color:([^;\"]+)", html)
    assert colours and all(c.startswith("var(--jp-") and "," in c for c in colours), colours
    assert "#333" not in html  # the old hard-coded grey, unreadable on a dark theme


def test_embed_none_and_full(srv):
    fox = make(srv, "A fox", variants=2)
    name_task(fox, "fox")
    none = card_bundle(fox, "none")["text/html"]
    assert "data:image/" not in none and "fox[0], fox[1]" in none
    full = card_bundle(fox, "full")["text/html"]
    assert full.count("data:image/png;base64,") == 2


def test_a_grid_of_tasks_is_one_card_of_cards(srv):
    tasks = [make(srv, f"fox {n}") for n in range(4)]
    names = {id(t): f"sweep[{n}]" for n, t in enumerate(tasks)}
    bundle = Card([tasks[:2], tasks[2:]], names=names)._repr_mimebundle_()
    html = bundle["text/html"]
    assert html.startswith('<div class="kie4o-grid kie4o-view"') and "repeat(2," in html
    assert html.count('class="kie4o-card') == 4
    assert all(html.count(t.task_id) == 1 for t in tasks)
    assert ">sweep[3][0]<" in html
    assert all(t.task_id in bundle["text/plain"] for t in tasks)
    row = card_bundle(tasks)["text/html"]  # one row of tasks
    assert "repeat(4," in row
