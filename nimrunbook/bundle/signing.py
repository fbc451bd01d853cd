"""Detached signatures with OpenSSH (``ssh-keygen -Y sign``).

Why OpenSSH and not GnuPG: ssh-keygen is on every Linux and macOS host as part
of openssh-client, its keys are one-line files an engineer already knows how
to make and hand over, and verification needs only the signer's public key in
an ``allowed_signers`` file: no keyring, trust database or agent on either
side of the air gap. Signatures are made in the ``nimrunbook-bundle``
namespace, so a signature made for anything else does not verify here.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from nimrunbook.errors import InputError, VerificationError

NAMESPACE = "nimrunbook-bundle"
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


def verify_signature(path: Path, public_key: str | Path) -> None:
    """Check ``<path>.sig`` against the signer's public key; raises :class:`VerificationError` when it fails."""
    signature = path.with_name(path.name + ".sig")
    if not signature.exists():
        raise VerificationError(
            f"{signature.name} is missing: the bundle is not signed.", hint="Ask for a signed bundle."
        )
    key_text = Path(public_key).read_text().strip()
    with tempfile.TemporaryDirectory() as scratch:
        allowed = Path(scratch) / "allowed_signers"
        allowed.write_text(f'{SIGNER} namespaces="{NAMESPACE}" {key_text}\n')
        with open(path, "rb") as message:
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
                    str(signature),
                ],
                stdin=message,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
    if result.returncode != 0:
        raise VerificationError(
            f"The signature {signature.name} does not verify with {public_key}: {(result.stderr or result.stdout).strip()}",
            hint="Do not import this bundle. The files were changed after signing, or signed with another key.",
        )


def verify_command(file_name: str) -> str:
    """The exact shell command a person runs to check a signature by hand."""
    return (
        f'echo "{SIGNER} namespaces=\\"{NAMESPACE}\\" $(cat signer.pub)" > allowed_signers && '
        f"ssh-keygen -Y verify -f allowed_signers -I {SIGNER} -n {NAMESPACE} -s {file_name}.sig < {file_name}"
    )
