"""Click's usage errors, of the group and of every command, as one-line refusals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

import typer

# typer 0.26 runs its own copy of click: its usage errors are this copy's classes, not click's.
from typer._click.core import Context as ClickContext
from typer._click.exceptions import NoArgsIsHelpError
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup

from pipeline.cli.output import refusal, stderr
from pipeline.cli.plain import plain


def click_problem(error: ClickUsageError) -> str:
    """What click refused, worded as the project's refusals are (lower case, no final stop),
    with click's guess at what was meant kept as `(did you mean ...?)`."""
    options = getattr(error, "possibilities", None)  # only NoSuchOption has them
    # format_message adds the option's name to a bad value; typer adds its guess at a command.
    text = error.message if options else error.format_message()
    message, _, guess = text.rstrip(".").partition(". Did you mean ")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    if options:
        guess = " or ".join(sorted(options))
    return f"{message} (did you mean {guess.rstrip('?')}?)" if guess else message


class OneLineUsageError(ClickUsageError):
    """A usage error click found, shown as one `error: ...; see COMMAND --help` line instead of
    click's usage block, so that a CI log reads it like every other refusal of the command."""

    def __init__(self, problem: ClickUsageError, command: str) -> None:
        super().__init__(click_problem(problem), problem.ctx)
        self.command = command

    def show(self, file: IO[Any] | None = None) -> None:
        line = f"{self.message}; see {self.command} --help"
        if file is None:
            stderr().print(refusal(line))
        else:
            typer.echo(f"error: {plain(line)}", file=file)


def refused_command(problem: ClickUsageError, group: ClickContext | None) -> str:
    """The command whose help answers `problem`. An option that lacks its value is refused
    before the command's context exists: it is then the subcommand the group was running."""
    if problem.ctx is not None:
        return problem.ctx.command_path
    if group is None:
        return "usercom"
    running = group.invoked_subcommand
    return f"{group.command_path} {running}" if running else group.command_path


@contextlib.contextmanager
def one_line_usage_errors(group: ClickContext | None) -> Iterator[None]:
    try:
        yield
    except (OneLineUsageError, NoArgsIsHelpError):
        raise  # already one line, or a help page that is meant to be shown whole
    except ClickUsageError as problem:
        raise OneLineUsageError(problem, refused_command(problem, group)) from None


class UsercomGroup(TyperGroup):
    """The `usercom` group: click's usage errors, of the group and of every command it runs
    (their options are parsed inside `invoke`), become one-line refusals."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: ClickContext | None = None,
        **extra: Any,
    ) -> ClickContext:
        with one_line_usage_errors(parent):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: ClickContext) -> Any:
        with one_line_usage_errors(ctx):
            return super().invoke(ctx)
