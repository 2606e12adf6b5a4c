"""OpenAIChatClient against the scripted fake server: order, concurrency, retries, errors, wire format."""

from __future__ import annotations

import base64
import socket
import time

import pytest
from models.fake_openai import RETRY_AFTER_S, FakeOpenAIServer

from vtcurate.models.generation import Chat, Sampling, image_part
from vtcurate.models.openai_client import OpenAIChatClient


def user(text: str) -> Chat:
    return [{"role": "system", "content": "You clean captions."}, {"role": "user", "content": text}]


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def client_for(server: FakeOpenAIServer, **kwargs) -> OpenAIChatClient:
    opts = {"concurrency": 4, "timeout_s": 2.0, "max_retries": 3, "backoff_s": 0.01, **kwargs}
    return OpenAIChatClient(base_url=server.base_url, model="fake-model", **opts)


def test_replies_in_order_even_when_they_finish_out_of_order(server):
    # Earlier chats sleep longer, so they finish last.
    chats = [user(f"clip {i} [slow:{0.05 * (5 - i):.2f}]") for i in range(5)]
    client = client_for(server)
    gens = client.generate(chats, Sampling())
    client.close()
    assert [g.text for g in gens] == [
        f"A clean description of: clip {i} [slow:{0.05 * (5 - i):.2f}]" for i in range(5)
    ]
    assert all(g.ok and g.error is None for g in gens)
    assert [g.output_tokens for g in gens] == [len(g.text.split()) for g in gens]
    assert gens[0].extra == {"finish_reason": "stop"}
    assert server.request_count == 5


def test_empty_batch_sends_nothing(server):
    assert client_for(server).generate([], Sampling()) == []
    assert server.request_count == 0


def test_concurrency_limit_respected_and_actually_concurrent(server):
    client = client_for(server, concurrency=3)
    gens = client.generate([user(f"c{i} [slow:0.2]") for i in range(7)], Sampling())
    assert all(g.ok for g in gens)
    assert 1 < server.max_in_flight <= 3  # several at once (the server counts), never more than 3


def test_500_retried_then_succeeds(server):
    gens = client_for(server).generate([user("flaky [500:2]")], Sampling())
    assert gens[0].ok and gens[0].text == "A clean description of: flaky [500:2]"
    assert server.request_count == 3


def test_500_forever_fails_that_chat_only(server):
    client = client_for(server, max_retries=2)
    gens = client.generate([user("a"), user("broken [500:99]"), user("c")], Sampling())
    assert [g.text for g in gens] == ["A clean description of: a", None, "A clean description of: c"]
    assert gens[1].error.startswith("HTTP 500 after 3 attempts: ")
    assert "scripted 500" in gens[1].error
    assert not gens[1].ok
    assert server.prompts().count("broken [500:99]") == 3
    assert server.request_count == 5


def _record_sleeps(monkeypatch, really: bool) -> list[float]:
    """The client's waits between attempts (urllib3's Retry sleeps; not the fake server's threads')."""
    import types

    import urllib3.util.retry as retry

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if really:
            time.sleep(seconds)

    monkeypatch.setattr(retry, "time", types.SimpleNamespace(**{**vars(time), "sleep": sleep}))
    return waits


def test_429_honours_retry_after(server, monkeypatch):
    waits = _record_sleeps(monkeypatch, really=True)
    gens = client_for(server).generate([user("busy [429:1]")], Sampling())
    assert gens[0].ok
    assert server.request_count == 2
    assert max(waits) >= RETRY_AFTER_S  # the server's Retry-After, not the ~0.01 s backoff


@pytest.mark.parametrize(
    ("marker", "detail"),
    [("[malformed]", "not JSON"), ("[nochoices]", "no choices")],
)
def test_malformed_replies_are_per_row_errors(server, marker, detail):
    gens = client_for(server, max_retries=2).generate([user(f"x {marker}"), user("fine")], Sampling())
    assert gens[0].text is None
    assert gens[0].error == f"malformed reply: {detail}"
    assert gens[1].ok
    assert server.request_count == 2  # a well-formed HTTP 200 is not retried


def test_400_not_retried(server):
    gens = client_for(server).generate([user("bad [400]")], Sampling())
    assert gens[0].text is None
    assert gens[0].error.startswith("HTTP 400: ")
    assert "scripted bad request" in gens[0].error
    assert server.request_count == 1


def test_timeout_is_an_error_not_an_exception(server):
    client = client_for(server, timeout_s=0.15, max_retries=1)
    gens = client.generate([user("stuck [slow:0.6]"), user("fine")], Sampling())
    assert gens[0].error == "timeout after 2 attempts"
    assert gens[1].ok
    assert server.prompts().count("stuck [slow:0.6]") == 2


def test_sampling_and_extra_body_in_request(server):
    client = client_for(server, extra_body={"top_k": 20, "max_tokens": 1})
    client.generate([user("s")], Sampling(temperature=0.7, top_p=0.9, max_tokens=64, seed=7))
    client.generate([user("r")], Sampling(repetition_penalty=1.1))
    plain, penalised = server.requests
    assert plain["model"] == "fake-model"
    assert plain["messages"] == user("s")
    assert {k: plain[k] for k in ("temperature", "top_p", "max_tokens", "seed", "top_k")} == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,  # sampling wins over extra_body
        "seed": 7,
        "top_k": 20,
    }
    assert "repetition_penalty" not in plain
    assert penalised["repetition_penalty"] == 1.1


def test_images_sent_as_data_urls(server):
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    chat = [{"role": "user", "content": [{"type": "text", "text": "describe"}, image_part(jpeg)]}]
    gens = client_for(server).generate([chat], Sampling())
    assert gens[0].text == "A clean description of: describe"
    parts = server.requests[0]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "describe"}
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    assert parts[1] == {"type": "image_url", "image_url": {"url": url}}


def test_api_key_sent_as_bearer_and_kept_out_of_provenance(server):
    keyed = client_for(server, api_key="sk-secret")
    keyed.generate([user("k")], Sampling())
    client_for(server).generate([user("n")], Sampling())
    assert server.headers[0]["Authorization"] == "Bearer sk-secret"
    assert "Authorization" not in server.headers[1]
    prov = keyed.provenance()
    assert prov == {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "fake-model",
        "random_weights": False,
    }
    assert "sk-secret" not in repr(prov)
    assert keyed.model_id == "fake-model"


def test_custom_responder():
    with FakeOpenAIServer(responder=lambda req: f"  {len(req['messages'])} messages \n") as srv:
        gens = client_for(srv).generate([user("x")], Sampling())
    assert gens[0].text == "2 messages"  # stripped


def test_a_closed_port_is_a_per_row_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    gens = OpenAIChatClient(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff_s=0.01
    ).generate([user("x")], Sampling())
    assert gens[0].error.startswith("ConnectionError after 2 attempts: ")


def test_retry_after_in_seconds_fractions_or_a_date_capped():
    from vtcurate.models.openai_client import MAX_RETRY_AFTER_S, _Retry

    retry = _Retry(total=1)
    assert retry.parse_retry_after("0.2") == 0.2  # not RFC 9110, but servers send it
    assert retry.parse_retry_after("3600") == MAX_RETRY_AFTER_S  # a worker thread never stalls an hour
    assert retry.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past
