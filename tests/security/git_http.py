"""A stand-in git host on loopback: git's own smart-HTTP server (`git http-backend`) behind HTTPS and Basic
auth, so tests see what a real forge sees: which requests arrived and with which credential.

The certificate is self-signed for 127.0.0.1; a test trusts it through GIT_SSL_CAINFO, the one way an
operator hands git a private CA (the control plane passes that variable through and no other).
"""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HTTP_BACKEND = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                              check=True).stdout.strip() + "/git-http-backend"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, written into `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class GitHost:
    """Serves the repositories under `root` at https://127.0.0.1:<port>/<name>; needs `user:password`."""

    root: Path
    user: str
    password: str
    cert: Path
    port: int = 0
    authorizations: list[str | None] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"


def _handler(host: GitHost):
    expected = "Basic " + base64.b64encode(f"{host.user}:{host.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: the tests assert on `authorizations`
            pass

        def _serve(self):
            auth = self.headers.get("Authorization")
            host.authorizations.append(auth)
            if auth != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(host.root),
                   "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                   "REQUEST_METHOD": self.command, "REMOTE_USER": host.user,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body))}
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True, check=False)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

    return Handler


def start_git_host(root: Path, folder: Path, user: str, password: str) -> tuple[GitHost, ThreadingHTTPServer]:
    """Start the host in a thread; call `server.shutdown()` when done."""
    cert, key = self_signed_certificate(folder)
    host = GitHost(root=root, user=user, password=password, cert=cert)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(host))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return host, server
