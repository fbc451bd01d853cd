"""Detached signatures with OpenSSH (``ssh-keygen -Y sign``).

Why OpenSSH and not GnuPG: ssh-keygen is on every Linux and macOS host as part
of openssh-client, its keys are one-line files an engineer already knows how
to make and hand over, and verification needs only the signer's public key in
an ``allowed_signers`` file: no keyring, trust database or agent on either
side of the air gap. Signatures are made in the ``nimrunbook-bundle``
namespace, so a signature made for anything else does not verify here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from nimrunbook.errors import InputError, VerificationError

NAMESPACE = "nimrunbook-bundle"
MAX_PUBLIC_KEY = 16 * 1024
_PUBLIC_KEY = re.compile(r"(ssh-|ecdsa-|sk-)\S+ \S+")
SIGNER = "nimrunbook-bundle-signer"


def _ssh_keygen() -> str:
    binary = shutil.which("ssh-keygen")
    if binary is None:
        raise InputError(
            "ssh-keygen is not installed, so the bundle cannot be signed or its signature checked.",
            hint="Install OpenSSH's client (apt-get install openssh-client).",
        )
    return binary


def sign(path: Path, private_key: str | Path) -> Path:
    """Write ``<path>.sig`` next to ``path``; returns it."""
    if not Path(private_key).is_file():
        raise InputError(
            f"The signing key {private_key} does not exist.",
            hint="Make one with `ssh-keygen -t ed25519 -f bundle-signing-key`.",
        )
    signature = path.with_name(path.name + ".sig")
    signature.unlink(missing_ok=True)
    result = subprocess.run(
        [_ssh_keygen(), "-Y", "sign", "-f", str(private_key), "-n", NAMESPACE, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise InputError(
            f"ssh-keygen could not sign {path.name}: {result.stderr.strip()}",
            hint="Use an unencrypted key, or load it into ssh-agent first.",
        )
    return signature


def read_public_key(public_key: str | Path) -> str:
    """The one line of an OpenSSH public key file; raises :class:`InputError` for anything else."""
    try:
        with open(public_key, "rb") as handle:  # a bounded read: the path might name a device or a FIFO
            text = handle.read(MAX_PUBLIC_KEY).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise InputError(
            f"Cannot read the public key {public_key}: {reason}.",
            hint="Give the signer's OpenSSH public key file (one line, e.g. ssh-ed25519 AAAA... signer).",
        ) from exc
    if len(text.splitlines()) != 1 or not _PUBLIC_KEY.match(text):
        raise InputError(
            f"{public_key} is not an OpenSSH public key.",
            hint="Give the signer's .pub file (one line, e.g. ssh-ed25519 AAAA... signer), not the private key.",
        )
    return text


def fingerprint(key_text: str) -> str:
    """A public key line's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:<base64> (<type>)``.

    What a signature line names, so that an auditor can tell which key signed (or checked) a bundle.
    """
    kind, blob = (key_text.split() + ["", ""])[:2]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"The public key {kind} {blob[:16]}... is not base64.") from exc
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return f"SHA256:{digest} ({kind})"


def public_key_of(private_key: str | Path) -> str:
    """The public key line of a private key: its ``.pub`` beside it, else derived by ``ssh-keygen -y``."""
    beside = Path(f"{private_key}.pub")
    if beside.is_file():
        return read_public_key(beside)
    result = subprocess.run([_ssh_keygen(), "-y", "-f", str(private_key)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InputError(f"Cannot read the public half of the key {private_key}: {result.stderr.strip()}")
    return result.stdout.strip()


def verify_bytes(message: bytes, signature: bytes, key_text: str, name: str, key_name: str | Path) -> None:
    """Check a detached signature of ``message`` (the bytes already read, never read again by path);
    raises :class:`VerificationError` when it does not verify."""
    with tempfile.TemporaryDirectory() as scratch:
        allowed = Path(scratch) / "allowed_signers"
        allowed.write_text(f'{SIGNER} namespaces="{NAMESPACE}" {key_text}\n')
        signature_file = Path(scratch) / "signature"
        signature_file.write_bytes(signature)
        result = subprocess.run(
            [
                _ssh_keygen(),
                "-Y",
                "verify",
                "-f",
                str(allowed),
                "-I",
                SIGNER,
                "-n",
                NAMESPACE,
                "-s",
                str(signature_file),
            ],
            input=message,
            capture_output=True,
            check=False,
            timeout=120,
        )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[:300]
        raise VerificationError(
            f"The signature {name}.sig does not verify with {key_name}: {output}",
            hint="Do not import this bundle. The files were changed after signing, or signed with another key.",
        )


def verify_command(file_name: str) -> str:
    """The exact shell command a person runs to check a signature by hand."""
    return (
        f'echo "{SIGNER} namespaces=\\"{NAMESPACE}\\" $(cat signer.pub)" > allowed_signers && '
        f"ssh-keygen -Y verify -f allowed_signers -I {SIGNER} -n {NAMESPACE} -s {file_name}.sig < {file_name}"
    )
