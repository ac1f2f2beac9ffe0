"""gunicorn's access log as structured JSON fields instead of one formatted string.

gunicorn writes the access line after the response is sent, outside the Flask
request, so the request id is read back from the response header the app set.  Outside
the ``api`` package: gunicorn's master loads its logger class before any worker starts,
and importing ``api`` there would import prometheus_client before gunicorn.conf.py's
``on_starting`` chose the metrics directory, which the client reads once, at import.
"""

from __future__ import annotations

import datetime
from collections.abc import MutableMapping
from typing import Any

from gunicorn import glogging


class AccessLogger(glogging.Logger):
    def access(
        self,
        resp: Any,
        req: Any,
        environ: MutableMapping[str, Any],
        request_time: datetime.timedelta,
    ) -> None:
        # logconfig_dict alone would switch access logging on; GUNICORN_ACCESS_LOG="" means off.
        if not self.cfg.accesslog:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
        request_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        self.access_log.info(
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "query": environ.get("QUERY_STRING") or None,
                "status": int(status),
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "bytes": getattr(resp, "sent", None),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            },
        )
