"""SMTP test peer: aiosmtpd with required STARTTLS and AUTH (PLAIN/LOGIN).

Usage: smtp_tls_peer.py HOST PORT CERT KEY USER PASSWORD
Prints READY when listening, then for each accepted message:
TLS <bool>, AUTH <login>, the raw message, and END MESSAGE. Runs until killed.
"""

import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    host, port, cert, key, user, password = sys.argv[1:7]

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
            print("TLS", session.ssl is not None, flush=True)
            print("AUTH", login, flush=True)
            print("RCPT", " ".join(envelope.rcpt_tos), flush=True)
            print(envelope.content.decode("utf-8", "replace"), flush=True)
            print("END MESSAGE", flush=True)
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Handler(),
        hostname=host,
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
