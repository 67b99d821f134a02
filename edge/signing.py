"""Ed25519 signatures of deploy bundles (docs/bundle.md §3).

The signature covers the bytes of ``bundle.json``, which lists the sha256 of every file of the
bundle, so with the checksums verified a signed bundle cannot have any file replaced, even with
its checksum updated. Keys are PEM files: the private key (PKCS#8, kept on the export machine)
signs, the public key (SubjectPublicKeyInfo) is what the vehicle trusts. ``cryptography`` is
imported only when a key is used, so bundles load without it when no keys are given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from uwstego.errors import UwstegoError
from uwstego.settings_io import parse_json_bounded, read_bounded

SIGNATURE_FILE = "bundle.sig"
ALGORITHM = "ed25519"
FORMAT = "uwstego-bundle-signature"
VERSION = 1
# What is signed starts with this, so the signature cannot be taken for one over other data.
_DOMAIN = b"uwstego bundle signature v1\n"
MAX_KEY_BYTES = 16 << 10


class SignatureError(UwstegoError, ValueError):
    """A key that cannot be used, or a signature that is missing, malformed or does not match."""


def _crypto() -> SimpleNamespace:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ModuleNotFoundError as exc:
        raise SignatureError("signed bundles need the Python package 'cryptography', which is "
                             "not installed here (pip install 'uwstego[edge]')") from exc
    return SimpleNamespace(InvalidSignature=InvalidSignature, serialization=serialization,
                           ed25519=ed25519)


def key_id(public_key: Any) -> str:
    """A short name of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    s = _crypto().serialization
    raw = public_key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key(path: str | Path, what: str) -> bytes:
    try:
        return read_bounded(path, what, MAX_KEY_BYTES)
    except FileNotFoundError:
        raise SignatureError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise SignatureError(f"{what} {path}: {exc.strerror}") from exc


def load_private_key(path: str | Path) -> Any:
    """The Ed25519 private key in the PEM file ``path``."""
    c = _crypto()
    try:
        key = c.serialization.load_pem_private_key(_read_key(path, "signing key"), None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signing key {path} is not an unencrypted PEM private key "
                             f"({exc}); make one with `uwstego keygen`") from exc
    if not isinstance(key, c.ed25519.Ed25519PrivateKey):
        raise SignatureError(f"signing key {path} is a {type(key).__name__}, not Ed25519; "
                             "make one with `uwstego keygen`")
    return key


def load_public_keys(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The trusted Ed25519 public keys in the PEM files ``paths``, by :func:`key_id`."""
    c = _crypto()
    keys = {}
    for path in paths:
        try:
            key = c.serialization.load_pem_public_key(_read_key(path, "trusted key"))
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"trusted key {path} is not a PEM public key ({exc}); "
                                 "`uwstego keygen` writes one (KEY.pub.pem)") from exc
        if not isinstance(key, c.ed25519.Ed25519PublicKey):
            raise SignatureError(f"trusted key {path} is a {type(key).__name__}, not Ed25519")
        keys[key_id(key)] = key
    return keys


def generate_key_pair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new key pair (the private key readable by its owner only); returns its id.

    Existing files are never overwritten: losing a key that bundles were signed with would make
    them unverifiable.
    """
    c = _crypto()
    s = c.serialization
    key = c.ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    public = key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise SignatureError(f"{path} exists: refusing to overwrite a key") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return key_id(key.public_key())


def sign(document: bytes, private_key: Any) -> bytes:
    """The signature file's content for ``document`` (the bytes of bundle.json)."""
    signature = private_key.sign(_DOMAIN + document)
    doc = {"format": FORMAT, "version": VERSION, "algorithm": ALGORITHM,
           "key_id": key_id(private_key.public_key()),
           "bundle_json_sha256": hashlib.sha256(document).hexdigest(),
           "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def verify(document: bytes, signature_file: Path, trusted: Mapping[str, Any]) -> str:
    """Check ``signature_file`` over ``document`` against the ``trusted`` keys (by id); returns
    the id of the key that signed, or raises SignatureError saying what is wrong."""
    c = _crypto()
    if not signature_file.is_file():
        raise SignatureError(f"{signature_file} is missing: the bundle is not signed, and "
                             "trusted keys were given")
    try:
        doc = parse_json_bounded(read_bounded(signature_file, "signature", 4096),
                                 f"{signature_file}", max_depth=2)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT \
                or doc.get("algorithm") != ALGORITHM or doc.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} ({ALGORITHM}) file")
        signer = str(doc["key_id"])
        signature = base64.b64decode(str(doc["signature"]), validate=True)
    except (ValueError, KeyError) as exc:
        raise SignatureError(f"{signature_file}: malformed signature ({exc})") from exc
    if signer not in trusted:
        raise SignatureError(f"{signature_file}: signed by key {signer}, which is not one of the "
                             f"trusted keys ({', '.join(sorted(trusted))})")
    try:
        trusted[signer].verify(signature, _DOMAIN + document)
    except c.InvalidSignature:
        raise SignatureError(f"{signature_file}: the signature of key {signer} does not match "
                             "bundle.json: the bundle was changed after it was signed") from None
    return signer
