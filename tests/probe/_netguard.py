"""Refuse every socket connection that does not go to this machine's loopback address.

Installed by the probe in its own process, and (through ``sitecustomize`` in
``tests/probe/netguard_site``) in the command-line subprocesses it starts.
"""

import socket

_LOCAL = ("127.0.0.1", "::1", "localhost")


def install():
    if getattr(socket.socket.connect, "_probe_guard", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def _check(address):
        if isinstance(address, tuple) and address and address[0] not in _LOCAL:
            raise ConnectionRefusedError(f"the bad-input probe refuses network access to {address!r}")

    def connect(self, address):
        _check(address)
        return original_connect(self, address)

    def connect_ex(self, address):
        _check(address)
        return original_connect_ex(self, address)

    original_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL and host not in (None, "", b"localhost", b"127.0.0.1"):
            raise socket.gaierror(f"the bad-input probe refuses to resolve {host!r} (no network)")
        return original_getaddrinfo(host, *args, **kwargs)

    connect._probe_guard = True
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
