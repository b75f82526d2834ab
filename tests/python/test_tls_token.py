"""A Python grpcio client against `mobilesam serve` with TLS and a bearer token.

The certificates (a CA and a server certificate for 127.0.0.1) are made at test time with
`cryptography`; the server, weights and stubs are those of test_grpc_client.py.
"""

import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_grpc_client import Server, Session, _binary, _checkpoint, make_png, pb  # noqa: F401

TOKEN = "py-s3cret"


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A server speaking TLS only and requiring the bearer token; yields (server, CA PEM)."""
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(_name("py test CA"), _name("py test CA"), ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name("localhost"), ca_cert.subject, key.public_key(), ca_key, False)
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    token_file = directory / "token"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    token_file.write_text(TOKEN + "\n")
    srv = Server(
        _binary(),
        _checkpoint(),
        extra_args=[
            "--tls-cert", str(cert_file), "--tls-key", str(key_file),
            "--auth-token-file", str(token_file),
        ],
    )
    yield srv, ca_cert.public_bytes(serialization.Encoding.PEM)
    assert srv.stop() == 0, "server did not exit cleanly:\n" + "\n".join(srv.logs[-20:])


def _channel(server, ca_pem, token):
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    channel = grpc.secure_channel(server.grpc_addr, credentials)
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


def test_tls_with_token_serves_a_session(pb, tls_server):  # noqa: F811
    pb2, pb2_grpc = pb
    server, ca_pem = tls_server
    channel = _channel(server, ca_pem, TOKEN)
    stub = pb2_grpc.SegmentAnythingStub(channel)
    assert stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=60).name == "mobile_sam"
    session = Session(pb2, stub)
    session.send(set_image=pb2.SetImage(image=make_png(32, 24)))
    ready = session.recv().image_ready
    assert (ready.width, ready.height) == (32, 24)
    prompt = pb2.Prompt(
        request_id=4,
        objects=[pb2.ObjectPrompt(points=[pb2.Point(x=10, y=8, label=1)])],
    )
    session.send(prompt=prompt)
    assert session.recv().masks.request_id == 4
    assert session.close() == []
    channel.close()


def test_without_the_token_only_health_answers(pb, tls_server):  # noqa: F811
    pb2, pb2_grpc = pb
    server, ca_pem = tls_server
    for token in (None, "wrong"):
        channel = _channel(server, ca_pem, token)
        stub = pb2_grpc.SegmentAnythingStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=60)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # grpc.health.v1.Health/Check with an empty request: SERVING is field 1 = 1.
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        assert check(b"", timeout=60) == b"\x08\x01"
        channel.close()
