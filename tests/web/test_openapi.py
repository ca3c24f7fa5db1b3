"""The OpenAPI document: valid OpenAPI 3.1, in step with the app's routes and with the spec's limits."""

from __future__ import annotations

import re

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from fractally.picture import spec as S
from fractally.errors import SpecError
from fractally.picture.spec import parse_spec
from functions.api.openapi import document

IGNORED_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def flask_to_openapi(rule: str) -> str:
    """``/v1/renders/<job_id>`` → ``/v1/renders/{id}`` (a job id is ``id`` in the document); other
    parameters keep their names (``/v1/tiles/<fractal>/<z>/<x>/<y>.png`` → ``…/{fractal}/{z}/{x}/{y}.png``)."""
    def name(match: re.Match) -> str:
        return "{id}" if match.group(1) == "job_id" else "{" + match.group(1) + "}"

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", name, rule)


def app_operations(app) -> set[tuple[str, str]]:
    return {
        (flask_to_openapi(rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - IGNORED_METHODS
    }


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def spec_schema_validator(doc: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(doc["components"]["schemas"]["RenderSpec"])


def test_document_is_valid_openapi_3_1():
    OpenAPIV31SpecValidator(document()).validate()


def test_served_document_is_the_one_built_in_code(api_client):
    assert api_client.get("/openapi.json").json == document()


def test_public_url_becomes_the_server():
    assert document("https://fractal.example/api/")["servers"] == [{"url": "https://fractal.example/api"}]


def test_every_route_of_the_app_is_documented(api_app):
    missing = app_operations(api_app) - documented_operations(document())
    assert not missing, f"routes without documentation: {sorted(missing)}"


def test_every_documented_operation_exists_in_the_app(api_app):
    extra = documented_operations(document()) - app_operations(api_app)
    assert not extra, f"documented but not served: {sorted(extra)}"


def test_every_reference_resolves():
    doc = document()
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_every_operation_has_an_id_and_a_success_response():
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            assert "operationId" in operation, (path, method)
            assert any(code.startswith(("2", "3")) for code in operation["responses"]), (path, method)


def test_every_error_response_is_the_json_error_shape():
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    if "$ref" in response:
                        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, code)


def test_spec_schema_limits_are_the_cores():
    props = document()["components"]["schemas"]["RenderSpec"]["properties"]
    assert props["width"]["maximum"] == props["height"]["maximum"] == S.MAX_SIDE
    assert props["max_iter"]["maximum"] == S.MAX_ITER
    assert (props["tile_size"]["minimum"], props["tile_size"]["maximum"]) == (S.MIN_TILE, S.MAX_TILE)
    scale_number = props["scale"]["oneOf"][0]  # a number, or a decimal string of any precision
    assert scale_number["maximum"] == S.MAX_COORD and scale_number["exclusiveMinimum"] == 0
    assert props["scale"]["oneOf"][1]["type"] == "string"
    assert props["escape_radius"]["maximum"] == S.MAX_ESCAPE_RADIUS
    assert props["c"]["items"]["oneOf"][0]["maximum"] == S.MAX_COORD
    assert props["precision"]["enum"][:-1] == list(S.PRECISIONS)  # the last is null (the default)
    assert props["precision"]["default"] == "float64"
    assert set(props) == set(S.FIELDS)


def test_spec_examples_are_valid_specs():
    doc = document()
    validator = spec_schema_validator(doc)
    for example in doc["components"]["schemas"]["RenderSpec"]["examples"]:
        validator.validate(example)
        parse_spec(example)


@pytest.mark.parametrize("spec", [
    {"c": [0, 0], "width": 0},
    {"c": [0, 0], "width": S.MAX_SIDE + 1},
    {"c": [0, 0], "max_iter": S.MAX_ITER + 1},
    {"c": [0, 0], "tile_size": S.MIN_TILE - 1},
    {"c": [0, 0], "scale": 0},
    {"c": [0, 0], "escape_radius": 1.5},
    {"c": [0, 0], "format": "jpeg"},
    {"c": [0, 0], "colormap": "rainbow"},
    {"c": [0, 0], "precision": "float16"},
    {"c": [0, 0], "zoom": 2},
    {"c": [S.MAX_COORD * 2, 0]},
    {"c": [0]},
    {"fractal": "julia"},
    {"c": [0, 0], "width": True},
], ids=lambda spec: ",".join(f"{k}={v}" for k, v in spec.items()))
def test_schema_and_parse_spec_reject_the_same_single_field_errors(spec):
    with pytest.raises(jsonschema.ValidationError):
        spec_schema_validator(document()).validate(spec)
    with pytest.raises(SpecError):
        parse_spec(spec)


def test_schema_accepts_a_mandelbrot_without_c():
    spec = {"fractal": "mandelbrot", "center": [-0.5, 0], "scale": 3}
    spec_schema_validator(document()).validate(spec)
    parse_spec(spec)
