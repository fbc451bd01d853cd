"""A test CA and the certificates the sandbox's TLS servers present."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "s3.example.test"


@dataclass
class Certificates:
    """A test CA and server certificates, written as PEM files for nginx and clients."""

    directory: Path
    ca_bundle: Path = field(init=False)
    wildcard_cert: Path = field(init=False)
    wildcard_key: Path = field(init=False)
    narrow_cert: Path = field(init=False)
    narrow_key: Path = field(init=False)
    other_ca_bundle: Path = field(init=False)

    def __post_init__(self) -> None:
        import trustme

        self.directory.mkdir(parents=True, exist_ok=True)
        ca = self._ca = trustme.CA(organization_name="nimrunbook sandbox CA")
        self.ca_bundle = self.directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        self.wildcard_cert, self.wildcard_key = self.issue("s3", DOMAIN, f"*.{DOMAIN}", "127.0.0.1")
        # A certificate that forgets the bucket wildcard: the mistake preflight must name.
        narrow = ca.issue_cert(DOMAIN)
        self.narrow_cert, self.narrow_key = self.directory / "narrow.pem", self.directory / "narrow.key"
        narrow.private_key_pem.write_to_path(str(self.narrow_key))
        self.narrow_key.chmod(0o600)
        narrow.cert_chain_pems[0].write_to_path(str(self.narrow_cert))
        self.other_ca_bundle = self.directory / "other-ca.pem"
        trustme.CA(organization_name="some other CA").cert_pem.write_to_path(str(self.other_ca_bundle))

    def issue(self, name: str, *hosts: str) -> tuple[Path, Path]:
        """Certificate (with chain) and key for ``hosts`` from the same CA, e.g. for a TLS registry."""
        issued = self._ca.issue_cert(*hosts)
        cert, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        issued.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        with open(cert, "wb") as handle:
            for blob in issued.cert_chain_pems:
                handle.write(blob.bytes())
        return cert, key
