"""Metrics and traces: what the service tells its operators, injected into the layers.

``recorder`` is all the other layers see (a Protocol and a recorder that does nothing);
``metrics`` (prometheus-client) and ``tracing`` (the OpenTelemetry SDK) are imported only
by the wiring, and only when they are on, so that off costs nothing.
"""
