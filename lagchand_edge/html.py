"""The HTML reports, rendered from jinja2 templates (`lagchand_edge/templates/`): autoescaped, with
every image embedded, so a page stands alone (mail it, attach it to a CI run)."""

from __future__ import annotations

import base64
import functools
import re
from pathlib import Path

_CODE = re.compile(r"`([^`]+)`")


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _code(text: str):
    """Text with Markdown's `code` spans as <code> (the same lines serve the Markdown report)."""
    from markupsafe import Markup, escape

    return Markup(_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


@functools.cache
def _environment():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("lagchand_edge", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters |= {"png": _png, "code": _code}
    return environment


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)
