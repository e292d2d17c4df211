"""Keys and signatures: generating keys, signing bodies, and the fastest available verifier.

Why its own module: the per-message hot path (:func:`verifier_for`) needs nothing of the CA
or of certificate files, and the choice of Ed25519 backend (libsodium or ``cryptography``)
is a concern of its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from orch.core.errors import OrchError
from orch.security import sodium

log = logging.getLogger(__name__)

KEY_TYPES = ("ed25519", "rsa", "ecdsa")
RSA_SIZES = (2048, 3072, 4096)
DEFAULT_RSA_BITS = 3072

SigningKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class PKIError(OrchError):
    """A CA operation failed (missing CA, file exists, unreadable file); the message says why."""



def generate_key(key_type: str = "ed25519", rsa_bits: int = DEFAULT_RSA_BITS) -> SigningKey:
    """A new private key. Ed25519 is the default: small certificates, fast signatures."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa":
        if rsa_bits not in RSA_SIZES:
            raise PKIError(f"RSA keys must have {', '.join(map(str, RSA_SIZES))} bits, "
                           f"not {rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise PKIError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def key_type_of(key: SigningKey | PublicKey | Any) -> str:
    """A short description of a key (``ed25519``, ``rsa-3072``, ``ecdsa-secp256r1``)."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ecdsa-{key.curve.name}"
    return type(key).__name__


def sign(key: SigningKey, data: bytes) -> bytes:
    """Sign ``data``: Ed25519 as is, RSA with PKCS#1 v1.5 + SHA-256, ECDSA with SHA-256.

    PKCS#1 v1.5 (not PSS) is deterministic and what MCollective's and Choria's RSA signatures
    use, so the same key signs the same bytes the same way in every tool.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise PKIError(f"cannot sign with a {key_type_of(key)} key; use ed25519, rsa or ecdsa")


def verify_signature(public_key: Any, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is ``sign(key, data)`` for the private half of ``public_key``.

    Returns False (never raises) for a wrong signature or an unsupported key type, so that a
    verifier has exactly one failure path to handle.
    """
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


#: Signature checks run through :func:`verifier_for`; ``"auto"`` prefers libsodium (PyNaCl)
#: for Ed25519 when it is installed, ``"cryptography"`` never uses it.
ED25519_BACKENDS = ("auto", "sodium", "cryptography")


def _load_sodium() -> Any:
    """libsodium, checked once (see :mod:`orch.security.sodium`), or False when unusable."""
    return sodium.load()


def _sodium_verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    return sodium.verify(public_key, signature, data)


Verifier = Callable[[bytes, bytes], bool]


def verifier_for(public_key: Any, backend: str = "auto") -> Verifier:
    """A function ``(signature, data) -> bool`` for ``public_key``, the fastest available.

    Same contract as :func:`verify_signature` (False, never an exception, for anything
    wrong). For Ed25519, libsodium through PyNaCl verifies about twice as fast as
    ``cryptography``'s OpenSSL path on this project's machines (bench/test_bench_verify.py
    prints both), so ``auto`` uses it when installed; every other key type, and
    ``backend="cryptography"``, goes through :func:`verify_signature`.
    """
    if backend not in ED25519_BACKENDS:
        raise ValueError(f"unknown Ed25519 backend {backend!r}; choose one of "
                         f"{', '.join(ED25519_BACKENDS)}")
    if isinstance(public_key, ed25519.Ed25519PublicKey) and backend != "cryptography":
        if _load_sodium():
            raw = public_key.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
            return functools.partial(sodium.verify, raw)
        if backend == "sodium":
            raise ValueError("the sodium Ed25519 backend needs PyNaCl (pip install pynacl)")
    return functools.partial(verify_signature, public_key)


def ed25519_verifier(raw: bytes, backend: str = "auto") -> Verifier:
    """:func:`verifier_for` an Ed25519 public key given as its 32 raw bytes."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    if backend != "cryptography" and _load_sodium():
        return functools.partial(sodium.verify, bytes(raw))
    return verifier_for(ed25519.Ed25519PublicKey.from_public_bytes(raw), backend)
