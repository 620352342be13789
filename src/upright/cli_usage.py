"""How the command line talks when someone asks it for help or gets something wrong.

- `--help` in click's plain layout: Rich's boxed tables broke sentences into a narrow column at
  80 columns and showed `<bool>` beside every flag. Words never break at a hyphen
  (`efficientnet-lite0`, `--ray-address`), arguments read in capitals (`DATA`, `MODEL`) in the
  usage line, the help and the errors, and each verb ends with its EXAMPLES.
- A usage error is ONE line with a "did you mean" where one is close: a mistyped option, verb
  or choice (`--format onx`).
- Hints for the commonest mix-ups: MODEL and DATA swapped, a class folder given as DATA
  (pipeline.scan.scan says that one).

The app uses these through `Typer` below, so a verb added with `@app.command()` gets all of it.
"""

from __future__ import annotations

import re
import sys
import textwrap
from difflib import get_close_matches
from enum import Enum
from pathlib import Path

import typer
from typer import _click as click  # typer >= 0.29 vendors click: its exceptions and formatter
from typer._click import exceptions as cx
from typer.core import TyperCommand, TyperGroup

from .errors import UprightError
from .modelfile import META_FILE

PROG = "upright"

#: Two or three runs of each verb, shown at the end of its --help ("" is `upright --help`).
#: tests/test_cli.py parses every line with the verb's own options, so they cannot go stale.
EXAMPLES: dict[str, list[str]] = {
    "": ["upright demo  # the whole story, offline",
         "upright audit photos/ --report audit.html",
         "upright train photos/ -o model/ && upright eval model/ photos/"],
    "audit": ["upright audit photos/",
              "upright audit photos/ --report audit.html --fail-on error",
              "upright audit photos/ --metadata-only --json  # headers only: seconds"],
    "fix": ["upright fix photos/ --dry-run  # say what would change",
            "upright fix photos/ --out photos-upright/",
            "upright fix photos/ --in-place  # later: --undo"],
    "train": ["upright train photos/ -o model/",
              "upright train photos/ -o model/ --preset accurate --force",
              "upright train photos/ -o model/ --augment d4  # no natural up"],
    "embed": ["upright embed photos/ -o embeddings/",
              "upright embed photos/ -o embeddings/ --augment none --device cpu"],
    "predict": ["upright predict model/ IMG_0042.jpg",
                "upright predict model/ inbox/ --top-k 3 --csv predictions.csv",
                "upright predict model/ inbox/ --json > predictions.jsonl"],
    "eval": ["upright eval model/ photos/  # scores photos/test/",
             "upright eval model/ photos/ --report eval.html --csv eval.csv",
             "upright eval --onnx net.onnx photos/ --labels cat,dog --std 255"],
    "serve": ["upright serve model/  # http://127.0.0.1:8000",
              "upright serve model/ --lan  # on your phone"],
    "studio": ["upright studio cans/  # http://127.0.0.1:8000 (cans/ made if missing)",
               "upright studio cans/ --lan  # the team's phones: scan the QR code",
               "upright studio cans/ --port 8001 --quota-gb 10"],
    "export": ["upright export model/  # model/model.onnx",
               "upright export model/ --preprocess -o upright.onnx",
               "upright export model/ --format tflite"],
    "demo": ["upright demo",
             "upright demo --out demo/ --json"],
}


# -- help --------------------------------------------------------------------------------
NBSP = "\xa0"  # textwrap breaks at ASCII whitespace only
_GLUED = re.compile(r"(?<=[\w,]) (?=\d)"  # "exit 2", "under 2 minutes", "[1, 3, 224, 224]"
                    r"|(?<=\[)(?:default|required)[^\]]*\]"  # "[default: fast]"
                    r"|\bupright [a-z]+(?: (?:--?[a-z][a-z-]*|[A-Z][A-Z_]+))+")  # "upright fix DATA --undo"


def _glue(text: str) -> str:
    """Spaces no line may break at: before a number, inside a bracketed note, inside a command."""
    return _GLUED.sub(lambda m: m.group(0).replace(" ", NBSP), text)


def wrap(text: str, width: int, indent: str = "") -> str:
    """Fill each paragraph (blank-line separated) to `width`, breaking only at spaces: never in a
    word, never at a hyphen, never before a number or inside [brackets]. A paragraph that starts
    with \\b is kept line for line."""
    out = []
    for para in text.split("\n\n"):
        if para.startswith("\b"):
            out.append("\n".join(indent + line for line in para.strip("\b\n").splitlines()))
        elif para.strip():
            filled = textwrap.fill(_glue(re.sub(r"[ \t\n]+", " ", para.strip())), width, initial_indent=indent,
                                   subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)
            out.append(filled.replace(NBSP, " "))
    return "\n\n".join(out)


class HelpLayout(click.HelpFormatter):
    """click's layout with `wrap` for every paragraph and definition."""

    def write_text(self, text: str) -> None:
        self.write(wrap(text, self.width, " " * self.current_indent) + "\n")

    def write_dl(self, rows, col_max: int = 26, col_spacing: int = 2) -> None:
        rows = list(rows)
        first = min(max((len(term) for term, _ in rows), default=0), col_max) + col_spacing
        left = " " * (self.current_indent + first)
        for term, text in rows:
            head = " " * self.current_indent + term
            body = wrap(text, max(self.width - len(left), 20)).splitlines() if text else []
            if not body:
                self.write(head + "\n")
            elif len(term) <= first - col_spacing:
                self.write(head.ljust(len(left)) + body[0] + "\n" + "".join(left + line + "\n" for line in body[1:]))
            else:  # a long term: its text starts on the next line
                self.write(head + "\n" + "".join(left + line + "\n" for line in body))


class HelpContext(click.Context):
    formatter_class = HelpLayout


def arg_name(param) -> str:
    """DATA, [MODEL], IMAGES...: an argument as the usage line and the errors show it."""
    name = param.metavar or param.name.upper()
    name = name if param.required else f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


def first_sentence(text: str) -> str:
    para = " ".join(text.strip().split("\n\n", 1)[0].split())
    return para.split(". ", 1)[0].rstrip(".") + "."


def _examples(formatter, lines) -> None:
    """The Examples block: one command a line, their # comments in one column."""
    runs = [[part.strip() for part in line.split("#", 1)] for line in lines]
    column = max((len(r[0]) for r in runs if len(r) > 1), default=0) + 2
    if runs:
        with formatter.section("Examples"):
            for r in runs:
                text = r[0].ljust(column) + "# " + r[1] if len(r) > 1 else r[0]
                formatter.write(" " * formatter.current_indent + text + "\n")


class Command(TyperCommand):
    """A verb: arguments in capitals, plain help, its EXAMPLES at the end."""

    context_class = HelpContext

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            if p.param_type_name == "argument" and p.metavar is None:
                p.metavar = p.name.upper()  # "Missing argument 'DATA'", not 'data'

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            pieces += [arg_name(p)] if p.param_type_name == "argument" else p.get_usage_pieces(ctx)
        return pieces

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record is None:
                continue
            if p.param_type_name == "argument":
                args.append((p.metavar + ("..." if p.nargs != 1 else ""), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        super().format_epilog(ctx, formatter)
        _examples(formatter, EXAMPLES.get(self.name, []))


class Group(TyperGroup):
    """`upright`: one-line usage errors with a "did you mean" (see `main`)."""

    context_class = HelpContext

    def format_commands(self, ctx, formatter) -> None:
        """Each verb with the first sentence of its help, whole (click cut them at 45 characters)."""
        rows = [(name, first_sentence(cmd.help or "")) for name, cmd in self.commands.items() if not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        super().format_epilog(ctx, formatter)
        _examples(formatter, EXAMPLES.get("", []))

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            raise cx.UsageError(f"no such command '{name}'" + _suggest(name, list(self.commands), "'{}'"), ctx)
        return super().resolve_command(ctx, args)

    def main(self, args=None, prog_name=None, **extra):
        """Run without click's standalone handling, so that a usage error is one line, then exit."""
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **extra)
        except cx.NoArgsIsHelpError as exc:  # `upright` alone: the help, as before
            exc.show()
            sys.exit(exc.exit_code)
        except cx.ClickException as exc:
            typer.echo(f"{PROG}: error: {one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo(f"{PROG}: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class Typer(typer.Typer):
    """typer.Typer whose verbs are `Command`s (the plain help, capitals, examples)."""

    def command(self, name=None, *, cls=None, **kwargs):
        return super().command(name, cls=cls or Command, **kwargs)


# -- one-line usage errors ------------------------------------------------------------------
def _suggest(word: str, known, quote: str = "{}") -> str:
    """'; did you mean X?' for the closest of `known`, else the list of them."""
    known = list(known)
    close = get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return "; did you mean " + quote.format(close[0]) + "?"
    return " (choose from " + ", ".join(known) + ")" if len(known) <= 12 else ""


def _given(exc) -> object | None:
    """The value typed for a parameter that failed to convert (typer keeps pydantic's error)."""
    errors = getattr(exc.__cause__, "errors", None)
    try:
        return errors()[0]["input"] if callable(errors) else None
    except (IndexError, KeyError, TypeError):
        return None


def _choices(param) -> list[str]:
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None) or ()
    return [c.value if isinstance(c, Enum) else str(c) for c in choices]


def _usage(exc) -> str:
    ctx = getattr(exc, "ctx", None)
    return ctx.get_usage().replace("Usage: ", "usage: ", 1) if ctx is not None else f"{PROG} --help"


def one_line(exc: cx.ClickException) -> str:
    """A usage error in one line: what was wrong, then what was probably meant."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else PROG
    if isinstance(exc, cx.NoSuchOption):
        hint = ("; did you mean " + " or ".join(sorted(exc.possibilities)) + "?" if exc.possibilities
                else f" (see {where} --help)")
        return f"no such option {exc.option_name}{hint}"
    if isinstance(exc, cx.MissingParameter) and exc.param is not None:
        p = exc.param
        name = arg_name(p).strip("[].") if p.param_type_name == "argument" else "/".join(p.opts)
        return f"missing {p.param_type_name} {name} ({_usage(exc)})"
    if isinstance(exc, cx.BadParameter) and exc.param is not None:
        p = exc.param
        name = arg_name(p).strip("[].") if p.param_type_name == "argument" else "/".join(p.opts)
        given, choices = _given(exc), _choices(p)
        if choices and given is not None:
            return f"{name} '{given}' is not a choice" + _suggest(str(given), choices)
        said = " ".join(exc.message.split())
        said = said[:1].lower() + said[1:]
        return f"{name} '{given}': {said}" if given is not None else f"{name}: {said}"
    return " ".join(exc.format_message().split())


# -- hints for mix-ups the parser cannot see --------------------------------------------------

def check_model_first(verb: str, model: Path, others) -> None:
    """MODEL is not a model folder but one of `others` is: they were swapped; say the right order."""
    if (Path(model) / META_FILE).is_file():
        return
    swapped = [o for o in others if (Path(o) / META_FILE).is_file()]
    if swapped:
        rest = " ".join(str(o) for o in others if o != swapped[0])
        raise UprightError(f"{model} is not a model folder but {swapped[0]} is: the model comes first; "
                           f"did you mean `{PROG} {verb} {swapped[0]} {model}{' ' + rest if rest else ''}`?")
    suffix = Path(model).suffix.lower()
    if verb == "eval" and suffix in (".onnx", ".tflite") and Path(model).is_file():
        raise UprightError(f"{model} is a {suffix[1:].upper()} file, not a model folder: "
                           f"`{PROG} eval --{suffix[1:]} {model} DATA`")
