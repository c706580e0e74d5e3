"""`GET /docs`: the HTTP API reference, rendered here from the app's own OpenAPI document.

FastAPI's default /docs page loads Swagger UI from a CDN and is blank without a network; this page
is plain HTML built on the server, so it works offline and under the same Content-Security-Policy
as the drawing page (its style is a file in /static, nothing inline). Descriptions are Markdown,
as OpenAPI defines them, and are rendered as such; every schema is a table of its fields whose
types link to the schemas they name. The machine-readable document stays at /openapi.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from html import escape
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from pydantic import BaseModel

from digits.serve import schemas as api_schemas
from digits.serve.routes.page import CONTENT_SECURITY_POLICY

router = APIRouter(include_in_schema=False)
REF_PREFIX = "#/components/schemas/"
HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete", "options")
# CommonMark without raw HTML: a description can format text but never inject markup, and
# markdown-it refuses javascript: links by itself. (markdown-it-py comes with rich, a base
# dependency of the package.)
MARKDOWN = MarkdownIt("commonmark", {"html": False})


# --- the OpenAPI document ----------------------------------------------------------------------


def _refs(value: Any) -> Iterator[str]:
    """Every schema name that `value` refers to with `$ref`, at any depth."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            yield ref[len(REF_PREFIX) :]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _add_referenced_models(document: dict[str, Any]) -> None:
    """Put into `components` the API models that a `$ref` names but FastAPI left out.

    FastAPI collects the models of parameters and responses only; a request body documented by
    hand (`openapi_extra`, as the routes that take both multipart and JSON do) names its model by
    `$ref`, which would otherwise point at nothing."""
    found = document.setdefault("components", {}).setdefault("schemas", {})
    missing = [name for name in _refs(document) if name not in found]
    while missing:
        name = missing.pop()
        model = getattr(api_schemas, name, None)
        if name in found or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
        for inner_name, inner in schema.pop("$defs", {}).items():
            found.setdefault(inner_name, inner)
        found[name] = schema
        missing.extend(ref for ref in _refs(schema) if ref not in found)
    document["components"]["schemas"] = dict(sorted(found.items()))  # as FastAPI orders them


def complete_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and this page) hold every schema it refers to."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()  # FastAPI caches it; the models are added to the cached copy once
        if fresh:
            _add_referenced_models(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# --- rendering ---------------------------------------------------------------------------------


def _markdown(text: str | None) -> str:
    return MARKDOWN.render(text) if text else ""


def _inline(text: str | None) -> str:
    return MARKDOWN.renderInline(text) if text else ""


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else escape(str(value))


def _range(low: Any, high: Any, unit: str = "") -> str:
    """`low`–`high` as a person writes it; either end may be missing."""
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        if low == high:
            return f"exactly {_number(low)}{unit}"
        return f"{_number(low)}–{_number(high)}{unit}"
    if low is not None:
        return f"at least {_number(low)}{unit}"
    if high is not None:
        return f"at most {_number(high)}{unit}"
    return ""


def schema_type(schema: dict[str, Any]) -> str:
    """A schema's type as HTML: a named schema becomes a link to its table, alternatives read
    "X or null", arrays "array of X", with bounds and formats in words."""
    if "$ref" in schema:
        name = escape(str(schema["$ref"]).rsplit("/", 1)[-1])
        return f'<a href="#{name}"><code>{name}</code></a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(schema_type(option) for option in schema[key])
    if "allOf" in schema:
        return " and ".join(schema_type(part) for part in schema["allOf"])
    if "enum" in schema:
        values = ", ".join(f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"])
        return f"one of {values}"
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(schema_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        items = schema_type(schema.get("items", {}))
        count = _range(schema.get("minItems"), schema.get("maxItems"), "items")
        return f"array of {items}" + (f" ({count})" if count else "")
    details = [
        escape(str(schema.get("format", ""))),
        _range(schema.get("minimum"), schema.get("maximum")),
        _range(schema.get("minLength"), schema.get("maxLength"), "characters"),
    ]
    extra = ", ".join(part for part in details if part)
    return escape(str(kind)) + (f" ({extra})" if extra else "")


def _fields_table(schema: dict[str, Any]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return f"<p>{schema_type(schema)}</p>"
    required = set(schema.get("required", []))
    rows = []
    for name, field in properties.items():
        notes = [_inline(field.get("description"))]
        if "default" in field and name not in required:
            notes.append(f"Default: <code>{escape(json.dumps(field['default']))}</code>.")
        for example in field.get("examples", [])[:1]:
            notes.append(f"Example: <code>{escape(json.dumps(example))}</code>.")
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{schema_type(field)}</td>"
            f"<td>{'yes' if name in required else 'no'}</td>"
            f"<td>{' '.join(note for note in notes if note)}</td></tr>"
        )
    return (
        '<table class="fields"><thead><tr><th>field</th><th>type</th><th>required</th>'
        "<th>description</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _operation_id(path: str, method: str, operation: dict[str, Any]) -> str:
    return str(operation.get("operationId") or f"{method}-{path}")


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [
        f'<section class="operation"><h3 id="{escape(_operation_id(path, method, operation))}">'
        f'<span class="method">{method.upper()}</span> <code>{escape(path)}</code></h3>',
    ]
    if operation.get("summary"):
        parts.append(f'<p class="summary">{_inline(operation["summary"])}</p>')
    parts.append(_markdown(operation.get("description")))
    parameters = operation.get("parameters", [])
    if parameters:
        parameter_rows = "".join(
            f"<tr><td><code>{escape(p.get('name', ''))}</code></td><td>{escape(p.get('in', ''))}"
            f"</td><td>{schema_type(p.get('schema', {}))}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td>{_inline(p.get('description'))}</td></tr>"
            for p in parameters
        )
        parts.append(
            "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th>"
            f"<th>required</th><th>description</th></tr></thead><tbody>{parameter_rows}</tbody>"
            "</table>"
        )
    body = operation.get("requestBody", {})
    if body.get("content"):
        parts.append("<h4>Request body</h4>")
        parts.append(_markdown(body.get("description")))
        for media, content in body["content"].items():
            schema = content.get("schema", {})
            if "$ref" in schema:
                parts.append(f"<p><code>{escape(media)}</code>: {schema_type(schema)}</p>")
            else:
                parts.append(f"<p><code>{escape(media)}</code>:</p>{_fields_table(schema)}")
    rows = []
    for status, response in operation.get("responses", {}).items():
        media = response.get("content", {})
        bodies = " or ".join(
            schema_type(content["schema"]) for content in media.values() if "schema" in content
        )
        rows.append(
            f"<tr><td>{escape(str(status))}</td><td>{_inline(response.get('description'))}</td>"
            f"<td>{bodies or '—'}</td></tr>"
        )
    if rows:
        parts.append(
            "<h4>Responses</h4><table><thead><tr><th>status</th><th>meaning</th><th>body</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _schema(name: str, schema: dict[str, Any]) -> str:
    return (
        f'<section class="schema"><h3 id="{escape(name)}"><code>{escape(name)}</code></h3>'
        f"{_markdown(schema.get('description'))}{_fields_table(schema)}</section>"
    )


def render(openapi: dict[str, Any]) -> str:
    info = openapi.get("info", {})
    title = escape(str(info.get("title", "API")))
    operations = [
        (path, method, operation)
        for path, methods in openapi.get("paths", {}).items()
        for method, operation in methods.items()
        if method in HTTP_METHODS
    ]
    components: dict[str, Any] = openapi.get("components", {}).get("schemas", {})
    contents = "".join(
        f'<li><a href="#{escape(_operation_id(path, method, operation))}">'
        f"<code>{method.upper()} {escape(path)}</code></a> {_inline(operation.get('summary'))}</li>"
        for path, method, operation in operations
    )
    schema_links = ", ".join(
        f'<a href="#{escape(name)}"><code>{escape(name)}</code></a>' for name in components
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{title} — HTTP API</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/docs.css"></head><body>'
        f"<header><h1>{title} {escape(str(info.get('version', '')))}</h1>"
        f"{_markdown(info.get('description'))}"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{escape(str(openapi.get('openapi', '')))}). Back to the "
        '<a href="/">drawing page</a>.</p></header><main>'
        f'<nav aria-label="Contents"><h2>Contents</h2><ul>{contents}</ul>'
        f"<p>Schemas: {schema_links}</p></nav>"
        "<h2>Endpoints</h2>"
        + "\n".join(_operation(*item) for item in operations)
        + "<h2>Schemas</h2>"
        + "\n".join(_schema(name, schema) for name, schema in components.items())
        + "</main></body></html>"
    )


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    return HTMLResponse(
        render(request.app.openapi()),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )
