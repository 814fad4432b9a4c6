"""Where the API keeps the client credentials practices send with, and how they are protected.

Why the API holds keys at all: an integrator creates practices through the API and cannot edit the server's
files, so ``CertificateEnroll`` takes the certificate with its key (PEM, or a PKCS#12 bundle) when the practice
is to send through ``MessageSend``. Enrolling a certificate without its key only lets the receiver accept it.

How they are kept:

- one PKCS#12 file per certificate, ``<directory>/<sha256 fingerprint>.p12``, encrypted (AES-256 with a PBKDF2
  key, cryptography's best available PKCS#12 encryption) with the passphrase in a separate file, so that a copy
  of the directory (a backup) alone reveals no key;
- the directory is mode 0700 and each file 0600 from its first byte (written through a temporary file and
  renamed, so a sending thread never reads half a file); a passphrase file readable by others is refused;
- a key is never answered, logged or echoed; revoking the certificate deletes its file.

Sending loads them through :func:`xdr_edge.certs.load_identity` (the PKCS#12 password from the passphrase file),
as a practice of the sender's configuration file would be. The passphrase file is read by the same function
(:func:`xdr_edge.certs.read_secret_file`, one trailing newline dropped) here and there, so that the passphrase
a file is written with is always the one it is read with.
"""

from __future__ import annotations

__all__ = ["CredentialVault"]

import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from xdr_edge.certs import read_secret_file
from xdr_edge.minting import IssuedCert
from xdr_edge.practice import ClientCredential
from xdr_edge.protocol.errors import ConfigurationError


class CredentialVault:
    """Encrypted PKCS#12 files in one private directory; thread-safe (each operation is one file operation)."""

    def __init__(self, directory: Path, passphrase_file: Path) -> None:
        self.directory = Path(directory)
        self.passphrase_file = Path(passphrase_file)

    def check(self) -> None:
        """Create the directory (0700) when missing; refuse a missing, empty or group/world-readable
        passphrase file, or a directory others can read, naming the file and the fix."""
        where = str(self.passphrase_file)
        try:
            mode = self.passphrase_file.stat().st_mode
        except FileNotFoundError:
            raise ConfigurationError(
                f"credential passphrase file {where} not found; create it with "
                f"'umask 077; openssl rand -base64 32 > {where}'",
                location=where,
            ) from None
        if stat.S_IMODE(mode) & 0o077:
            raise ConfigurationError(
                f"credential passphrase file {where} is readable by other users; chmod 600 it", location=where
            )
        if not self._passphrase().strip():
            raise ConfigurationError(f"credential passphrase file {where} is empty", location=where)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) & 0o077:
            raise ConfigurationError(
                f"credential directory {self.directory} is open to other users; chmod 700 it",
                location=str(self.directory),
            )

    def _passphrase(self) -> bytes:
        return read_secret_file(self.passphrase_file)

    def _path(self, fingerprint: str) -> Path:
        if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
            raise ValueError("not a normalized SHA-256 fingerprint")
        return self.directory / f"{fingerprint}.p12"

    def store(
        self,
        fingerprint: str,
        cert: x509.Certificate,
        key: PrivateKeyTypes,
        chain: tuple[x509.Certificate, ...] = (),
    ) -> None:
        """Keep ``cert`` with ``key`` (replacing what was kept for that certificate)."""
        IssuedCert(cert, key, chain).write_p12(self._path(fingerprint), self._passphrase())  # type: ignore[arg-type]

    def credential(self, fingerprint: str) -> ClientCredential | None:
        """The credential to send with, when the key of this certificate is kept."""
        path = self._path(fingerprint)
        if not path.is_file():
            return None
        return ClientCredential(p12=path, p12_password_file=self.passphrase_file)

    def has(self, fingerprint: str) -> bool:
        """Whether the key of this certificate is kept (the practice can send with it)."""
        return self._path(fingerprint).is_file()

    def remove(self, fingerprint: str) -> bool:
        """Delete the kept key of this certificate; False when none was kept."""
        try:
            os.unlink(self._path(fingerprint))
        except FileNotFoundError:
            return False
        return True
