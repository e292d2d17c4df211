"""Ed25519 signing and verification through libsodium (PyNaCl's compiled binding), without
``cryptography``.

Why its own module: a daemon whose key is Ed25519 signs every reply and checks every request
with these two functions alone, so it need not import ``cryptography`` (about 11 MB of
resident memory, most of it its Rust extension) once its credentials are loaded; see
:mod:`orch.security.isolated`. :mod:`orch.security.pki.keys` uses the same functions.

The cffi module itself (``nacl._sodium``) is used rather than ``nacl.bindings``: it imports
in 0.4 ms where the wrappers take 4 ms. Before it is trusted, libsodium must reproduce the
RFC 8032 test vector 1 (key from seed, signature, verification) and refuse a damaged
signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# RFC 8032, section 7.1, TEST 1 (empty message).
_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
    "39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

_lib: Any = None  # (ffi, lib) once loaded and checked, False when unusable


def load() -> Any:
    """``(ffi, lib)`` of libsodium, checked once; False when PyNaCl is missing or broken."""
    global _lib
    if _lib is None:
        try:
            from nacl._sodium import ffi, lib  # type: ignore[import-not-found,unused-ignore]

            if lib.sodium_init() < 0:
                raise RuntimeError("sodium_init failed")
            _lib = (ffi, lib)
            secret, public = _keypair(_SEED)
            bad = bytes([_SIGNATURE[0] ^ 1]) + _SIGNATURE[1:]
            if (public != _PUBLIC or _sign(secret, b"") != _SIGNATURE
                    or not verify(_PUBLIC, _SIGNATURE, b"") or verify(_PUBLIC, bad, b"")):
                raise RuntimeError("libsodium failed the RFC 8032 self-test")
        except Exception as exc:  # not installed, or a broken build: cryptography does it
            log.debug("libsodium unavailable for Ed25519 (%s); using cryptography", exc)
            _lib = False
    return _lib


def available() -> bool:
    return bool(load())


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """libsodium's ``crypto_sign_open`` over ``signature || data`` (it releases the GIL).

    The length check is essential: ``crypto_sign_open`` takes the first 64 bytes of what it
    is given as the signature, so a shorter signature would borrow bytes of the message.
    Call only after :func:`load` returned true.
    """
    if len(signature) != 64 or len(public_key) != 32:
        return False
    ffi, lib = _lib
    signed = signature + data
    out = ffi.new("unsigned char[]", len(signed))
    out_len = ffi.new("unsigned long long *")
    return bool(lib.crypto_sign_open(out, out_len, signed, len(signed), public_key) == 0)


def _keypair(seed: bytes) -> tuple[bytes, bytes]:
    """libsodium's 64-byte secret key (seed || public) and the public key for ``seed``."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    ffi, lib = _lib
    public = ffi.new("unsigned char[]", 32)
    secret = ffi.new("unsigned char[]", 64)
    if lib.crypto_sign_seed_keypair(public, secret, seed) != 0:
        raise ValueError("libsodium refused the Ed25519 seed")
    return bytes(ffi.buffer(secret, 64)), bytes(ffi.buffer(public, 32))


def _sign(secret: bytes, data: bytes) -> bytes:
    """The 64-byte signature of ``data`` (PyNaCl's binding has only the combined
    ``crypto_sign``, which returns ``signature || data``)."""
    ffi, lib = _lib
    signed = ffi.new("unsigned char[]", len(data) + 64)
    signed_len = ffi.new("unsigned long long *")
    if lib.crypto_sign(signed, signed_len, data, len(data), secret) != 0:
        raise ValueError("libsodium could not sign")
    return bytes(ffi.buffer(signed, 64))


def signer(seed: bytes) -> tuple[Callable[[bytes], bytes], bytes]:
    """``(sign, public_key)`` for the Ed25519 private key ``seed`` (its 32 raw bytes).

    Ed25519 signatures are deterministic: ``sign(data)`` gives exactly the bytes
    ``cryptography``'s ``Ed25519PrivateKey.sign`` gives for the same key.
    """
    if not load():
        raise ValueError("signing with libsodium needs PyNaCl (pip install pynacl)")
    secret, public = _keypair(seed)

    def sign(data: bytes) -> bytes:
        return _sign(secret, data)

    return sign, public
