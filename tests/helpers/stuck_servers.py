"""Stand-in servers on 127.0.0.1 for the outbound-isolation tests: stuck ones and healthy ones.

``StuckServer`` accepts connections and then either trickles an endless status line and headers one byte
a second, or never sends a byte. It records every connection it accepted and every one the client
closed, so a test can assert that the client let go of each socket.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TRICKLE = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: y\r\n" * 10_000


class StuckServer:
    def __init__(
        self, *, trickle: bool = True, interval: float = 1.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.trickle = trickle
        self.tls = tls  # complete a TLS handshake first, then trickle inside it
        self.interval = interval
        self.accepted = 0
        self.closed_by_client = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> StuckServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        self.listener.close()

    def wait_for(self, predicate: Callable[[StuckServer], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate`` holds (a generous bound against a hang, not a timing assertion)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout=timeout)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.changed:
                self.accepted += 1
                self.changed.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.interval)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            for byte in TRICKLE:
                if self.stop.is_set():
                    return
                try:
                    if self.trickle:
                        conn.sendall(bytes([byte]))
                    # A closed peer reads as EOF; a shut-down one as EOF or a reset.
                    if conn.recv(1) == b"":
                        break
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                except OSError:
                    break
            with self.changed:
                self.closed_by_client += 1
                self.changed.notify_all()


class HealthyFhir:
    """Answers every read and search at once: a Patient, or a one-entry searchset Bundle."""

    def __init__(self, answer: Callable[[str], dict[str, Any]] | None = None) -> None:
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        owner = self
        answer = answer or _default_answer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.paths.append(self.path)
                owner.authorizations.append(self.headers.get("Authorization"))
                payload = json.dumps(answer(self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"

    def __enter__(self) -> HealthyFhir:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _default_answer(path: str) -> dict[str, Any]:
    if path.startswith("/fhir/Patient/"):
        return {"resourceType": "Patient", "id": path.split("/")[3].split("?")[0], "birthDate": "1970-01-01"}
    resource = {"resourceType": "Condition", "id": "c1", "code": {"text": "hypertension"}}
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource}]}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (PEM files in ``directory``), for TLS stand-ins."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
