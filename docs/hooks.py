"""MkDocs hook: Sphinx roles in docstrings (``:class:`~skllm.X` ``) read as plain code.

mkdocstrings renders the role's target as inline code and leaves the role name in
front of it; this drops the role name and the ``~`` (which in Sphinx means "show the
last component only").
"""

import re

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|obj|exc|data):<code>(~?)([\w.]+)</code>")


def _plain(match):
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html, **kwargs):
    return _ROLE.sub(_plain, html)
