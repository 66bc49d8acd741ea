"""The fake Vision Events API over real sockets, driven with httpx."""

from __future__ import annotations

import base64
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from consumer.fakeapi import FakeVisionEventsApi
from tests.support.images import jpeg_bytes, png_bytes

API_KEY = "test-key"
READ_ONLY_KEY = "read-only-key"
USE_CASE = "line-qc"
LOCAL_KEY = "device-secret"
JPEG = jpeg_bytes()
CAPACITY_BODY = {
    "detail": "Device storage full. Waiting for cloud uploads to complete.",
    "error": "capacity_blocked",
}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
def api() -> Iterator[FakeVisionEventsApi]:
    with FakeVisionEventsApi(
        api_keys=(API_KEY,),
        read_only_keys=(READ_ONLY_KEY,),
        use_cases=(USE_CASE,),
        inactive_use_cases=("retired-line",),
        max_upload_bytes=64 * 1024,
        max_body_bytes=256 * 1024,
    ) as fake:
        yield fake


@pytest.fixture
def client(api: FakeVisionEventsApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as http:
        yield http


def event(source_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "eventType": "quality_check",
        "useCaseId": USE_CASE,
        "timestamp": datetime.now(UTC).isoformat(),
        "images": [],
        "eventData": {"result": "pass"},
    }
    if source_id is not None:
        body["images"] = [
            {
                "sourceId": source_id,
                "label": "workflow",
                "objectDetections": [
                    {"class": "defect", "x": 5.0, "y": 5.0, "width": 4.0, "height": 4.0, "confidence": 0.7}
                ],
            }
        ]
        body["displayImagePosition"] = 0
    body.update(overrides)
    return body


def local_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inference_timestamp": datetime.now(UTC).isoformat(),
        "solution": USE_CASE,
        "event_schema": "safety_alert",
        "event_data": {"alertType": "no_vest", "severity": "low"},
        "images": [{"base64Image": base64.b64encode(png_bytes()).decode("ascii"), "label": "workflow"}],
        "displayImagePosition": 0,
    }
    body.update(overrides)
    return body


def upload(client: httpx.Client, data: bytes = JPEG) -> str:
    response = client.post("/vision-events/upload", files={"file": ("image.jpg", data, "image/jpeg")})
    assert response.status_code == 201, response.text
    source_id: str = response.json()["sourceId"]
    return source_id


# --- basics and auth --------------------------------------------------------------------------


def test_health_needs_no_auth_and_keeps_the_connection_alive(api: FakeVisionEventsApi) -> None:
    with httpx.Client(base_url=api.url) as http:
        first = http.get("/health")
        second = http.get("/health")
    assert first.status_code == second.status_code == 200
    assert first.http_version == "HTTP/1.1"
    assert "close" not in first.headers.get("connection", "")
    assert first.headers["content-length"] == str(len(first.content))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong-key"),
        pytest.param({"Authorization": f"Token {API_KEY}"}, id="wrong-scheme"),
        pytest.param({"X-API-Key": API_KEY}, id="key-in-wrong-header"),
    ],
)
def test_cloud_requests_without_a_valid_key_get_401(
    api: FakeVisionEventsApi, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=api.url, headers=headers) as http:
        response = http.post("/vision-events", json=event())
    assert response.status_code == 401
    assert "error" in response.json()
    assert api.events() == {}


def test_read_only_key_can_list_but_not_write(api: FakeVisionEventsApi) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {READ_ONLY_KEY}"}) as http:
        listed = http.get("/vision-events/use-cases")
        created = http.post("/vision-events", json=event())
        uploaded = http.post("/vision-events/upload", files={"file": ("a.jpg", JPEG, "image/jpeg")})
    assert listed.status_code == 200
    assert created.status_code == uploaded.status_code == 403
    assert api.events() == {}
    assert api.uploads() == {}


def test_broken_auth_refuses_every_cloud_request_until_cleared(
    api: FakeVisionEventsApi, client: httpx.Client
) -> None:
    api.set_auth_broken(True)
    assert client.get("/vision-events/use-cases").status_code == 401
    assert client.post("/vision-events", json=event()).status_code == 401
    assert client.get("/health").status_code == 200
    api.set_auth_broken(False)
    assert client.post("/vision-events", json=event()).status_code == 201


# --- uploads and events -----------------------------------------------------------------------


def test_upload_then_create_an_event_that_references_it(
    api: FakeVisionEventsApi, client: httpx.Client
) -> None:
    response = client.post(
        "/vision-events/upload",
        files={"file": ("image.jpg", JPEG, "application/octet-stream")},
        data={"name": "frame-1", "metadata": '{"camera": "c1"}'},
    )
    assert response.status_code == 201
    uploaded = response.json()
    assert uploaded["success"] is True
    assert uploaded["sourceId"].startswith("ve-img-")
    assert api.uploads() == {uploaded["sourceId"]: JPEG}
    assert client.get(uploaded["url"]).content == JPEG

    body = event(uploaded["sourceId"])
    created = client.post("/vision-events", json=body)
    assert created.status_code == 201
    assert created.json() == {"eventId": body["eventId"], "created": True}
    assert api.events() == {body["eventId"]: body}


@pytest.mark.parametrize(
    ("files", "data", "status"),
    [
        pytest.param({"file": ("a.txt", b"plain text, not an image", "image/jpeg")}, {}, 400, id="not-image"),
        pytest.param({"file": ("a.jpg", b"", "image/jpeg")}, {}, 400, id="empty-file"),
        pytest.param({"image": ("a.jpg", JPEG, "image/jpeg")}, {}, 400, id="wrong-field"),
        pytest.param(
            {"file": ("a.jpg", JPEG, "image/jpeg")}, {"metadata": '{"a": [1]}'}, 400, id="bad-metadata"
        ),
        pytest.param({"file": ("a.jpg", JPEG, "image/jpeg")}, {"tags": "x"}, 400, id="unknown-field"),
        pytest.param(
            {"file": ("big.jpg", b"\xff\xd8\xff" + bytes(70 * 1024), "image/jpeg")},
            {},
            413,
            id="over-max-size",
        ),
    ],
)
def test_bad_uploads_are_refused(
    api: FakeVisionEventsApi,
    client: httpx.Client,
    files: dict[str, tuple[str, bytes, str]],
    data: dict[str, str],
    status: int,
) -> None:
    response = client.post("/vision-events/upload", files=files, data=data)
    assert response.status_code == status
    assert "error" in response.json()
    assert api.uploads() == {}


def test_upload_needs_multipart(client: httpx.Client) -> None:
    response = client.post("/vision-events/upload", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 400


def test_event_referencing_an_unknown_source_id_is_refused(
    api: FakeVisionEventsApi, client: httpx.Client
) -> None:
    response = client.post("/vision-events", json=event("ve-img-never-uploaded"))
    assert response.status_code == 400
    assert response.json()["error"].startswith("images[0].sourceId: ")
    assert api.events() == {}


def test_event_for_unknown_or_inactive_use_case_is_refused(client: httpx.Client) -> None:
    for use_case in ("no-such-case", "retired-line"):
        response = client.post("/vision-events", json=event(useCaseId=use_case))
        assert response.status_code == 400
        assert response.json()["error"].startswith("useCaseId: ")


def test_duplicate_event_id_overwrites_and_is_counted(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    first = event()
    second = event(eventId=first["eventId"], eventData={"result": "fail"})
    assert client.post("/vision-events", json=first).status_code == 201
    assert api.overwrites == 0
    assert client.post("/vision-events", json=second).status_code == 201
    assert api.overwrites == 1
    assert api.events() == {first["eventId"]: second}
    assert api.stats()["overwrites"] == 1


def test_batch_creates_every_event(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    source_id = upload(client)
    bodies = [event(source_id), event(), event(eventType="custom", eventData={"value": "x"})]
    response = client.post("/vision-events/batch", json={"events": bodies})
    assert response.status_code == 201
    assert response.json() == {"created": 3, "eventIds": [body["eventId"] for body in bodies]}
    assert set(api.events()) == {body["eventId"] for body in bodies}
    assert api.stats()["eventTypes"] == {"quality_check": 2, "custom": 1}


def test_batch_is_all_or_nothing(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    bodies = [event(), event("ve-img-unknown"), event()]
    response = client.post("/vision-events/batch", json={"events": bodies})
    assert response.status_code == 400
    assert response.json()["index"] == 1
    assert response.json()["error"].startswith("events[1].images[0].sourceId: ")
    assert api.events() == {}


@pytest.mark.parametrize("count", [0, 101])
def test_batch_size_outside_1_to_100_is_refused(
    api: FakeVisionEventsApi, client: httpx.Client, count: int
) -> None:
    response = client.post("/vision-events/batch", json={"events": [event() for _ in range(count)]})
    assert response.status_code == 400
    assert response.json()["error"].startswith("events: ")
    assert api.events() == {}


def test_json_endpoints_need_json(client: httpx.Client) -> None:
    not_json = client.post("/vision-events", content=b"{", headers={"Content-Type": "application/json"})
    wrong_type = client.post("/vision-events", content=b"{}", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400
    assert wrong_type.status_code == 415


def test_body_over_the_limit_is_413_and_the_connection_survives(api: FakeVisionEventsApi) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        big = http.post("/vision-events", json=event(customMetadata={"k": "v" * 300_000}))
        after = http.post("/vision-events", json=event())
    assert big.status_code == 413
    assert after.status_code == 201
    assert len(api.events()) == 1


def test_chunked_request_body_is_accepted(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    import orjson

    payload = orjson.dumps(event())

    def chunks() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    response = client.post("/vision-events", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    assert len(api.events()) == 1


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/vision-events/nope").status_code == 404
    not_allowed = client.get("/vision-events")
    assert not_allowed.status_code == 405
    assert not_allowed.headers["allow"] == "POST"


def _raw_exchange(api: FakeVisionEventsApi, request: bytes) -> tuple[bytes, bool]:
    """Send raw bytes, read until the server closes or goes quiet: (what came back, closed?)."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk


def test_body_far_over_the_limit_gets_413_and_the_connection_closes(api: FakeVisionEventsApi) -> None:
    # 100 MB declared, 3 bytes sent: reading it to keep the connection would take the whole body.
    answer, closed = _raw_exchange(
        api, b"POST /vision-events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc"
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nConnection: close\r\n" in answer
    assert closed


def test_chunked_body_over_the_limit_is_413_and_the_connection_survives(api: FakeVisionEventsApi) -> None:
    chunk = b"a" * (300 * 1024)
    answer, closed = _raw_exchange(
        api,
        b"POST /vision-events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    first, _, second = answer.partition(b"HTTP/1.1 200 ")
    assert first.startswith(b"HTTP/1.1 413 ")
    assert second.endswith(b'{"status":"ok"}')
    assert not closed


def test_malformed_chunked_framing_is_400_and_the_connection_closes(api: FakeVisionEventsApi) -> None:
    answer, closed = _raw_exchange(
        api,
        b"POST /vision-events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    )
    # aiohttp's parser answers it itself (as HTTP/1.0: it could not read the request).
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    assert closed
    assert api.events() == {}


def test_gzip_body_is_not_inflated(client: httpx.Client, api: FakeVisionEventsApi) -> None:
    import gzip

    import orjson

    response = client.post(
        "/vision-events",
        content=gzip.compress(orjson.dumps(event())),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400
    assert api.events() == {}


def _form(parts: list[tuple[bytes, bytes]], boundary: bytes = b"b0undary") -> bytes:
    """A multipart body from (part headers, content) pairs, closed by the final delimiter."""
    body = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    return body + b"--" + boundary + b"--\r\n"


FILE_PART = (
    b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg',
    JPEG,
)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", _form([FILE_PART]), id="no-boundary"),
        pytest.param(
            "multipart/form-data; boundary=b0undary", b"junk" + _form([FILE_PART]), id="glued-start"
        ),
        pytest.param("multipart/form-data; boundary=b0undary", _form([FILE_PART])[:-40], id="truncated"),
        pytest.param(
            "multipart/form-data; boundary=b0undary", _form([FILE_PART, FILE_PART]), id="field-twice"
        ),
        pytest.param(
            "multipart/form-data; boundary=b0undary",
            _form([(b'Content-Disposition: attachment; name="file"', JPEG)]),
            id="not-form-data",
        ),
        pytest.param(
            "multipart/form-data; boundary=b0undary",
            _form([(b"Content-Disposition form-data", JPEG)]),
            id="malformed-part-header",
        ),
        pytest.param(
            "multipart/form-data; boundary=b0undary",
            _form(
                [
                    (
                        b'Content-Disposition: form-data; name="file"\r\n'
                        b"Content-Type: multipart/mixed; boundary=x",
                        b"",
                    )
                ]
            ),
            id="nested-multipart",
        ),
    ],
)
def test_malformed_multipart_uploads_are_400(
    api: FakeVisionEventsApi, client: httpx.Client, content_type: str, body: bytes
) -> None:
    response = client.post("/vision-events/upload", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("body: ")
    assert api.uploads() == {}


def test_handmade_multipart_upload_is_accepted(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    # The control case of the test above: the same framing, well-formed, with a preamble line.
    body = b"preamble\r\n" + _form([FILE_PART, (b'Content-Disposition: form-data; name="name"', b"f-1")])
    response = client.post(
        "/vision-events/upload",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 201, response.text
    assert list(api.uploads().values()) == [JPEG]


def test_stop_closes_open_connections_and_releases_the_port() -> None:
    fake = FakeVisionEventsApi(use_cases=(USE_CASE,)).start()
    port = fake.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        fake.stop()
        assert idle.recv(65536) == b""  # the kept-alive connection was closed by stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as again:  # SO_REUSEADDR: the closed connection may linger in TIME_WAIT
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    fake.stop()  # a second stop is a no-op


# --- use cases --------------------------------------------------------------------------------


def test_use_cases_list_create_and_conflict(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    listed = client.get("/vision-events/use-cases").json()
    assert listed["lookbackDays"] == 14
    assert {"id": USE_CASE, "name": USE_CASE, "status": "active"} in listed["useCases"]
    inactive = client.get("/vision-events/use-cases", params={"status": "inactive"}).json()["useCases"]
    assert [case["id"] for case in inactive] == ["retired-line"]

    created = client.post("/vision-events/use-cases", json={"name": "Dock Door"})
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert created.json()["name"] == "Dock Door"
    assert client.post("/vision-events/use-cases", json={"name": "Dock Door"}).status_code == 409
    assert client.post("/vision-events", json=event(useCaseId=new_id)).status_code == 201
    # The name is not an id.
    assert client.post("/vision-events", json=event(useCaseId="Dock Door")).status_code == 400


# --- faults -----------------------------------------------------------------------------------


def test_fault_sequence_then_success(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.add_fault("/vision-events", statuses=[500, 503])
    body = event()
    statuses = [client.post("/vision-events", json=body).status_code for _ in range(3)]
    assert statuses == [500, 503, 201]
    assert [entry[2] for entry in api.request_log()] == [500, 503, 201]
    assert api.request_counts()[("POST", "/vision-events", 500)] == 1


def test_fault_429_carries_retry_after(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.add_fault("/vision-events/batch", statuses=[429], retry_after=7)
    limited = client.post("/vision-events/batch", json={"events": [event()]})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert client.post("/vision-events/batch", json={"events": [event()]}).status_code == 201


def test_fault_only_matches_its_prefix(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.add_fault("/vision-events/upload", statuses=[500])
    assert client.post("/vision-events", json=event()).status_code == 201
    assert (
        client.post("/vision-events/upload", files={"file": ("a.jpg", JPEG, "image/jpeg")}).status_code == 500
    )


def test_dropped_connection_is_a_transport_error(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.add_fault("/vision-events", drop_connection=True, times=1)
    body = event()
    with pytest.raises(httpx.TransportError):
        client.post("/vision-events", json=body)
    assert api.events() == {}
    assert client.post("/vision-events", json=body).status_code == 201
    assert api.request_log()[0] == ("POST", "/vision-events", 0)


def test_fault_latency_delays_the_response(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.add_fault("/vision-events", statuses=[], latency_s=0.3, times=1)
    started = time.perf_counter()
    assert client.post("/vision-events", json=event()).status_code == 201
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    assert client.post("/vision-events", json=event()).status_code == 201
    assert time.perf_counter() - started < 0.3


def test_global_latency(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    api.set_latency(0.2)
    started = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - started >= 0.2


def _ratio_statuses(seed: int, count: int) -> list[int]:
    with FakeVisionEventsApi(use_cases=(USE_CASE,), fault_seed=seed) as fake:
        fake.add_fault("/vision-events", statuses=[500, 429], fail_ratio=0.3)
        with httpx.Client(base_url=fake.url, headers={"Authorization": "Bearer test-key"}) as http:
            return [http.post("/vision-events", json=event()).status_code for _ in range(count)]


def test_fail_ratio_is_seeded_and_roughly_right() -> None:
    first = _ratio_statuses(seed=11, count=200)
    assert first == _ratio_statuses(seed=11, count=200)
    failures = [status for status in first if status != 201]
    assert 30 <= len(failures) <= 90
    assert set(failures) == {500, 429}


# --- local Event Store ------------------------------------------------------------------------


def test_local_event_is_created_with_exactly_201(api: FakeVisionEventsApi) -> None:
    body = local_event()
    with httpx.Client(base_url=api.url) as http:
        response = http.post("/v2/events", json=body)
    assert response.status_code == 201
    assert UUID_RE.fullmatch(response.json()["id"])
    assert api.local_events() == [body]
    assert api.events() == {}


def test_invalid_local_event_gets_400_detail(api: FakeVisionEventsApi) -> None:
    with httpx.Client(base_url=api.url) as http:
        response = http.post("/v2/events", json=local_event(event_data={"alertType": "x", "zone": "B"}))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("event_data.zone: ")
    assert api.local_events() == []


def test_local_store_at_capacity_answers_529(api: FakeVisionEventsApi) -> None:
    api.set_local_capacity(2)
    with httpx.Client(base_url=api.url) as http:
        statuses = [http.post("/v2/events", json=local_event()).status_code for _ in range(3)]
        full = http.post("/v2/events", json=local_event())
    assert statuses == [201, 201, 529]
    assert full.json() == CAPACITY_BODY
    assert len(api.local_events()) == 2


def test_local_529_can_be_injected(api: FakeVisionEventsApi) -> None:
    api.add_fault("/v2/events", statuses=[529])
    with httpx.Client(base_url=api.url) as http:
        injected = http.post("/v2/events", json=local_event())
        after = http.post("/v2/events", json=local_event())
    assert (injected.status_code, injected.json()) == (529, CAPACITY_BODY)
    assert after.status_code == 201


def test_local_api_key_is_enforced_when_configured() -> None:
    with FakeVisionEventsApi(local_api_key=LOCAL_KEY) as fake, httpx.Client(base_url=fake.url) as http:
        missing = http.post("/v2/events", json=local_event())
        wrong = http.post("/v2/events", json=local_event(), headers={"X-API-Key": "nope"})
        right = http.post("/v2/events", json=local_event(), headers={"X-API-Key": LOCAL_KEY})
        health = http.get("/health")
    assert missing.status_code == wrong.status_code == 401
    assert "detail" in missing.json()
    assert right.status_code == 201
    assert health.status_code == 200
    assert len(fake.local_events()) == 1


# --- control routes ---------------------------------------------------------------------------


def test_control_routes_drive_and_inspect_the_fake(api: FakeVisionEventsApi, client: httpx.Client) -> None:
    with httpx.Client(base_url=api.url) as control:
        rule = {"path_prefix": "/vision-events", "statuses": [503], "retry_after": 1}
        assert control.post("/_fake/faults", json=rule).status_code == 201
        assert len(control.get("/_fake/faults").json()["rules"]) == 1
        assert client.post("/vision-events", json=event()).status_code == 503

        control.post("/_fake/faults", json={"path_prefix": "/vision-events", "statuses": [500]})
        assert control.delete("/_fake/faults").json() == {"cleared": 1}
        body = event()
        assert client.post("/vision-events", json=body).status_code == 201
        assert client.post("/v2/events", json=local_event()).status_code == 201

        events = control.get("/_fake/events").json()
        assert events == {"count": 1, "events": [body]}
        assert control.get("/_fake/local-events").json()["count"] == 1
        stats = control.get("/_fake/stats").json()
        assert stats["requests"]["POST /vision-events"] == {"201": 1, "503": 1}
        assert stats["requests"]["POST /v2/events"] == {"201": 1}
        assert stats["eventTypes"] == {"quality_check": 1}
        assert stats["totalRequests"] == 3

        config = control.post("/_fake/config", json={"auth_broken": True, "local_capacity": 0})
        assert config.json() == {"latency_s": 0.0, "auth_broken": True, "local_capacity": 0}
        assert client.post("/vision-events", json=event()).status_code == 401
        assert client.post("/v2/events", json=local_event()).status_code == 529

        assert control.post("/_fake/reset").status_code == 200
        assert control.get("/_fake/events").json() == {"count": 0, "events": []}
        assert control.get("/_fake/stats").json()["totalRequests"] == 0
        assert client.post("/vision-events", json=event()).status_code == 201


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"statuses": [500]}, id="no-prefix"),
        pytest.param({"path_prefix": "/x", "statuses": [99]}, id="bad-status"),
        pytest.param({"path_prefix": "/x", "fail_ratio": 2}, id="bad-ratio"),
        pytest.param({"path_prefix": "/x", "times": "2"}, id="times-string"),
        pytest.param({"path_prefix": "/x", "colour": "red"}, id="unknown-field"),
    ],
)
def test_control_refuses_bad_fault_rules(api: FakeVisionEventsApi, rule: dict[str, Any]) -> None:
    with httpx.Client(base_url=api.url) as control:
        assert control.post("/_fake/faults", json=rule).status_code == 400
        assert control.get("/_fake/faults").json() == {"rules": []}


def test_serve_runs_until_sigterm() -> None:
    code = "from consumer.fakeapi import serve; serve('127.0.0.1', 0, ['k'], ['uc'], None)"
    # A fixed command line: this interpreter running our own function.
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match is not None, line
        with httpx.Client(base_url=match.group(0), headers={"Authorization": "Bearer k"}) as http:
            assert http.get("/vision-events/use-cases").json()["useCases"][0]["id"] == "uc"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
