"""docs/openapi.yaml describes exactly the routes the router knows: every
(method, pattern) of `sofaasd --print-routes` is in the file and every
operation in the file is a route."""
import os
import subprocess

import yaml

from conftest import SOFAASD, SOURCE

METHODS = ["get", "put", "post", "delete", "patch", "head", "options"]


def router_routes():
    out = subprocess.run([SOFAASD, "--print-routes"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    routes = set()
    for line in out.splitlines():
        method, pattern = line.split(" ", 1)
        # "*" is any method: the file must list them all
        for m in (METHODS if method == "*" else [method.lower()]):
            routes.add((m, pattern))
    return routes


def openapi_routes():
    with open(os.path.join(SOURCE, "docs", "openapi.yaml")) as f:
        doc = yaml.safe_load(f)
    assert doc["openapi"].startswith("3.")
    routes = set()
    for path, item in doc["paths"].items():
        pattern = item.get("x-sofaas-route", path)
        for m in METHODS:
            if m in item:
                routes.add((m, pattern))
    return routes


def test_router_and_openapi_agree():
    r = router_routes()
    o = openapi_routes()
    assert r, "sofaasd --print-routes printed nothing"
    assert r - o == set(), "routes missing from docs/openapi.yaml"
    assert o - r == set(), "operations in docs/openapi.yaml the router lacks"


def test_api_md_mentions_every_route():
    with open(os.path.join(SOURCE, "docs", "api.md")) as f:
        text = f.read()
    for _, pattern in router_routes():
        shown = pattern.replace("{path...}", "")
        assert shown in text, pattern
