"""The client, connectionless sockets, services, errors and bad inputs
against a real csp-muxd."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import cspmux
from cspmux import errors


def test_no_daemon_is_daemon_unavailable(tmp_path):
    with pytest.raises(cspmux.DaemonUnavailable) as e:
        cspmux.Client(socket=str(tmp_path / "nobody.sock"))
    assert "not running" in str(e.value)
    assert isinstance(e.value, ConnectionError)


def test_client_node_mtu_context_manager(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        assert c.node == muxd.addr
        assert c.mtu > 200
        assert c.connected
        assert "node=1" in repr(c)
    with pytest.raises(cspmux.Closed):
        c.node
    assert c.fileno() is None


def test_tcp_endpoint_with_token(tcp_muxd):
    with cspmux.Client(tcp=tcp_muxd.tcp, token="open-sesame-open-sesame") as c:
        assert c.node == tcp_muxd.addr
        assert c.ping(tcp_muxd.addr, timeout=2) > 0
    with pytest.raises(cspmux.DaemonUnavailable):
        cspmux.Client(tcp=tcp_muxd.tcp, token="wrong")
    with pytest.raises(cspmux.InvalidArgument):
        cspmux.Client(token="open-sesame-open-sesame")  # a token without tcp=


def test_services(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        rtt = c.ping(muxd.addr, size=100, timeout=2.0)
        assert 0 < rtt < 2.0
        ident = c.ident(muxd.addr, timeout=2.0)
        assert ident["hostname"] and set(ident) == {"hostname", "model", "revision", "date", "time"}
        assert c.uptime(muxd.addr, timeout=2.0) >= 0
        assert c.memfree(muxd.addr, timeout=2.0) >= 0
        assert c.buffree(muxd.addr, timeout=2.0) > 0
        # Nobody at node 9 (no route): a timeout, also a TimeoutError.
        with pytest.raises(TimeoutError):
            c.ping(9, timeout=0.2)


def test_status_is_structured(muxd):
    with cspmux.Client(socket=muxd.socket, name="status-test") as c:
        s = c.bind(12)
        st = c.status()
        assert st["node"] == muxd.addr
        assert st["socket"] == muxd.socket
        assert isinstance(st["uptime"], int)
        mine = [a for a in st["apps"] if a["name"] == "status-test"]
        assert len(mine) == 1, st
        assert {"addr": muxd.addr, "port": 12} in mine[0]["ports"]
        s.close()
        for what in ("stats", "routes"):
            assert isinstance(c.control(what), str)


@pytest.mark.parametrize(
    "opts",
    [{}, {"crc": True}, {"hmac_key": b"secret"}, {"hmac_key": "secret", "crc": True}, {"xtea_key": "k"}],
)
def test_sendto_recvfrom_with_trailers(muxd, opts):
    with cspmux.Client(socket=muxd.socket) as a, cspmux.Client(socket=muxd.socket) as b:
        server = a.bind(10, **opts)
        client = b.bind(None, **opts)
        client.sendto(muxd.addr, 10, b"hello")
        d = server.recvfrom(timeout=5)
        assert d.data == b"hello" and isinstance(d.data, bytes)
        assert (d.src, d.dport, d.dst) == (muxd.addr, 10, muxd.addr)
        assert d.sport == client.port
        if opts.get("crc"):
            assert d.flags & 0x01
        server.sendto(d.src, d.sport, d.data.upper())
        assert client.recvfrom(timeout=5).data == b"HELLO"
        assert server.stats()["delivered"] == 1


def test_wrong_hmac_key_is_dropped_and_counted(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        server = c.bind(10, hmac_key=b"right")
        client = c.bind(None, hmac_key=b"wrong")
        client.sendto(muxd.addr, 10, b"x")
        with pytest.raises(cspmux.Timeout):
            server.recvfrom(timeout=0.3)
        assert server.stats()["dropped_security"] == 1


def test_sfp_carries_more_than_a_packet(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        server = c.bind(10, sfp=True)
        client = c.bind(None, sfp=True)
        data = os.urandom(c.mtu * 5 + 17)
        client.sendto(muxd.addr, 10, data)
        assert server.recvfrom(timeout=5).data == data


def test_any_and_port_in_use(muxd):
    with cspmux.Client(socket=muxd.socket) as a, cspmux.Client(socket=muxd.socket) as b:
        s = a.bind(20)
        with pytest.raises(cspmux.PortInUse):
            b.bind(20)
        s.close()
        b.bind(20).close()
        anyp = a.bind(cspmux.ANY)
        assert anyp.port == cspmux.ANY
        b.bind(None).sendto(muxd.addr, 25, b"to any")
        d = anyp.recvfrom(timeout=5)
        assert (d.dport, d.data) == (25, b"to any")


def test_bad_inputs_raise_clear_exceptions(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        for port in (64, -1, 254, 2**70):
            with pytest.raises((cspmux.InvalidArgument, OverflowError)):
                c.bind(port)
        with pytest.raises(TypeError):
            c.bind("ten")
        s = c.bind(None)
        with pytest.raises(cspmux.InvalidArgument, match="dst 20000"):
            s.sendto(20000, 10, b"x")
        with pytest.raises(cspmux.InvalidArgument, match="dport 99"):
            s.sendto(1, 99, b"x")
        with pytest.raises(TypeError):
            s.sendto(1, 10, "text is not bytes")
        with pytest.raises(cspmux.InvalidArgument, match="SFP"):
            s.sendto(1, 10, bytes(c.mtu + 1))
        with pytest.raises(ValueError):  # InvalidArgument is a ValueError
            s.recvfrom(timeout=-1)
        with pytest.raises(TypeError):
            c.bind(10, hmac_key=123)
        with pytest.raises(cspmux.InvalidArgument, match="window"):
            c.listen(10, window=0)
        with pytest.raises(cspmux.InvalidArgument, match="segment"):
            c.connect(1, 10, segment=5000)
        with pytest.raises(cspmux.InvalidArgument):
            c.connect(1, 10, segment=-5)
        with pytest.raises(cspmux.InvalidArgument, match="control request"):
            c.control("reboot")
        with pytest.raises(cspmux.InvalidArgument, match="tcp address"):
            cspmux.Client(tcp="not an address")
        s.close()
        s.close()  # idempotent
        with pytest.raises(cspmux.Closed):
            s.sendto(1, 10, b"x")
        with pytest.raises(cspmux.Closed):
            s.recvfrom(timeout=0)
    # The interpreter is still here, and every class is a CspError.
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), cspmux.CspError)


def test_blocking_call_releases_the_gil(muxd):
    """A thread blocked in recvfrom(None) must let the main thread run: if
    the GIL were held, the send below could never happen and join would
    give up."""
    with cspmux.Client(socket=muxd.socket) as a, cspmux.Client(socket=muxd.socket) as b:
        s = a.bind(30)
        got = []
        t = threading.Thread(target=lambda: got.append(s.recvfrom(None).data))
        t.start()
        b.bind(None).sendto(muxd.addr, 30, b"from main")
        t.join(10)
        assert got == [b"from main"]


@pytest.mark.parametrize(
    "call", ["s.recvfrom(None)", "c.ping(9, timeout=60)", "c.listen(12).accept()"]
)
def test_ctrl_c_interrupts_a_blocking_call(muxd, call):
    script = textwrap.dedent(
        f"""
        import sys, cspmux
        c = cspmux.Client(socket={muxd.socket!r})
        s = c.bind(31)
        try:
            print("ready", flush=True)
            {call}
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 3
        assert p.stdout.read().strip() == "interrupted"
    finally:
        p.kill()
        p.wait()


def test_two_python_processes_share_one_daemon(muxd):
    peer = textwrap.dedent(
        f"""
        import cspmux
        with cspmux.Client(socket={muxd.socket!r}) as c:
            s = c.bind(21)
            print("ready", flush=True)
            d = s.recvfrom(timeout=10)
            s.sendto(d.src, d.sport, b"echo:" + d.data)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", peer], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        with cspmux.Client(socket=muxd.socket) as c:
            # Both processes are the daemon's applications (the peer waits
            # for our datagram, so it is still there).
            names = [a["name"] for a in c.status()["apps"]]
            assert len(names) == 2, names
            s = c.bind(None)
            s.sendto(muxd.addr, 21, b"hi")
            assert s.recvfrom(timeout=10).data == b"echo:hi"
        assert p.wait(10) == 0
    finally:
        p.kill()
        p.wait()


def test_daemon_restart_rebinds_sockets(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        s = c.bind(10)
        muxd.restart()
        # recvfrom keeps waiting across the restart: the client reconnects
        # and registers port 10 again by itself.
        events = []
        for _ in range(100):
            try:
                s.recvfrom(timeout=0.1)
            except cspmux.Timeout:
                pass
            while (ev := c.poll_event()) is not None:
                events.append(ev["kind"])
            if "reconnected" in events:
                break
        assert "reconnected" in events, events
        with cspmux.Client(socket=muxd.socket) as other:
            other.bind(None).sendto(muxd.addr, 10, b"after restart")
        assert s.recvfrom(timeout=5).data == b"after restart"


def test_one_client_two_threads_is_busy_not_a_crash(muxd):
    with cspmux.Client(socket=muxd.socket) as c, cspmux.Client(socket=muxd.socket) as other:
        s = c.bind(23)
        got = []
        t = threading.Thread(target=lambda: got.append(s.recvfrom(timeout=10).data))
        t.start()
        # The thread holds the client while it waits: same-client calls from
        # here are refused with a RuntimeError, never a hang or a crash.
        for _ in range(500):
            try:
                s.stats()
            except cspmux.Busy:
                break
            threading.Event().wait(0.01)
        else:
            pytest.fail("the waiting thread never held the client")
        with pytest.raises(RuntimeError):
            c.bind(24)
        other.bind(None).sendto(muxd.addr, 23, b"done")
        t.join(10)
        assert got == [b"done"]


def test_parse_status_keeps_what_it_does_not_know():
    text = (
        "node 5\nuptime 12\nsocket /tmp/x.sock\nlink udp 127.0.0.1:9700\n"
        'app 3 name="a \\"b\\"\\x01" ports=5:10,5:ANY queued=2\n'
        "app 4 name=plain ports= queued=0\n"
        'uptime many\nsomething new\napp "unterminated\n'
    )
    st = cspmux.parse_status(text)
    assert (st["node"], st["uptime"], st["socket"]) == (5, 12, "/tmp/x.sock")
    assert st["links"] == ["udp 127.0.0.1:9700"]
    assert st["apps"] == [
        {"id": 3, "name": 'a "b"\x01', "ports": [{"addr": 5, "port": 10}, {"addr": 5, "port": None}], "queued": 2},
        {"id": 4, "name": "plain", "ports": [], "queued": 0},
    ]
    assert st["other"] == ["uptime many", "something new", 'app "unterminated']
    assert cspmux.parse_record('link k1 kiss at="/dev/a b"') == {
        "kind": "link",
        "args": ["k1", "kiss"],
        "fields": {"at": "/dev/a b"},
    }
