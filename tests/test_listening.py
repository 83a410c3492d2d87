"""One listening socket for the sandbox and the service (issue 15, item 5): the same checks,
the same refusals, the same error class, whichever of them asks for the address."""

from __future__ import annotations

import socket
from contextlib import closing

import pytest

from pipeline import sandbox, serve
from pipeline.listening import MAX_PORT, ListenError, listening_socket, url_of
from pipeline.sandbox import serve_in_thread


def test_the_sandbox_and_the_service_refuse_an_address_with_one_error_class() -> None:
    assert sandbox.ListenError is ListenError
    assert serve.ListenError is ListenError
    assert serve.listening_socket is listening_socket


def test_the_sandbox_in_a_thread_refuses_a_port_in_use_as_the_service_does() -> None:
    with closing(listening_socket("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        in_use = f"^port {port} on 127.0.0.1 is in use: pick another --port"
        with pytest.raises(ListenError, match=in_use), serve_in_thread(port=port):
            pass


def test_a_socket_listens_on_a_free_port_when_asked_for_0() -> None:
    with closing(listening_socket("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        assert port > 0
        assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it accepts: it listens, not only bound
        assert url_of(sock, "127.0.0.1") == f"http://127.0.0.1:{port}"


def test_an_ipv6_host_is_bracketed_in_the_url() -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert url_of(sock, "::1") == f"http://[::1]:{port}"


def test_a_port_in_use_names_the_option_to_change_and_keeps_the_errno() -> None:
    with closing(listening_socket("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as refused:
            listening_socket("127.0.0.1", port)
    assert str(refused.value) == (
        f"port {port} on 127.0.0.1 is in use: pick another --port (0 picks a free one)"
    )
    assert refused.value.errno is not None


@pytest.mark.parametrize("port", [-1, MAX_PORT + 1])
def test_a_port_out_of_range_is_refused_before_any_socket(port: int) -> None:
    with pytest.raises(ListenError, match=r"^port must be 0\.\.65535 \(0 picks a free one\)"):
        listening_socket("127.0.0.1", port)


def test_a_host_not_on_this_machine_says_it_cannot_listen_there() -> None:
    with pytest.raises(ListenError, match=r"^cannot listen on 192\.0\.2\.1:0: "):
        listening_socket("192.0.2.1", 0)
