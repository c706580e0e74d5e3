"""`GET /docs`: the HTTP API reference, rendered here from the app's own OpenAPI document.

FastAPI's default /docs page loads Swagger UI from a CDN and is blank without a network; this page
is plain HTML built on the server, so it works offline. The machine-readable document stays at
/openapi.json for clients and code generators.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

STYLE = """
body{font-family:system-ui,sans-serif;max-width:900px;margin:1.5rem auto;padding:0 1rem}
h2{margin-top:2rem;border-bottom:1px solid #d0d5dc}
code,pre{background:#f3f4f6;border-radius:4px}pre{padding:.6rem;overflow:auto;font-size:.85rem}
.method{font-weight:700;color:#1f6feb}table{border-collapse:collapse}
td,th{border:1px solid #d0d5dc;padding:.25rem .5rem;text-align:left;vertical-align:top}
"""


def _schema_text(schema: dict[str, Any]) -> str:
    return escape(json.dumps(schema, indent=2))


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [
        f'<h3 id="{escape(operation.get("operationId", path))}"><span class="method">'
        f"{method.upper()}</span> <code>{escape(path)}</code></h3>",
        f"<p><b>{escape(operation.get('summary', ''))}</b></p>",
        f"<p>{escape(operation.get('description', '')).replace(chr(10) + chr(10), '</p><p>')}</p>",
    ]
    body = operation.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        parts.append(f"<p>Request body, <code>{escape(media)}</code>:</p>")
        parts.append(f"<pre>{_schema_text(content.get('schema', {}))}</pre>")
    rows = []
    for status, response in operation.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        ref = schema.get("$ref", "").rsplit("/", 1)[-1]
        link = f' <a href="#{escape(ref)}">{escape(ref)}</a>' if ref else ""
        rows.append(
            f"<tr><td>{escape(status)}</td>"
            f"<td>{escape(response.get('description', ''))}{link}</td></tr>"
        )
    if rows:
        parts.append("<table><tr><th>status</th><th>meaning</th></tr>" + "".join(rows) + "</table>")
    return "\n".join(parts)


def render(openapi: dict[str, Any]) -> str:
    info = openapi.get("info", {})
    sections = [
        _operation(path, method, operation)
        for path, methods in openapi.get("paths", {}).items()
        for method, operation in methods.items()
    ]
    schemas = [
        f'<h3 id="{escape(name)}">{escape(name)}</h3><pre>{_schema_text(schema)}</pre>'
        for name, schema in openapi.get("components", {}).get("schemas", {}).items()
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info.get('title', 'API'))} — HTTP API</title><style>{STYLE}</style>"
        f"</head><body><h1>{escape(info.get('title', 'API'))} {escape(info.get('version', ''))}"
        f"</h1><p>{escape(info.get('description', ''))}</p>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f'{escape(openapi.get("openapi", ""))}). Back to the <a href="/">drawing page</a>.</p>'
        "<h2>Endpoints</h2>"
        + "\n".join(sections)
        + "<h2>Schemas</h2>"
        + "\n".join(schemas)
        + "</body></html>"
    )


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    return HTMLResponse(render(request.app.openapi()))
