"""Baseline for the throughput benchmark: the smallest Flask route serving the same bytes.

The body is read once at start from ``BENCH_BODY_FILE``, so this measures Flask and
gunicorn alone; the API is judged by how close it gets to this.
"""

import os
from pathlib import Path

from flask import Flask, Response

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()

app = Flask(__name__)


@app.get("/")
def body() -> Response:
    return Response(BODY, content_type="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', content_type="application/json")
