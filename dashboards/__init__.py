"""The probe dashboard (Dash): `create_app(recording, checkpoint=None)` and `main()` in dashboards.app."""
from __future__ import annotations


def create_app(recording, checkpoint=None, **kw):
    """A Dash app over a recording; see dashboards.app.create_app."""
    from dashboards.app import create_app as _create
    return _create(recording, checkpoint, **kw)


__all__ = ["create_app"]
