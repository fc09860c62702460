"""One Jinja environment for prompts (StrictUndefined): an undefined variable is an error
naming the template and line, never an empty string in a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipe_flow.checks.base import pct
from mlpipe_flow.errors import ConfigError


def environment(prompts_dir: Path) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(prompts_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # prompts are markdown for an agent, not HTML  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # numbers from the gates, written the way the rules write them: {{ x | num }} -> 0.05, 1,000
    env.filters["num"] = lambda v: f"{v:,g}"
    env.filters["pct"] = pct
    return env


def render(prompts_dir: Path, name: str, context: dict[str, Any]) -> str:
    import jinja2

    env = environment(prompts_dir)
    try:
        return str(env.get_template(name).render(**context))
    except jinja2.TemplateNotFound as e:
        raise ConfigError(f"{prompts_dir / name}: template {e.name} not found") from None
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{e.filename or prompts_dir / name}:{e.lineno}: template syntax error: "
                          f"{e.message}") from None
    except jinja2.UndefinedError as e:
        raise ConfigError(f"{_where(e, prompts_dir / name)}: {e.message}; variables available: "
                          f"{', '.join(sorted(context))}") from None


def _where(err: BaseException, default: Path) -> str:
    """The template file and line the error was raised from, read off the traceback."""
    tb = err.__traceback__
    where = str(default)
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        if filename.endswith(".j2") or "/prompts/" in filename:
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
