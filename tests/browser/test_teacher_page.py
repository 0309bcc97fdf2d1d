"""The class proxy's teacher page in headless Chromium: sign in, read the use table, add quota,
revoke a token, pause the class — against a real proxy on uvicorn before the fake KIE server."""

from __future__ import annotations

import pytest

from kie_jupyter.classroom.tokens import parse_student_token

from class_helpers import TEACHER_KEY, kie, ledger, make_proxy, submit, wait_done  # noqa: F401

pytestmark = pytest.mark.browser


def test_teacher_page_sign_in_use_quota_revoke_pause(browser, make_proxy, ledger, artifacts):
    proxy = make_proxy()
    ada = ledger.add_student("Ada <script>alert(1)</script>", 3)
    ledger.add_student("Alan", 2)
    teacher = ledger.new_teacher_token()
    task_id = submit(proxy.url, ada, "a fox <b>in</b> the snow").json()["data"]["taskId"]
    wait_done(proxy.url, ada, task_id)

    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(proxy.url + "/teacher")
        page.fill("input[name=token]", "kt_wrong")
        page.click("button[type=submit]")
        assert "not the teacher token" in page.text_content("body")
        page.fill("input[name=token]", teacher)
        page.click("button[type=submit]")
        page.wait_for_selector("#students")
        row = page.locator("tr", has_text="Ada <script>")
        assert row.locator(".use").text_content() == "1 / 3"
        assert "a fox <b>in</b> the snow" in row.text_content()  # escaped, shown as typed
        assert row.locator("img").count() == 1  # the thumbnail of the finished task
        assert not dialogs  # nothing the students typed ran
        assert row.locator(".credits").text_content() == "6 / —"  # credits, no budget
        spend = page.locator("#models tr[data-model='4o']").text_content()
        assert spend.startswith("4o") and spend.endswith("≈ 6")  # spend per model
        page.screenshot(path=str(artifacts / "teacher-page.png"), full_page=True)
        assert TEACHER_KEY not in page.content() and ada not in page.content()

        # Add quota to Alan.
        alan = page.locator("tr", has_text="Alan")
        alan.locator("input[name=images]").fill("5")
        alan.locator("button", has_text="Add quota").click()
        page.wait_for_selector("text=Alan: quota now 7 images.")
        assert page.locator("tr", has_text="Alan").locator(".use").text_content() == "0 / 7"
        assert ledger.student_named("Alan").quota == 7
        page.reload()  # the action is not repeated (the page was reached by a redirect)
        assert page.locator("tr", has_text="Alan").locator(".use").text_content() == "0 / 7"
        assert ledger.student_named("Alan").quota == 7

        # Revoke Ada: her token stops working at once.
        page.locator("tr", has_text="Ada <script>").locator("button", has_text="Revoke").click()
        page.wait_for_selector("text=access revoked")
        assert "(revoked)" in page.locator("tr", has_text="Ada <script>").text_content()
        answer = submit(proxy.url, ada)
        assert answer.status_code == 401 and "revoked" in answer.json()["msg"]
        page.locator("tr", has_text="Ada <script>").locator("button", has_text="Restore").click()
        page.wait_for_selector("text=access restored")
        assert submit(proxy.url, ada).status_code == 200
        page.locator("tr", has_text="Ada <script>").locator("button", has_text="Revoke").click()
        page.wait_for_selector("text=access revoked")

        # Pause the class, then resume it.
        page.click("#pause")
        page.wait_for_selector("#state:has-text('paused')")
        assert ledger.paused
        page.click("#pause")
        page.wait_for_selector("#state:has-text('running')")
        assert not ledger.paused

        # The CSV of use is behind the sign-in.
        with page.expect_download() as download:
            page.click("text=Download use (CSV)")
        text = open(download.value.path(), encoding="utf-8").read()
        assert "Alan,0,7,0,7,0,0" in text
        other = browser.new_context().new_page()
        assert other.goto(proxy.url + "/teacher/use.csv").status == 401
        other.context.close()
    finally:
        ctx.close()
    assert ledger.student(parse_student_token(ada).student_id).revoked
