#!/usr/bin/env python3
"""A TLS front for a plain TCP server, for tests (garage speaks no TLS itself).

  scripts/tls-proxy.py certs DIR NAME   a CA (DIR/NAME-ca.pem) and a certificate
                                        for 127.0.0.1 it signed (DIR/NAME.pem, .key)
  scripts/tls-proxy.py serve PORT TARGET_PORT CERT KEY
                                        terminate TLS on 127.0.0.1:PORT and relay
                                        every connection to 127.0.0.1:TARGET_PORT
"""
import asyncio
import ssl
import subprocess
import sys


def certs(directory, name):
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca = f"{directory}/{name}-ca.key", f"{directory}/{name}-ca.pem"
    key, csr, cert = f"{directory}/{name}.key", f"{directory}/{name}.csr", f"{directory}/{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=test CA {name}", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)
    ext = f"{directory}/{name}.ext"
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", cert)


async def relay(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def serve(port, target, cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, server_writer), relay(server_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "certs":
        certs(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]))
    else:
        sys.exit(__doc__)
