"""The OpenAPI document is valid and describes every endpoint."""
from __future__ import annotations

from openapi_spec_validator import validate


def test_openapi_document_is_valid(client) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    validate(spec)
    paths = spec["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/api/models", "/api/models/{model}",
                 "/api/models/{model}/versions", "/api/models/{model}/drift", "/api/models/{model}/performance",
                 "/api/models/{model}/status", "/api/models/{model}/segments", "/api/models/{model}/data-quality",
                 "/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/timeline",
                 "/api/alerts/events", "/api/retrain/jobs", "/api/stats", "/api/monitor"):
        assert "get" in paths[path], path
    for path in ("/api/models/{model}/promote", "/api/models/{model}/rollback", "/api/alerts/{alert_id}/resolve"):
        op = paths[path]["post"]
        assert op["security"] == [{"HTTPBearer": []}], path
        assert "401" in op["responses"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_no_external_docs_pages(client) -> None:
    # Swagger UI / ReDoc would load scripts from a CDN: left out, /openapi.json is the document
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
