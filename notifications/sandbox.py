"""A local stand-in for the two notification APIs we call over HTTP (demo and tests only):
WeChat's ``cgi-bin/message/subscribe/send`` and Tencent Cloud SMS ``SendSms``.

It keeps what it was sent (``sent``) and can be told to refuse the next requests
(``fail_next``): a WeChat errcode (int) or a Tencent Cloud error code (str), or an HTTP status.

    python -m notifications.sandbox --port 5200
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class NotificationSandbox:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._failures: dict[str, deque[int | str]] = {"wechat": deque(), "sms": deque()}
        self._lock = threading.Lock()
        # hold_next(): the next request waits here (its client may die meanwhile)
        self.held = threading.Event()
        self._release: threading.Event | None = None

    def hold_next(self) -> threading.Event:
        """Keep the next request waiting until the returned event is set (``held`` is set
        while it waits), then answer it 503: a provider that never got to send it."""
        self._release = threading.Event()
        return self._release

    def fail_next(self, channel: str, *codes: int | str) -> None:
        """Refuse the next requests on ``channel`` with these codes, one each: a 5xx int is an
        HTTP status; otherwise a WeChat errcode (int) or a Tencent Cloud error code (str)."""
        with self._lock:
            self._failures[channel].extend(codes)

    def _failure(self, channel: str) -> int | str | None:
        with self._lock:
            queue = self._failures[channel]
            return queue.popleft() if queue else None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        release, self._release = self._release, None
        if release is not None:
            self.held.set()
            release.wait(60)
            return Response("gone", status=503)(environ, start_response)
        if request.path.endswith("/cgi-bin/message/subscribe/send"):
            response = self._wechat(request)
        elif request.headers.get("X-TC-Action") == "SendSms":
            response = self._sms(request)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def _wechat(self, request: Request) -> Response:
        if not request.args.get("access_token"):
            return _json({"errcode": 41001, "errmsg": "access_token missing"})
        body = json.loads(request.get_data())
        failure = self._failure("wechat")
        if isinstance(failure, int) and 500 <= failure < 600:  # an HTTP status
            return Response("busy", status=failure)
        if failure is not None:
            return _json({"errcode": failure, "errmsg": "sandbox refused"})
        msgid = len(self.sent) + 1
        self.sent.append({"channel": "wechat", "to": body["touser"],
                          "template_id": body["template_id"], "data": body["data"]})
        return _json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _sms(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        if not request.headers.get("Authorization", "").startswith("TC3-HMAC-SHA256"):
            return _json({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
                                                 "Message": "unsigned"},
                                       "RequestId": request_id}})
        body = json.loads(request.get_data())
        failure = self._failure("sms")
        if isinstance(failure, int):  # an HTTP status
            return Response("busy", status=failure)
        if failure is not None:
            return _json({"Response": {"Error": {"Code": failure, "Message": "sandbox refused"},
                                       "RequestId": request_id}})
        statuses = []
        for phone in body["PhoneNumberSet"]:
            serial = f"sandbox-{len(self.sent) + 1}"
            self.sent.append({"channel": "sms", "to": phone, "template_id": body["TemplateId"],
                              "params": body.get("TemplateParamSet", [])})
            statuses.append({"SerialNo": serial, "PhoneNumber": phone, "Fee": 1,
                             "SessionContext": "", "Code": "Ok", "Message": "send success",
                             "IsoCode": "CN"})
        return _json({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


@contextmanager
def serving(sandbox: NotificationSandbox, host: str = "127.0.0.1",
            port: int = 0) -> Iterator[str]:
    """Serve ``sandbox`` in a thread; yields its base URL (``http://127.0.0.1:PORT``)."""
    server = make_server(host, port, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - a dev server
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5200)
    args = parser.parse_args(argv)
    make_server(args.host, args.port, NotificationSandbox(), threaded=True).serve_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
