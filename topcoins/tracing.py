"""OpenTelemetry set-up shared by the API and the scrapers.

Spans leave the process only when an OTLP endpoint is configured through the
standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``).  Scrapers always make spans, so each run
records a trace id and its log lines carry it; the API instruments Flask only when
exporting, because a server span costs more than the rest of a cached response.
The exporter's batch thread must be started after gunicorn forks, which is why the
API calls this from ``post_fork``.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from topcoins import __version__
from topcoins.settings import exports_traces


def configure_tracing(service_name: str, env: Mapping[str, str]) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same one."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    resource = Resource.create(
        {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name, SERVICE_VERSION: __version__}
    )
    provider = TracerProvider(resource=resource)
    if exports_traces(env):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span as W3C hex, or None outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def instrument_libraries() -> None:
    """Trace every SQLAlchemy engine created from now on and every ``requests`` call.

    Both instrumentors patch globally and ignore repeated calls, so this is safe to
    call from every entry point.  Engines must be created through
    ``sqlalchemy.create_engine`` looked up at call time (as ``topcoins.db`` does).
    """
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (SQLAlchemyInstrumentor(), RequestsInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
