"""The bad-input table: every wrong value gives one clear line naming the option; nothing sent."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from kie_jupyter.fakeapi.images import render_png

from magic_helpers import run, server, shell  # isort: skip


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.fixture()
def files(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # 30 MB, a PNG header then zeros (sparse, fast)
        fh.write(render_png("big")[:64])
        fh.seek(30 * 1024 * 1024)
        fh.write(b"\0")
    over_4o = tmp_path / "over4o.png"  # 26 MiB: over 4o's 25 MiB, under Nano Banana's 30
    with open(over_4o, "wb") as fh:
        fh.write(render_png("big")[:64])
        fh.seek(26 * 1024 * 1024)
        fh.write(b"\0")
    return {
        "over_4o": over_4o,
        "png": write(tmp_path / "a.png", render_png("a", "1:1")),
        "png2": write(tmp_path / "b.png", render_png("b", "1:1")),
        "wide_mask": write(tmp_path / "m.png", render_png("m", "3:2")),
        "text": write(tmp_path / "notes.txt", b"just text"),
        "empty": write(tmp_path / "empty.png", b""),
        "fake_png": write(tmp_path / "fake.png", b"GIF? no, nothing"),
        "big": big,
        "dir": tmp_path,
    }


BAD_CELLS = [
    # (magic line, body, text the one-line error must contain)
    ("-s", "x", "--size"),
    ("-s 16:9", "x", "--size"),
    ("-s 1x1", "x", "--size"),
    ("-n 0", "x", "--variants"),
    ("-n 3", "x", "--variants"),
    ("-n 8", "x", "--variants"),
    ("-n 1.5", "x", "--variants"),
    ("-n", "x", "--variants"),
    ("--variants=-1", "x", "--variants"),
    ("--fallback flux", "x", "--fallback"),
    ("--timeout 0", "x", "--timeout"),
    ("--timeout abc", "x", "--timeout"),
    ("--timeout nan", "x", "--timeout"),
    ("--timeout inf", "x", "--timeout"),
    ("--timeout -inf", "x", "--timeout"),
    ("--callback notaurl", "x", "--callback"),
    ("-o for", "x", "--out"),
    ("-o a-b", "x", "--out"),
    ("--sizee 1:1", "x", "unrecognized"),
    ("-z", "x", "unrecognized"),
    ("extra words", "x", "unrecognized"),
    ("-i", "x", "--image"),
    ("-m", "x", "--mask"),
    ("", "", "prompt: empty"),  # the magic, not IPython, answers a cell with no body
    ("", " \n\t ", "prompt: empty"),
    ("", "x" * 100_000, "at most 32000"),
    ("", "bell \x07 here", "control character U+0007"),
    ("", "esc \x1b[31m red", "control character U+001B"),
    ("", "nul \x00", "control character U+0000"),
    ("", "{missing}", "{missing} is not defined"),
    ("", "{0}", "is not defined"),
    ("", "open { brace", "braces"),
    ("", "close } brace", "braces"),
    ("-i ftp://x/a.png", "x", "not an http(s) URL"),
    ("-i $undefined_var", "x", "$undefined_var is not defined"),
    ("-m https://x.example/m.png", "x", "--mask: needs an --image"),
    ("-i https://x.example/a.png -i https://x.example/b.png -m https://x.example/m.png", "x",
     "exactly one --image"),
    (" ".join(f"-i https://x.example/{n}.png" for n in range(6)), "x", "at most 5"),
]


@pytest.mark.parametrize(("line", "body", "needle"), BAD_CELLS)
def test_bad_cell(shell, server, line, body, needle):
    with pytest.raises(UsageError) as info:
        run(shell, f"%%kie4o {line}\n{body}")
    message = str(info.value).strip()
    assert needle in message
    assert "\n" not in message and len(message) < 300
    assert not server.requests


FILE_CASES = [
    ("-i {missing}", "no such file"),
    ("-i {dir}", "is a directory"),
    ("-i {text}", "not an image"),
    ("-i {empty}", "the file is empty"),
    ("-i {fake_png}", "not an image"),
    ("-i {big}", "over the largest limit of any model (30 MiB per image)"),
    ("-i {over_4o}", "4o takes at most 25 MB per image"),
    ("-i {png} -m {wide_mask}", "does not match"),
    ("-i {png} -m {text}", "not an image"),
    ("-i {png} -i {png2} -m {png}", "exactly one --image"),
]


@pytest.mark.parametrize(("line", "needle"), FILE_CASES)
def test_bad_file(shell, server, files, line, needle):
    line = line.format(missing=files["dir"] / "nope.png", **files)
    with pytest.raises(UsageError) as info:
        run(shell, f"%%kie4o {line}\nedit")
    assert needle in str(info.value) and "\n" not in str(info.value).strip()
    assert not server.requests


def test_wrong_types_from_the_namespace(shell, server):
    shell.user_ns["number"] = 42
    shell.user_ns["nothing"] = None
    for name in ("number", "nothing"):
        with pytest.raises(UsageError, match="expected a file path"):
            run(shell, f"%%kie4o -i ${name}\nx")
    assert not server.requests


@pytest.mark.parametrize("body", ["a", "🦊🌲 a fox — in the snow, «watercolor»", "多云的天空",
                                  "line one\n\tline two"])
def test_good_unusual_prompts_are_sent_as_written(shell, server, body):
    run(shell, f"%%kie4o -o t\n{body}")
    assert server.requests_to("generate")[0].json["prompt"] == body.strip()
    shell.user_ns.pop("t", None)


def test_python_api_bad_input(server, monkeypatch):
    from kie_jupyter import KieUsageError, generate

    monkeypatch.setenv("KIE_API_KEY", "k")
    cases = [dict(size="4:3"), dict(variants=3), dict(variants=True), dict(images=[1]),
             dict(mask="https://x/m.png"), dict(prompt=""), dict(fallback="DALL_E")]
    for kwargs in cases:
        kwargs = {"prompt": "x", **kwargs}
        with pytest.raises(KieUsageError):
            generate(**kwargs)
    assert not server.requests
