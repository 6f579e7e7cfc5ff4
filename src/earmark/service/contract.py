"""The API's answers and its OpenAPI schema agree: one error shape, true Allow headers, forms.

* Every error body is ``{"detail": "<text>"}`` (:class:`Problem`); request validation errors
  are turned into one readable sentence (``files: field required; threshold: ...``) and keep
  the structured list under ``errors``. The schema says so for every 422.
* A 405 lists in ``Allow`` every method any route of that path accepts (Starlette lists only
  the first route's).
* ``/docs`` loads Swagger UI of one pinned version with subresource integrity, so a changed
  or compromised CDN file is refused by the browser; its start script is served locally.
* Form fields cannot carry a JSON ``null`` (an absent field is ``None``): the schema of a form
  body says so, so that clients and fuzzers do not send the text ``"null"`` as a value.
"""

from __future__ import annotations

import html
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.routing import Match
from starlette.types import Scope

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
"""Swagger UI for ``/docs``: one exact version, each file checked by the browser (integrity)."""
SWAGGER_INTEGRITY = {
    "swagger-ui-bundle.js": "sha384-"
    "gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
    "swagger-ui.css": "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
}
"""Subresource-integrity hashes of the pinned files (sha384 of the npm package's files)."""
VALIDATION = {
    "description": "invalid request: ``detail`` names each field and what is wrong",
}


def describe(errors: list[dict[str, Any]]) -> str:
    """One sentence for a list of validation errors."""
    parts = []
    for error in errors:
        where = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        parts.append(f"{'.'.join(where) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _strip_null(schema: Any) -> Any:
    """``anyOf: [X, {type: null}]`` -> ``X`` (recursively): a form value is never null."""
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list):
            kept = [o for o in options if o != {"type": "null"}]
            if len(kept) < len(options):
                rest = {k: v for k, v in schema.items() if k != "anyOf"}
                merged = {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}
                return _strip_null(merged)
        return {k: _strip_null(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_strip_null(v) for v in schema]
    return schema


def app_routes(app: FastAPI) -> list[Any]:
    """The app's routes, with those of its included routers: newer FastAPI keeps an included
    router as one route, which ``fastapi.routing.iter_route_contexts`` opens; older versions
    copied the router's routes into the app."""
    opened = getattr(fastapi.routing, "iter_route_contexts", None)
    if opened is None:
        return list(app.router.routes)
    return list(opened(app.router.routes))


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of this path accepts."""
    methods: set[str] = set()
    for route in app_routes(app):
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def docs_page(title: str) -> str:
    """``/docs``: Swagger UI pinned by version and integrity; its start script is local."""
    css, js = (
        f'{SWAGGER_UI}/{name}" integrity="{SWAGGER_INTEGRITY[name]}" crossorigin="anonymous'
        for name in ("swagger-ui.css", "swagger-ui-bundle.js")
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} API</title>"
        f'<link rel="stylesheet" href="{css}"></head>'
        '<body><div id="swagger-ui"></div>'
        f'<script src="{js}"></script><script src="/static/docs.js"></script></body></html>'
    )


def install(app: FastAPI, problem_schema: dict[str, Any]) -> None:
    """Apply the three rules above to ``app`` (``problem_schema``: the Problem model's ref)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": describe(errors), "errors": errors}, status_code=422)

    @app.middleware("http")
    async def allow_header(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if response.status_code == 405:
            methods = allowed_methods(app, request.scope)
            if methods:
                response.headers["Allow"] = ", ".join(methods)
        return response

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in list(components.items()):
            if name.startswith("Body_"):  # the form bodies FastAPI generates
                components[name] = _strip_null(body)
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"] = {
                        **VALIDATION,
                        "content": {"application/json": {"schema": problem_schema}},
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.title))
