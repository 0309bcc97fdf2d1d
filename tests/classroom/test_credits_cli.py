"""``kie4o class`` commands for credit budgets, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

from class_helpers import TEACHER_KEY


def _class(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kie_jupyter.cli", "class", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_credits_expiry_and_models_per_student(tmp_path):
    db = str(tmp_path / "class.db")
    added = _class("add", "--name", "Ada", "--quota", "5", "--credits", "50", "--expires",
                   "2027-01-31", "--models", "4o, nano-banana-2-lite", "--db", db)
    assert added.returncode == 0, added.stderr
    assert "1 students added (5 images, 50 credits each)" in added.stderr
    more = _class("credits", "Ada", "25", "--db", db)
    assert more.returncode == 0 and "Ada: 0 of 75 credits used" in more.stderr
    listing = _class("students", "--db", db).stdout
    assert "0/75" in listing and "(expires 2027-01-31)" in listing
    assert "until 2027-01-31" in _class("expires", "Ada", "2027-01-31", "--db", db).stderr
    assert "no end date" in _class("expires", "Ada", "never", "--db", db).stderr
    assert "models the class's" in _class("models", "Ada", "class", "--db", db).stderr
    for args, why in [
        (("models", "Ada", "dall-e"), "'dall-e' is not one of 4o"),
        (("expires", "Ada", "31/01/2027"), "is not a date like 2027-01-31"),
        (("add", "--name", "Bob", "--credits", "-3"), "is not a number of credits"),
        (("credits", "Nobody", "5"), "no student named 'Nobody'"),
    ]:
        refused = _class(*args, "--db", db)
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
    assert "Bob" not in _class("students", "--db", db).stdout


def test_serve_checks_its_budget_options_and_price_file_before_starting(tmp_path):
    env = {**os.environ, "KIE_API_KEY": TEACHER_KEY}
    db = str(tmp_path / "c.db")
    bad = tmp_path / "prices.json"
    bad.write_text('{"rows": [{"model": "4o"}]}')
    refused = _class("serve", "--db", db, "--prices", str(bad), env=env)
    assert refused.returncode == 2
    assert f"prices: {bad}: row 1: needs credits" in refused.stderr
    from_env = _class("serve", "--db", db, env={**env, "KIE_PRICES": str(bad)})
    assert from_env.returncode == 2 and "row 1: needs credits" in from_env.stderr
    models = _class("serve", "--db", db, "--models", "4o,sora", env=env)
    assert models.returncode == 2 and "'sora' is not one of" in models.stderr
    assert TEACHER_KEY not in refused.stderr + models.stderr
