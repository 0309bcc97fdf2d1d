"""The ``%%kie4o`` options on the magic, and their parsing into a checked request.

The magic declares the options of the shared table (:mod:`kie_jupyter.optiontable`) with
IPython's ``magic_arguments`` (so ``%%kie4o?`` is the help); :func:`parse_cell` turns a magic
line and cell body into :class:`CellOptions` — the engine's plan and the notebook's own
options — raising a one-line ``UsageError`` for any bad input before anything is sent.

The option line is split like a POSIX shell line (:func:`split_line`), *then* ``$name`` and
``{expr}`` are filled from the notebook (:func:`expand_words`): a word that is one expression
keeps its object (``-i $fox[1]`` is the image itself, ``--save {outdir}`` one word even with
spaces), a word with expressions inside is string-formatted, as IPython does for line magics.
"""

from __future__ import annotations

import keyword
import os
import re
import shlex
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.text import DollarFormatter

from .. import optiontable
from ..api.errors import KieUsageError
from ..api.models import is_http_url
from ..api.registry import parse_param
from ..engine.checks import check_timeout
from ..engine.plan import Plan, Wanted, make_plan
from ..hints import with_hint

__all__ = ["parse_cell", "CellOptions", "check_out_name", "fill_prompt", "split_line",
           "expand_words", "keep_empty_body"]

#: The long name of each flag, for error messages (``-i`` → ``--image``).
LONG_NAMES = optiontable.LONG_NAMES


@dataclass(frozen=True)
class CellOptions:
    """A parsed, checked ``%%kie4o`` cell: its :class:`~kie_jupyter.engine.plan.Plan` (one
    task, or a sweep of several) and the notebook's own options."""

    plan: Plan
    out: str | None
    save: str | None
    no_wait: bool
    timeout: float | None
    dry_run: bool
    yes: bool = False
    max_credits: float | None = None


class _Formatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError):
            name = field_name.split(".")[0].split("[")[0]
            raise UsageError(
                f"prompt: {{{name}}} is not defined in the notebook "
                "(write {{ and }} for literal braces)"
            ) from None
        except AttributeError as exc:
            raise UsageError(f"prompt: {{{field_name}}}: {exc}") from None


def fill_prompt(body: str, namespace: Mapping[str, Any]) -> str:
    """Fill ``{name}`` from the namespace; ``{{`` and ``}}`` are literal braces."""
    try:
        return _Formatter().vformat(body, (), namespace)
    except ValueError as exc:
        raise UsageError(f"prompt: {exc} (write {{{{ and }}}} for literal braces)") from None


#: Options whose value may be any object from the notebook (a task, an image, bytes, a list).
OBJECT_OPTIONS = optiontable.OBJECT_FLAGS
#: Stands in, on the argparse word list, for the object at that index of the objects list.
_OBJECT_MARK = "\0kie4o-object-"


def split_line(line: str, where: str) -> list[str]:
    """The words of a magic line, split with POSIX shell quoting; one-line error on a bad quote.

    On Windows a backslash is a path separator, not an escape.
    """
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # '#' is part of a URL or a file name, never a comment
    if os.name == "nt":
        lexer.escape = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise UsageError(f"{where}: {str(exc).lower()} on the line (quote with '…' or \"…\", "
                         "or escape a space with \\)") from None


#: ``$name`` with attributes and subscripts (``$fox``, ``$fox.urls[2]``, ``$fox[1]``).
_DOLLAR_WORD = re.compile(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\[\]]*\])*)")


def _whole_expression(word: str) -> str | None:
    """The expression a word consists of (``$expr``, ``${expr}``, ``{expr}``), else None.

    ``$outdir/run1`` is not one: like IPython, it is ``$outdir`` followed by text.
    """
    dollar = _DOLLAR_WORD.fullmatch(word)
    if dollar:
        return dollar.group(1)
    if word.startswith("${") and word.endswith("}") and len(word) > 3:
        return word[2:-1]
    if word.startswith("{") and word.endswith("}") and not word.startswith("{{"):
        try:
            parts = list(string.Formatter().parse(word))
        except ValueError:
            return None
        if len(parts) == 1 and parts[0][0] == "" and parts[0][1] is not None and not parts[0][3]:
            return parts[0][1] + (f":{parts[0][2]}" if parts[0][2] else "")
    return None


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evaluate(expr: str, word: str, namespace: Mapping[str, Any], where: str) -> Any:
    """Evaluate one expression of the line in the notebook's namespace, or a one-line error."""
    if not expr.strip():
        raise UsageError(f"{where}: {word} is empty (write $$ for a literal $, {{{{ and }}}} "
                         "for literal braces)")
    try:
        return eval(expr, dict(namespace))  # noqa: S307 -- the user's own line, as IPython does
    except NameError as exc:
        name = getattr(exc, "name", None) or str(exc)
        if name == expr.strip():
            raise UsageError(f"{where}: {word} is not defined in the notebook") from None
        raise UsageError(f"{where}: {word}: {name} is not defined in the notebook") from None
    except SyntaxError:
        raise UsageError(f"{where}: {word} is not a Python expression (write $$ for a "
                         "literal $, {{ and }} for literal braces)") from None
    except Exception as exc:
        raise UsageError(
            f"{where}: {word} failed: {_one_line(f'{type(exc).__name__}: {exc}')}"
        ) from None


def _format(word: str, namespace: Mapping[str, Any], where: str) -> str:
    """A word with ``$name``/``{expr}`` inside, string-formatted; ``$$``, ``{{``, ``}}`` escape."""
    try:
        return DollarFormatter().vformat(word, args=[], kwargs=dict(namespace))
    except NameError as exc:
        name = getattr(exc, "name", None) or str(exc)
        raise UsageError(f"{where}: {word}: {name} is not defined in the notebook") from None
    except Exception as exc:
        raise UsageError(
            f"{where}: {word}: {_one_line(f'{type(exc).__name__}: {exc}')} (write $$ for a "
            "literal $, {{ and }} for literal braces)"
        ) from None


def _is_flag(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not word[1:2].isdigit()


def expand_words(words: Iterable[str], namespace: Mapping[str, Any], *, where: str,
                 prefix: str = "", objects_for: frozenset[str | None] = frozenset(),
                 ) -> tuple[list[str], list[Any]]:
    """Fill ``$name`` and ``{expr}`` in each word (after splitting, so values keep spaces).

    A word that is one expression becomes ``str(value)``, or, as the value of an option in
    ``objects_for``, a marker for ``value`` itself (returned in the second list; see
    :func:`unmark`). ``--opt=$expr`` counts as ``--opt $expr``. Errors name the option (after
    ``prefix``; ``where`` for a word that follows no option) and the expression, in one line.
    """
    out: list[str] = []
    objects: list[Any] = []
    previous: str | None = None
    for word in words:
        if word.startswith("--") and "=" in word:
            flag, _, value = word.partition("=")
            if "$" in value or "{" in value or "}" in value:
                out.append(flag)
                previous, word = flag, value
        option = previous if previous is not None and _is_flag(previous) else None
        label = f"{prefix}{LONG_NAMES.get(option, option)}" if option else where
        previous = word
        if _is_flag(word) and not ("$" in word or "{" in word or "}" in word):
            out.append(word)
            continue
        expr = _whole_expression(word)
        if expr is not None:
            value = _evaluate(expr, word, namespace, label)
            if option in objects_for and not isinstance(value, str):
                out.append(f"{_OBJECT_MARK}{len(objects)}")
                objects.append(value)
            else:
                out.append(str(value))
        elif "$" in word or "{" in word or "}" in word:
            out.append(_format(word, namespace, label))
        else:
            out.append(word)
    return out, objects


def unmark(value: Any, objects: list[Any]) -> Any:
    """The object a marker of :func:`expand_words` stands for (anything else as it is)."""
    if isinstance(value, str) and value.startswith(_OBJECT_MARK):
        return objects[int(value[len(_OBJECT_MARK):])]
    return value


_CELL_HEAD = re.compile(r"%%kie4o(\s|$)")


def keep_empty_body(lines: list[str]) -> list[str]:
    """Input transformer: let a ``%%kie4o`` cell with no body reach the magic.

    IPython refuses a cell magic with an empty body before calling it ("did you mean the line
    magic?"), and ``%kie4o`` takes no prompt: a prompt written on the option line sent the
    user in circles. The magic then says where the prompt goes, or runs an edit that needs
    none (images only).
    """
    if lines and _CELL_HEAD.match(lines[0]) and not any(x.strip() for x in lines[1:]):
        return [lines[0].rstrip("\n") + "\n", "\n"]
    return lines


def check_out_name(name: str | None) -> str | None:
    """``-o NAME``: a Python name the result can be bound to (None: not given)."""
    if name is not None and (not name.isidentifier() or keyword.iskeyword(name)):
        raise UsageError(f"-o/--out: {name!r} is not a valid Python name")
    return name


def parse_cell(magic_func: Any, line: str, body: str,
               namespace: Mapping[str, Any], *, default_size: str,
               default_size_everywhere: bool = False,
               default_model: str = "4o") -> CellOptions:
    """Parse and check one ``%%kie4o`` cell; ``UsageError`` on any bad input.

    ``{a|b}`` groups in the body and comma lists in ``--model``, ``-s``, ``--resolution`` and
    ``--quality`` expand to every combination (a sweep): the engine's one plan
    (:func:`~kie_jupyter.engine.plan.make_plan`) builds and checks every request here,
    before anything is sent.
    """
    words, objects = expand_words(split_line(line, "%%kie4o"), namespace,
                                  where="%%kie4o option line", objects_for=OBJECT_OPTIONS)
    twice = optiontable.repeated_option(words)
    if twice:
        raise UsageError(optiontable.given_twice(twice))
    # The magic's own argparse parser (the one `%%kie4o?` documents), on words, not a string.
    args, extras = magic_func.parser.parse_known_args(words)
    if extras:
        if not body.strip() and not any(_is_flag(w) for w in extras):
            found = " ".join(extras)
            raise UsageError(f"%%kie4o: put the prompt on the lines below %%kie4o "
                             f"(found {found!r} on the option line)")
        raise UsageError(f"unrecognized arguments: {' '.join(extras)}")
    check_out_name(args.out)
    if args.callback is not None and not is_http_url(args.callback):
        raise UsageError(f"--callback: {args.callback!r} is not an http(s) URL")
    try:
        timeout = None if args.timeout is None else check_timeout(args.timeout, "--timeout")
        plan = make_plan(Wanted(
            body, model=args.model, size=args.size, resolution=args.resolution,
            quality=args.quality, seed=args.seed, negative=args.negative,
            variants=args.variants,
            images=[unmark(v, objects) for v in args.image],
            mask=None if args.mask is None else unmark(args.mask, objects),
            enhance=args.enhance, fallback=args.fallback is not None,
            fallback_model=args.fallback, callback_url=args.callback,
            output_format=args.output_format,
            params=dict(parse_param(p) for p in args.param) or None,
            default_model=default_model, default_size=default_size,
            default_size_everywhere=default_size_everywhere,
            fill=lambda prompt: fill_prompt(prompt, namespace)))
    except KieUsageError as exc:
        raise UsageError(with_hint(optiontable.name_the_flag(str(exc)),
                                   getattr(exc, "fix", None), "notebook")) from None
    return CellOptions(plan=plan, out=args.out, save=args.save, no_wait=args.no_wait,
                       timeout=timeout, dry_run=args.dry_run, yes=args.yes,
                       max_credits=args.max_credits)
