"""The pages' frame and the few helpers every page uses to write HTML safely.

Everything shown comes from Kafka records and Jaeger spans that any client could have written,
so every value goes through :func:`esc`; pages carry no inline script (the CSP forbids it),
and the one script, served from ``/static``, only polls a page's live part.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from urllib.parse import urlencode

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{background:#263238;padding:8px 16px}nav a{color:#eceff1;margin-right:18px;
text-decoration:none;font-weight:600}main{padding:12px 16px}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eceff1}
.num{text-align:right;font-variant-numeric:tabular-nums}
.s-completed{color:#2e7d32}.s-compensated{color:#ef6c00}.s-failed{color:#c62828;font-weight:700}
.s-compensating{color:#f9a825}.s-running{color:#1565c0}
form.filters label{margin-right:10px}pre{background:#f0f0f0;padding:6px;overflow:auto;
max-height:24em}.muted{color:#777}.bar{position:relative;height:14px;background:#eee;
min-width:420px}.bar span{position:absolute;height:14px;background:#5c6bc0;min-width:2px}
.bar span.tracker{background:#8e24aa}.bar span.error{background:#c62828}
.events{font-size:12px;color:#555}.warn{background:#fff3e0;padding:6px;border:1px solid #ffb74d}
button{padding:4px 10px}.diagram svg{max-width:100%;height:auto}
"""

SCRIPT = """
// Polls the element marked data-live: its HTML is fetched again every few seconds, bounded
// (stops after an hour, pauses while the tab is hidden), so the list follows sagas as they move.
(function () {
  const live = document.querySelector('[data-live]');
  if (!live) return;
  const every = 2000, until = Date.now() + 3600 * 1000;
  async function tick() {
    if (Date.now() > until) return;
    if (!document.hidden) {
      try {
        const answer = await fetch(live.dataset.live, {headers: {'X-Fragment': '1'}});
        if (answer.ok) live.innerHTML = await answer.text();
      } catch (e) { /* the console restarted: try again next tick */ }
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
})();
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def link(path: str, text: object, **query: object) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    href = f"{path}?{urlencode(params)}" if params else path
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """A table of cells that are already HTML (escape values before)."""
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><tr>{header}</tr>{body}</table>'


def page(title: str, body: str) -> str:
    nav = " ".join(
        f'<a href="{href}">{name}</a>'
        for href, name in (
            ("/", "Sagas"),
            ("/dlq", "Dead letters"),
            ("/topology", "Topology"),
        )
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{esc(title)} - choreo console</title>"
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        f"<body><nav>{nav}</nav><main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def hidden(name: str, value: object) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
