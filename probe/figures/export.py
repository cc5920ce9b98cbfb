"""Write figures to .html (self-contained, offline), .png, .svg and .pdf, atomically.

Static images go through kaleido 1.x, which drives an installed Chrome or
Chromium (Debian: `apt-get install chromium`). Several images are rendered in
one browser session (`write_figures`), which is much faster than one by one.
plotly.js comes from the installed plotly package and MathJax is off, so no
network is needed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go

from probe.errors import ProbeError
from probe.files import fsync_file

IMAGE_FORMATS = ("png", "svg", "pdf")
FORMATS = ("html",) + IMAGE_FORMATS
_CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chrome() -> str:
    """Path of a Chrome/Chromium for kaleido: $BROWSER_PATH, else the first on PATH; ProbeError if none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        raise ProbeError(f"BROWSER_PATH={env} is not an executable browser; "
                         "install chromium: apt-get install chromium")
    for name in _CHROME_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise ProbeError("static export (.png, .svg, .pdf) needs Chrome or Chromium and none was found; "
                     "install chromium: apt-get install chromium (or write .html)")


def format_of(path: str | Path) -> str:
    """The export format named by a file's extension; ProbeError naming the supported ones otherwise."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise ProbeError(f"cannot write {Path(path).name!r}: unsupported format "
                         f"{'.' + ext if ext else '(no extension)'}; use one of "
                         f"{', '.join('.' + f for f in FORMATS)}")
    return ext


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _check_folder(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ProbeError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProbeError(f"cannot write {path}: folder {folder} is not writable")


def figure_html(fig: go.Figure, *, full_html: bool = True, include_plotlyjs: bool | str = True,
                div_id: str | None = None) -> str:
    """HTML of a figure; with the defaults a whole page with plotly.js inlined (works offline)."""
    return fig.to_html(full_html=full_html, include_plotlyjs=include_plotlyjs, div_id=div_id,
                       config={"displaylogo": False, "responsive": False})


def write_figures(items: list[tuple[go.Figure, str | Path]], *, scale: float = 2.0) -> list[Path]:
    """Write each (figure, path); the format follows each path's extension. Atomic per file.

    Images are rendered in one kaleido session. Nothing is left half-written:
    each file is written under a temporary name and renamed when whole.
    """
    paths = [Path(p) for _, p in items]
    fmts = [format_of(p) for p in paths]
    for p in paths:
        _check_folder(p)
    images = [(fig, p, f) for (fig, _), p, f in zip(items, paths, fmts) if f in IMAGE_FORMATS]
    temps: list[Path] = []
    try:
        for (fig, _), p, f in zip(items, paths, fmts):
            if f == "html":
                tmp = _temp_name(p)
                temps.append(tmp)
                try:
                    tmp.write_text(figure_html(fig), encoding="utf-8")
                except OSError as e:
                    raise ProbeError(f"cannot write {p}: {e.strerror}") from None
        if images:
            _render_images([(fig, _temp_name(p), f) for fig, p, f in images], scale)
            temps += [_temp_name(p) for _, p, _ in images]
        for tmp, p in zip(temps, [p for p, f in zip(paths, fmts) if f == "html"] + [p for _, p, _ in images]):
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise ProbeError(f"cannot write {p}: the {tmp.suffix} export produced nothing there")
        for p in paths:
            fsync_file(_temp_name(p))  # whole on the disk before the rename
            os.replace(_temp_name(p), p)
    finally:
        for p in paths:
            _temp_name(p).unlink(missing_ok=True)
    return paths


def write_figure(fig: go.Figure, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write one figure (.html, .png, .svg or .pdf by extension)."""
    return write_figures([(fig, path)], scale=scale)[0]


def _render_images(items: list[tuple[go.Figure, Path, str]], scale: float) -> None:
    chrome = find_chrome()
    import kaleido
    specs = []
    for fig, path, fmt in items:
        lay = fig.layout
        specs.append(dict(fig=fig.to_plotly_json(), path=path,
                          opts=dict(format=fmt, width=lay.width or 900, height=lay.height or 520, scale=scale)))
    try:
        kaleido.write_fig_from_object_sync(specs, kopts={"mathjax": False, "path": chrome})
    except ProbeError:
        raise
    except Exception as e:  # kaleido/choreographer raise many types; the user needs one line
        name = type(e).__name__
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        if "Chrome" in name or "Browser" in name or "chrome" in msg.lower():
            raise ProbeError(f"static export failed to start {chrome}: {msg or name}; "
                             "install chromium: apt-get install chromium") from None
        raise ProbeError(f"static export failed ({name}: {msg})") from None
