"""GenerationRequest validation and body, TaskRecord's tolerant parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kie_jupyter.api.errors import KieUsageError
from kie_jupyter.api.models import (
    MAX_FILES,
    VARIANTS,
    FallbackModel,
    GenerationRequest,
    Size,
    TaskRecord,
)

IMG = "https://example.com/in.png"


# -- GenerationRequest: validation ------------------------------------------------------------

BAD = [
    # (kwargs, the field named first, words the message must hold)
    ({"prompt": "x", "size": "16:9"}, "size", ["1:1", "3:2", "2:3"]),
    ({"prompt": "x", "size": "1x1"}, "size", ["1:1", "3:2", "2:3"]),
    ({"prompt": "x", "size": None}, "size", ["1:1", "3:2", "2:3"]),
    ({"prompt": "x", "size": ["1:1"]}, "size", ["1:1", "3:2", "2:3"]),
    ({"prompt": "x", "size": 1}, "size", ["1:1", "3:2", "2:3"]),
    ({"prompt": "x", "variants": 3}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": 0}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": 8}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": "2"}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": True}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": 2.0}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "variants": None}, "variants", ["1, 2, 4"]),
    ({"prompt": "x", "files": (IMG,) * 6}, "images", ["6 given", "at most 5"]),
    ({"prompt": "x", "files": ("in.png",)}, "images", ["http(s)"]),
    ({"prompt": "x", "files": ("ftp://example.com/a.png",)}, "images", ["http(s)"]),
    ({"prompt": "x", "files": (None,)}, "images", ["http(s)"]),
    ({"prompt": ""}, "prompt", ["input image"]),
    ({"prompt": "   \n"}, "prompt", ["input image"]),
    ({"prompt": None}, "prompt", ["text"]),
    ({"prompt": 42}, "prompt", ["text"]),
    ({"prompt": "x", "files": (IMG,), "mask": "mask.png"}, "mask", ["http(s)"]),
    ({"prompt": "x", "mask": "https://example.com/m.png"}, "mask", ["input image"]),
    ({"prompt": "x", "files": (IMG, IMG), "mask": "https://example.com/m.png"}, "mask",
     ["exactly one", "2 given"]),
    ({"prompt": "x", "callback_url": "example.com/hook"}, "callback", ["http(s)"]),
    ({"prompt": "x", "fallback": True, "fallback_model": "DALL_E"}, "fallback",
     ["GPT_IMAGE_1", "FLUX_MAX"]),
    ({"prompt": "x", "fallback": True, "fallback_model": ["FLUX_MAX"]}, "fallback",
     ["GPT_IMAGE_1", "FLUX_MAX"]),
    ({"prompt": "x", "fallback_model": "FLUX_MAX"}, "fallback", ["--fallback"]),
]


@pytest.mark.parametrize(
    "kwargs, field, words", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_fields_are_usage_errors_naming_the_field(
    kwargs: dict[str, Any], field: str, words: list[str]
) -> None:
    with pytest.raises(KieUsageError) as info:
        GenerationRequest(**kwargs)
    assert type(info.value) is KieUsageError  # not a TypeError or AttributeError
    message = str(info.value)
    assert message.startswith(field), message
    for word in words:
        assert word in message, (word, message)


def test_usage_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        GenerationRequest("x", size="4:3")


@pytest.mark.parametrize("size", ["1:1", "3:2", "2:3", Size.LANDSCAPE])
@pytest.mark.parametrize("variants", VARIANTS)
def test_every_allowed_size_and_count(size: Any, variants: int) -> None:
    request = GenerationRequest("x", size=size, variants=variants)
    assert request.size == (size.value if isinstance(size, Size) else size)
    assert isinstance(request.size, str) and not isinstance(request.size, Size)
    assert request.to_body()["nVariants"] == variants


def test_files_only_no_prompt_is_fine() -> None:
    request = GenerationRequest(files=[IMG] * MAX_FILES)
    assert request.files == (IMG,) * 5  # a list is frozen into a tuple
    assert request.to_body() == {"size": "1:1", "nVariants": 1, "filesUrl": [IMG] * 5}


def test_one_url_given_as_a_string_is_one_file() -> None:
    request = GenerationRequest("edit", files=IMG)  # type: ignore[arg-type]
    assert request.files == (IMG,)


def test_fallback_model_enum_is_stored_as_its_value() -> None:
    request = GenerationRequest("x", fallback=True, fallback_model=FallbackModel.GPT_IMAGE_1)
    assert request.fallback_model == "GPT_IMAGE_1"
    assert request.to_body()["fallbackModel"] == "GPT_IMAGE_1"


def test_request_is_frozen() -> None:
    request = GenerationRequest("x")
    with pytest.raises(AttributeError):
        request.prompt = "y"  # type: ignore[misc]


def test_with_files_revalidates() -> None:
    request = GenerationRequest(files=("https://upload.pending/local-file",))
    done = request.with_files((IMG,), None)
    assert done.files == (IMG,) and request.files != done.files
    with pytest.raises(KieUsageError, match="images"):
        request.with_files(("local.png",), None)


# -- GenerationRequest: the exact body ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, body",
    [
        ({"prompt": "a fox"}, {"prompt": "a fox", "size": "1:1", "nVariants": 1}),
        (
            {"prompt": "a fox", "size": "2:3", "variants": 4},
            {"prompt": "a fox", "size": "2:3", "nVariants": 4},
        ),
        (
            {"prompt": "edit", "files": (IMG,), "mask": "https://example.com/m.png"},
            {"prompt": "edit", "size": "1:1", "nVariants": 1, "filesUrl": [IMG],
             "maskUrl": "https://example.com/m.png"},
        ),
        (
            {"prompt": "a fox", "enhance": True, "upload_cn": True},
            {"prompt": "a fox", "size": "1:1", "nVariants": 1, "isEnhance": True,
             "uploadCn": True},
        ),
        (
            {"prompt": "a fox", "fallback": True},
            {"prompt": "a fox", "size": "1:1", "nVariants": 1, "enableFallback": True,
             "fallbackModel": "FLUX_MAX"},
        ),
        (
            {"prompt": "a fox", "fallback": True, "fallback_model": "GPT_IMAGE_1"},
            {"prompt": "a fox", "size": "1:1", "nVariants": 1, "enableFallback": True,
             "fallbackModel": "GPT_IMAGE_1"},
        ),
        (
            {"prompt": "a fox", "callback_url": "https://example.com/hook"},
            {"prompt": "a fox", "size": "1:1", "nVariants": 1,
             "callBackUrl": "https://example.com/hook"},
        ),
    ],
    ids=["minimal", "size-variants", "edit-mask", "enhance-cn", "fallback-default",
         "fallback-model", "callback"],
)
def test_to_body(kwargs: dict[str, Any], body: dict[str, Any]) -> None:
    sent = GenerationRequest(**kwargs).to_body()
    assert sent == body
    assert "fileUrl" not in sent  # the deprecated single-file form is never sent
    json.dumps(sent)  # and it is JSON


def test_to_dict_round_trips_the_settings() -> None:
    request = GenerationRequest("a fox", size="3:2", variants=2, files=(IMG,), enhance=True)
    assert request.to_dict() == {
        "prompt": "a fox", "size": "3:2", "variants": 2, "files": [IMG], "mask": None,
        "enhance": True, "fallback": False, "fallback_model": None, "callback_url": None,
        "upload_cn": False,
    }


# -- TaskRecord.from_api -------------------------------------------------------------------------


def record(**fields: Any) -> TaskRecord:
    data: dict[str, Any] = {
        "taskId": "t1", "status": "GENERATING", "successFlag": 0, "progress": "0.00",
        "response": None, "errorCode": None, "errorMessage": None,
    }
    data.update(fields)
    return TaskRecord.from_api(data)


def test_documented_generating_record() -> None:
    data = {
        "taskId": "d231a99a", "paramJson": '{"prompt":"...","size":"1:1"}', "completeTime": None,
        "response": None, "successFlag": 0, "status": "GENERATING", "errorCode": None,
        "errorMessage": None, "createTime": 1755572609000, "progress": "0.48",
    }
    r = TaskRecord.from_api(data)
    assert r.task_id == "d231a99a"
    assert r.progress == pytest.approx(0.48)
    assert r.params == {"prompt": "...", "size": "1:1"}
    assert r.create_time == 1755572609000 and r.complete_time is None
    assert not r.finished and not r.succeeded and not r.failed
    assert r.urls == ()


def test_documented_success_record() -> None:
    r = record(status="SUCCESS", successFlag=1, progress="1.00",
               response={"resultUrls": ["https://tempfile.example/a.png"]},
               completeTime=1755572669000)
    assert r.succeeded and r.finished and not r.failed
    assert r.urls == ("https://tempfile.example/a.png",)
    assert r.complete_time == 1755572669000


def test_documented_failed_record() -> None:
    r = record(status="GENERATE_FAILED", successFlag=2, errorCode=400,
               errorMessage="Your content was flagged by OpenAI as violating content policies")
    assert r.failed and r.finished and not r.succeeded
    assert r.error_code == 400
    assert r.failure_reason().startswith("Your content was flagged")


@pytest.mark.parametrize(
    "response",
    [
        {"resultUrls": ["https://a/1.png", "https://a/2.png"]},
        {"result_urls": ["https://a/1.png", "https://a/2.png"]},
        json.dumps({"resultUrls": ["https://a/1.png", "https://a/2.png"]}),
        json.dumps({"result_urls": ["https://a/1.png", "https://a/2.png"]}),
        {"resultUrls": [], "result_urls": ["https://a/1.png", "https://a/2.png"]},
        {"resultUrls": None, "result_urls": ["https://a/1.png", "https://a/2.png"]},
        {"resultUrls": ["https://a/1.png", "", None, 7, "https://a/2.png"]},
    ],
    ids=["camel", "snake", "camel-string", "snake-string", "camel-empty", "camel-null",
         "junk-entries"],
)
def test_result_urls_either_key_either_form(response: Any) -> None:
    r = record(status="SUCCESS", successFlag=1, progress="1.00", response=response)
    assert r.urls == ("https://a/1.png", "https://a/2.png")


@pytest.mark.parametrize(
    "response, urls",
    [
        (None, ()),
        ("not json", ()),
        ("[1, 2]", ()),
        ({"resultUrls": "https://a/1.png"}, ("https://a/1.png",)),
        ({"resultUrls": {"x": 1}}, ()),
        ({}, ()),
        (["https://a/1.png"], ()),
    ],
)
def test_odd_responses_never_crash(response: Any, urls: tuple[str, ...]) -> None:
    assert record(response=response).urls == urls


@pytest.mark.parametrize(
    "progress, expected",
    [
        ("0.48", 0.48), (" 0.5 ", 0.5), ("1.00", 1.0), ("0", 0.0), (0.25, 0.25), (1, 1.0),
        (45, 0.45), ("45", 0.45), ("45%", 0.45), ("100%", 1.0), ("7.5 %", 0.075),
        (100, 1.0), (250, 1.0), (-0.2, 0.0), ("abc", 0.0), ("", 0.0), (None, 0.0),
        ("nan", 0.0), ([0.5], 0.0), ({"p": 1}, 0.0), ("inf", 1.0),
    ],
)
def test_progress_parsing(progress: Any, expected: float) -> None:
    assert record(progress=progress).progress == pytest.approx(expected)


@pytest.mark.parametrize(
    "flag, status, state",
    [
        (0, "GENERATING", "running"),
        ("0", "GENERATING", "running"),
        (1, "SUCCESS", "succeeded"),
        ("1", "SUCCESS", "succeeded"),
        (0, "SUCCESS", "succeeded"),  # the status alone says success
        (2, "GENERATE_FAILED", "failed"),
        (2, "GENERATING", "failed"),  # a flag outside {0, 1} is failed whatever the status
        (3, "GENERATING", "failed"),  # moderation refusal
        (3, "SUCCESS", "failed"),
        (-1, "GENERATING", "failed"),
        (99, None, "failed"),
        (0, "CREATE_TASK_FAILED", "failed"),
        (0, "GENERATE_FAILED", "failed"),
        (None, "GENERATING", "running"),  # no flag: the status decides
        (None, "SUCCESS", "succeeded"),
        ("garbage", "GENERATING", "running"),
        ("garbage", "GENERATE_FAILED", "failed"),
        ("garbage", "SUCCESS", "succeeded"),
        (float("inf"), "GENERATING", "running"),
    ],
)
def test_success_flag_and_status(flag: Any, status: Any, state: str) -> None:
    r = record(successFlag=flag, status=status)
    actual = "failed" if r.failed else "succeeded" if r.succeeded else "running"
    assert actual == state
    assert r.finished == (state != "running")


def test_missing_fields_use_defaults_and_the_given_id() -> None:
    r = TaskRecord.from_api({}, task_id="given")
    assert r.task_id == "given"
    assert r.status == "GENERATING"
    assert r.success_flag == 0 and r.progress == 0.0 and r.urls == ()
    assert r.params == {} and r.error_code is None and r.error_message is None
    assert not r.finished


@pytest.mark.parametrize(
    "param_json, params",
    [
        ('{"prompt": "p", "size": "3:2"}', {"prompt": "p", "size": "3:2"}),
        ({"prompt": "p"}, {"prompt": "p"}),
        ("{broken", {}),
        ("[1, 2]", {}),
        (None, {}),
    ],
)
def test_param_json(param_json: Any, params: dict[str, Any]) -> None:
    assert record(paramJson=param_json).params == params


@pytest.mark.parametrize(
    "code, expected", [(400, 400), ("451", 451), (None, None), ("E_BAD", None), (1e400, None)]
)
def test_error_code_parsing(code: Any, expected: int | None) -> None:
    assert record(errorCode=code).error_code == expected


def test_failure_reason_defaults() -> None:
    assert record(successFlag=3, status="GENERATING").failure_reason() == (
        "refused by the content moderation"
    )
    assert "CREATE_TASK_FAILED" in record(status="CREATE_TASK_FAILED").failure_reason()
    assert record(successFlag=2, errorMessage="").failure_reason() == (
        "the task ended with status GENERATING"
    )


def test_a_4o_record_time_in_either_documented_form():
    # generate-4-o-image's record example: epoch milliseconds; the 4o quickstart: wall-clock
    # text. Both give the same instant (text read as UTC), so the duration is right.
    from kie_jupyter.api.models import TaskRecord, time_ms

    millis = TaskRecord.from_api({"taskId": "t", "createTime": 1705314600000,
                                  "completeTime": "1705314630000"})
    text = TaskRecord.from_api({"taskId": "t", "createTime": "2024-01-15 10:30:00",
                                "completeTime": "2024-01-15 10:30:30"})
    assert (millis.create_time, millis.complete_time) == (1705314600000, 1705314630000)
    assert (text.create_time, text.complete_time) == (1705314600000, 1705314630000)
    assert time_ms("2024-01-15T10:30:00.25Z") == 1705314600250
    assert time_ms("yesterday") is None and time_ms("2024-13-40 10:30:00") is None
    assert time_ms(None) is None
