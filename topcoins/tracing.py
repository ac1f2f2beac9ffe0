"""OpenTelemetry set-up shared by the API and the scrapers: loaded only when it is used.

Spans leave the process only when an OTLP endpoint is configured through the standard
``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and only then do the entry points call
``configure_tracing``.  Until something does, nothing here imports OpenTelemetry: its
packages (and the entry-point scan they make on import) cost a scraper, which starts a
fresh interpreter every minute, a third of its start-up, for spans nobody would receive.
Without tracing, runs and log lines carry no trace id, since there is no trace to find.

The exporter's batch thread must be started after gunicorn forks, which is why the API
calls this from ``post_fork``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from topcoins import __version__
from topcoins.settings import exports_traces

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# The provider ``configure_tracing`` installed, if it was called: tracing is on.
_provider: list[TracerProvider] = []


def configure_tracing(service_name: str, env: Mapping[str, str]) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same one.

    It exports over OTLP when ``env`` asks for it; tests add their own span processor.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        _provider[:] = [current]
        instrument_libraries()
        return current
    resource = Resource.create(
        {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name, SERVICE_VERSION: __version__}
    )
    provider = TracerProvider(resource=resource)
    if exports_traces(env):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider[:] = [provider]
    instrument_libraries()
    return provider


def tracing_on() -> bool:
    return bool(_provider)


def flush() -> None:
    """Send what the batch holds: a scraper exits right after its run."""
    for provider in _provider:
        provider.force_flush()


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span as W3C hex, or None outside any span."""
    if not _provider:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class Span:
    """The part of a span the scrapers use; does nothing while tracing is off."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set_attribute(self, key: str, value: str | int) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def fail(self, description: str | None) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, description))


@contextmanager
def span(tracer: str, name: str, attributes: Mapping[str, str]) -> Iterator[Span]:
    """The current span for the block, when tracing is on."""
    if not _provider:
        yield Span()
        return
    from opentelemetry import trace

    with trace.get_tracer(tracer).start_as_current_span(name, attributes=attributes) as active:
        yield Span(active)


def instrument_libraries() -> None:
    """Trace every SQLAlchemy engine created from now on and every ``requests`` call.

    Called by ``configure_tracing``, which only entry points call: creating an engine
    changes nothing global.  Both instrumentors patch globally and ignore repeated calls.
    Engines must be created through ``sqlalchemy.create_engine`` looked up at call time
    (as ``topcoins.db`` does).
    """
    if not _provider:
        return
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (SQLAlchemyInstrumentor(), RequestsInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
