"""SMTP test peer: aiosmtpd with TLS (required STARTTLS, or implicit TLS) and AUTH.

Usage: smtp_tls_peer.py HOST PORT CERT KEY USER PASSWORD [starttls|tls]
Prints READY when listening, then for each accepted message:
TLS <bool>, AUTH <login>, the raw message, and END MESSAGE. Runs until killed.
"""

import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    host, port, cert, key, user, password = sys.argv[1:7]
    mode = sys.argv[7] if len(sys.argv) > 7 else "starttls"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            data = session.auth_data
            login = data.login.decode() if session.authenticated and isinstance(data, LoginPassword) else "-"
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            wrapped = server.transport.get_extra_info("ssl_object") is not None
            print("TLS", session.ssl is not None or wrapped, flush=True)
            print("AUTH", login, flush=True)
            print("RCPT", " ".join(envelope.rcpt_tos), flush=True)
            print(envelope.content.decode("utf-8", "replace"), flush=True)
            print("END MESSAGE", flush=True)
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if mode == "tls":
        # The whole connection is TLS; aiosmtpd only tracks STARTTLS for
        # auth_require_tls, so that check is moot (and would hide AUTH) here.
        tls = {"ssl_context": context, "auth_require_tls": False}
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    else:
        tls = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    controller = Controller(
        Handler(),
        hostname=host,
        port=int(port),
        authenticator=authenticator,
        auth_required=True,
        **tls,
    )
    controller.start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
