#!/usr/bin/env python3
"""Independent reference implementation of the tacit-v1 profile (X3DH and the
Double Ratchet with header encryption), of the envelope layer (PROTOCOL.md
section 10: padding, Content, sealed sender with the version-2 SealedContent
of 14.4), of user identity (PROTOCOL.md section 14: device certificates,
signed device lists, safety numbers, linking a device) and of the relay's
registration and login transcripts (docs/relay.md), used only to
cross-check test vectors.

Usage:
    python3 tacit_ref.py generate OUTDIR     write OUTDIR/x3dh.json, ratchet.json, pqxdh.json and group.json
    python3 tacit_ref.py verify FILE...      check x3dh.json and ratchet.json (docs/PROTOCOL.md 8.1), envelope.json,
                                             identity.json, pqxdh.json (15.12, profile tacit-v2: pqxdh_ref.py)
                                             and group.json (16.9, groups: group_ref.py)

Dependencies: Python 3.11 standard library and PyNaCl (libsodium bindings);
kyber-py 1.2.0 for pqxdh.json only.
X25519 and the AEADs come from libsodium; HKDF/HMAC come from hashlib/hmac;
Ed25519 point decoding and strict verification are done here with plain
integers, so that the acceptance rule is exactly the profile's (see
verify_strict below), independent of libsodium's own rule.
"""

import hashlib
import hmac
import json
import os
import re
import sys
import unicodedata

import nacl.bindings as nb
import nacl.exceptions

# pqxdh_ref (profile tacit-v2) imports this module by name, also when it runs
# as a script; it is imported only when a tacit-v2 file is read or written, so
# kyber-py is needed only then.
sys.modules.setdefault("tacit_ref", sys.modules[__name__])

PROFILE = "tacit-v1"
DEFAULT_MAX_SKIP = 1000
DEFAULT_MAX_STORED_SKIPPED = 2000
U32_MAX = 2**32 - 1

INFO_X3DH = b"tacit/x3dh/v1"
INFO_SESSION = b"tacit/session/v1"
INFO_ROOT = b"tacit/ratchet/root/v1"
INFO_MESSAGE = b"tacit/ratchet/message/v1"


class ProtocolError(Exception):
    """An error the profile says the protocol returns (an expected outcome)."""


class BundleError(ProtocolError):
    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class VectorError(Exception):
    """The vector file is malformed or disagrees with this implementation."""


# ---------------------------------------------------------------------------
# HKDF-SHA256 (RFC 5869) and HMAC-SHA256

def hmac_sha256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(salt, ikm, info, length):
    prk = hmac_sha256(salt, ikm)
    okm = b""
    t = b""
    i = 1
    while len(okm) < length:
        t = hmac_sha256(prk, t + info + bytes([i]))
        okm += t
        i += 1
    return okm[:length]


# ---------------------------------------------------------------------------
# Curve25519 arithmetic with plain integers

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
ED_D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _inv(x):
    return pow(x, P - 2, P)


def _sqrt_ratio(u, v):
    """Return the non-negative (even) x with v*x^2 == u mod p, or None."""
    u %= P
    v %= P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    vxx = v * x * x % P
    if vxx == u:
        pass
    elif vxx == (-u) % P:
        x = x * SQRT_M1 % P
    else:
        return None
    if x & 1:
        x = P - x
    return x % P


# Extended twisted Edwards coordinates (X, Y, Z, T), a = -1.
ED_IDENTITY = (0, 1, 1, 0)


def ed_add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * ED_D * t2 % P
    d = z1 * 2 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def ed_neg(pt):
    x, y, z, t = pt
    return ((-x) % P, y, z, (-t) % P)


def ed_mul(k, pt):
    q = ED_IDENTITY
    while k > 0:
        if k & 1:
            q = ed_add(q, pt)
        pt = ed_add(pt, pt)
        k >>= 1
    return q


def ed_eq(p1, p2):
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def ed_encode(pt):
    x, y, z, _ = pt
    zi = _inv(z)
    x = x * zi % P
    y = y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def ed_decode(b):
    """Decode a 32-byte Edwards point the way curve25519-dalek's
    CompressedEdwardsY::decompress does (what ed25519-dalek 2.x uses):
    the y coordinate is the low 255 bits reduced mod p (values >= p are NOT
    rejected), x is the non-negative square root, negated when the sign bit is
    set (also when x == 0).  Returns None when y is not the y of a point.
    RFC 8032 section 5.1.3 would instead reject y >= p and (x == 0, sign 1);
    all points with such encodings except those with y mod p in 2..18 are of
    small order, so the difference only matters for non-canonical encodings.
    """
    if len(b) != 32:
        return None
    n = int.from_bytes(b, "little")
    sign = n >> 255
    y = (n & ((1 << 255) - 1)) % P
    yy = y * y % P
    x = _sqrt_ratio(yy - 1, ED_D * yy + 1)
    if x is None:
        return None
    if sign:
        x = (-x) % P
    return (x, y, 1, x * y % P)


def ed_is_small_order(pt):
    return ed_eq(ed_mul(8, pt), ED_IDENTITY)


ED_B = ed_decode(bytes.fromhex(
    "5866666666666666666666666666666666666666666666666666666666666666"))


def ed_secret_scalar(seed):
    h = hashlib.sha512(seed).digest()
    a = bytearray(h[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little"), h[32:]


def ed_public_from_seed(seed):
    a, _ = ed_secret_scalar(seed)
    return ed_encode(ed_mul(a, ED_B))


def ed_sign(seed, msg):
    """RFC 8032 Ed25519 signing with integers (cross-checked against
    libsodium in generate)."""
    a, prefix = ed_secret_scalar(seed)
    pub = ed_encode(ed_mul(a, ED_B))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % L
    rb = ed_encode(ed_mul(r, ED_B))
    k = int.from_bytes(hashlib.sha512(rb + pub + msg).digest(), "little") % L
    s = (r + k * a) % L
    return rb + s.to_bytes(32, "little")


def verify_strict(pub, msg, sig):
    """Strict Ed25519 verification with exactly the profile's rule, which is
    the acceptance rule of ed25519-dalek 2.x `verify_strict` (without the
    `legacy_compatibility` feature):
      1. S (little-endian, 32 bytes) < L;
      2. A = pub decodes as a point (dalek decoding, see ed_decode);
      3. R = sig[:32] decodes as a point;
      4. neither A nor R is of small order ([8]P == identity);
      5. with k = SHA-512(R_bytes || A_bytes || msg) mod L (the bytes as
         received, not re-encoded), the canonical encoding of [S]B - [k]A
         equals R_bytes.
    Known differences from libsodium's crypto_sign_verify_detached /
    crypto_sign_open (which this program therefore does not use to verify):
      - libsodium rejects a public key A whose encoding is not canonical
        (y >= p); the profile/dalek rule decodes it (y reduced mod p) and
        accepts it if the point is not of small order and the equation holds
        with k hashed over the non-canonical bytes.  (Some y in 2..18 give
        points of large order, so such keys exist; they cannot arise from a
        seed, so none of the generated vectors exercises this.)
      - libsodium tests small order of A and R against a fixed list of
        encodings; the profile decodes and multiplies by 8.  The outcomes
        coincide for canonical encodings, and a non-canonical R is refused by
        both (R is compared by encoding in step 5).
      - libsodium built with ED25519_COMPAT only checks the top 3 bits of S;
        the profile requires S < L.
    """
    if len(pub) != 32 or len(sig) != 64:
        return False
    rb, sb = sig[:32], sig[32:]
    s = int.from_bytes(sb, "little")
    if s >= L:
        return False
    a_pt = ed_decode(pub)
    if a_pt is None:
        return False
    r_pt = ed_decode(rb)
    if r_pt is None:
        return False
    if ed_is_small_order(a_pt) or ed_is_small_order(r_pt):
        return False
    k = int.from_bytes(hashlib.sha512(rb + pub + msg).digest(), "little") % L
    check = ed_add(ed_mul(s, ED_B), ed_neg(ed_mul(k, a_pt)))
    return ed_encode(check) == rb


def equation_holds_unstrict(pub, msg, sig):
    """[S mod 2^256]B == R + [k]A as points, no other check (used by generate
    to show that crafted signatures are refused only by the strict rules)."""
    a_pt, r_pt = ed_decode(pub), ed_decode(sig[:32])
    if a_pt is None or r_pt is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    k = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    return ed_eq(ed_mul(s, ED_B), ed_add(r_pt, ed_mul(k, a_pt)))


def equation_holds_cofactored(pub, msg, sig):
    a_pt, r_pt = ed_decode(pub), ed_decode(sig[:32])
    if a_pt is None or r_pt is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    k = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    lhs = ed_mul(8, ed_mul(s, ED_B))
    rhs = ed_mul(8, ed_add(r_pt, ed_mul(k, a_pt)))
    return ed_eq(lhs, rhs)


def ed_to_montgomery(pub):
    """Birational map u = (1 + y) / (1 - y) of a decoded Edwards point
    (ed25519-dalek VerifyingKey::to_montgomery; 1 - y == 0 maps to u = 0)."""
    pt = ed_decode(pub)
    x, y, z, _ = pt
    y = y * _inv(z) % P
    u = (1 + y) * _inv((1 - y) % P) % P if (1 - y) % P else 0
    return u.to_bytes(32, "little")


def check_identity_key(pub):
    pt = ed_decode(pub)
    if pt is None:
        raise ProtocolError("identity key does not decode as an Edwards point")
    if ed_is_small_order(pt):
        raise ProtocolError("identity key is of small order")
    return pt


# ---------------------------------------------------------------------------
# X25519

def x25519_ladder(k, u):
    """RFC 7748 X25519 with integers (used to tell libsodium's refusals apart
    and to cross-check it)."""
    kb = bytearray(k)
    kb[0] &= 248
    kb[31] &= 127
    kb[31] |= 64
    scalar = int.from_bytes(kb, "little")
    x1 = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % P
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in reversed(range(255)):
        kt = (scalar >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a = (x2 + z2) % P
        aa = a * a % P
        b = (x2 - z2) % P
        bb = b * b % P
        e = (aa - bb) % P
        c = (x3 + z3) % P
        d = (x3 - z3) % P
        da = d * a % P
        cb = c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + 121665 * e) % P
    if swap:
        x2, x3, z2, z3 = x3, x2, z3, z2
    return (x2 * _inv(z2) % P).to_bytes(32, "little")


def dh(priv, pub):
    """X25519; an all-zero output is the profile's error.  libsodium refuses
    an all-zero output (and, in some builds, a fixed list of small-order
    inputs, which are exactly those giving a zero output); when it refuses,
    the integer ladder decides whether the output really is zero."""
    if len(priv) != 32 or len(pub) != 32:
        raise VectorError("bad key length")
    try:
        out = nb.crypto_scalarmult(priv, pub)
    except nacl.exceptions.RuntimeError:
        out = x25519_ladder(priv, pub)
        if any(out):
            raise VectorError("libsodium refused a DH whose output is not zero")
    if not any(out):
        raise ProtocolError("all-zero DH output")
    return out


def x25519_public(priv):
    return nb.crypto_scalarmult_base(priv)


def identity_x25519_private(seed):
    return hashlib.sha512(seed).digest()[:32]


# ---------------------------------------------------------------------------
# AEADs

def xchacha_encrypt(key, nonce, msg, aad):
    return nb.crypto_aead_xchacha20poly1305_ietf_encrypt(msg, aad, nonce, key)


def xchacha_decrypt(key, nonce, ct, aad):
    try:
        return nb.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key)
    except nacl.exceptions.CryptoError:
        return None


def chacha_encrypt(key, nonce, msg, aad):
    return nb.crypto_aead_chacha20poly1305_ietf_encrypt(msg, aad, nonce, key)


def chacha_decrypt(key, nonce, ct, aad):
    try:
        return nb.crypto_aead_chacha20poly1305_ietf_decrypt(ct, aad, nonce, key)
    except nacl.exceptions.CryptoError:
        return None


# ---------------------------------------------------------------------------
# X3DH

X3DH_INPUTS = ("alice_identity_seed", "bob_identity_seed",
               "bob_signed_prekey_private", "bob_signed_prekey_signature",
               "bob_one_time_prekey_private", "alice_ephemeral_private")


def x3dh(inp, offered_spk_pub=None):
    """Run X3DH as the initiator on the bundle made from the inputs (or
    offering offered_spk_pub instead of the SPK's real public key) and, for
    a bundle that is accepted, also as the responder, checking agreement.
    inp holds bytes (None for an absent OPK)."""
    a_seed = inp["alice_identity_seed"]
    b_seed = inp["bob_identity_seed"]
    spk_priv = inp["bob_signed_prekey_private"]
    sig = inp["bob_signed_prekey_signature"]
    opk_priv = inp["bob_one_time_prekey_private"]
    ek_priv = inp["alice_ephemeral_private"]

    ika_pub = ed_public_from_seed(a_seed)
    ikb_pub = ed_public_from_seed(b_seed)
    spk_pub = x25519_public(spk_priv) if offered_spk_pub is None else offered_spk_pub
    opk_pub = None if opk_priv is None else x25519_public(opk_priv)
    ek_pub = x25519_public(ek_priv)

    # Alice receives the bundle (IK_B, SPK_B, signature, OPK_B).
    check_identity_key(ikb_pub)
    if not verify_strict(ikb_pub, spk_pub, sig):
        raise BundleError("signature")
    ika_x = identity_x25519_private(a_seed)
    ikb_mont = ed_to_montgomery(ikb_pub)
    try:
        dhs = [dh(ika_x, spk_pub), dh(ek_priv, ikb_mont), dh(ek_priv, spk_pub)]
        if opk_pub is not None:
            dhs.append(dh(ek_priv, opk_pub))
    except ProtocolError as e:
        raise BundleError("small_order", str(e))
    sk = hkdf(bytes(32), b"\xff" * 32 + b"".join(dhs), INFO_X3DH, 32)

    # Bob's side, from the prekey message (IK_A, EK_A, which OPK).
    check_identity_key(ika_pub)
    ikb_x = identity_x25519_private(b_seed)
    ika_mont = ed_to_montgomery(ika_pub)
    bdhs = [dh(spk_priv, ika_mont), dh(ikb_x, ek_pub), dh(spk_priv, ek_pub)]
    if opk_priv is not None:
        bdhs.append(dh(opk_priv, ek_pub))
    bsk = hkdf(bytes(32), b"\xff" * 32 + b"".join(bdhs), INFO_X3DH, 32)
    if bsk != sk:
        raise VectorError("initiator and responder disagree on SK")

    ad = ika_pub + ikb_pub
    okm = hkdf(bytes(32), sk, INFO_SESSION, 96)
    return {
        "alice_identity_public": ika_pub, "bob_identity_public": ikb_pub,
        "bob_signed_prekey_public": spk_pub, "bob_one_time_prekey_public": opk_pub,
        "alice_ephemeral_public": ek_pub,
        "sk": sk, "ad": ad, "root_key": okm[:32],
        "header_key_a": okm[32:64], "next_header_key_b": okm[64:96],
    }


# ---------------------------------------------------------------------------
# Double Ratchet with header encryption (Signal spec section 4)

def kdf_rk(rk, dh_out):
    okm = hkdf(rk, dh_out, INFO_ROOT, 96)
    return okm[:32], okm[32:64], okm[64:96]


def kdf_ck(ck):
    return hmac_sha256(ck, b"\x02"), hmac_sha256(ck, b"\x01")  # (next CK, MK)


def message_key_material(mk):
    okm = hkdf(bytes(32), mk, INFO_MESSAGE, 44)
    return okm[:32], okm[32:44]


def hdecrypt(hk, enc_header, ad):
    if hk is None or len(enc_header) != 80:
        return None
    h = xchacha_decrypt(hk, enc_header[:24], enc_header[24:], ad)
    if h is None or len(h) != 40:
        return None
    return (h[:32], int.from_bytes(h[32:36], "big"), int.from_bytes(h[36:40], "big"))


class Party:
    """Session state.  `privs` is the list of ratchet private keys the party
    draws from (generate passes a growing list); `drawn` counts draws and is
    part of the state, so a rolled-back decryption also rolls back draws."""

    FIELDS = ("dhs_priv", "dhs_pub", "dhr", "rk", "cks", "ckr", "hks", "hkr",
              "nhks", "nhkr", "ns", "nr", "pn", "skipped", "drawn",
              "max_skip", "max_stored", "ad", "privs", "source")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, None)

    def clone(self):
        c = Party()
        for f in self.FIELDS:
            setattr(c, f, getattr(self, f))
        c.skipped = dict(self.skipped)  # insertion order is kept
        return c

    def draw(self):
        if self.drawn >= len(self.privs):
            if self.source is None:
                raise VectorError("ratchet private list exhausted")
            self.privs.append(self.source(self.drawn))
        priv = self.privs[self.drawn]
        self.drawn += 1
        return priv


def _new_party(ad, privs, max_skip, source):
    s = Party()
    s.ad = ad
    s.privs = privs
    s.source = source
    s.drawn = 0
    s.max_skip = max_skip
    s.max_stored = DEFAULT_MAX_STORED_SKIPPED
    s.skipped = {}
    s.ns = s.nr = s.pn = 0
    return s


def init_alice(x, spk_pub, privs, max_skip, source=None):
    s = _new_party(x["ad"], privs, max_skip, source)
    s.dhs_priv = s.draw()
    s.dhs_pub = x25519_public(s.dhs_priv)
    s.dhr = spk_pub
    s.rk, s.cks, s.nhks = kdf_rk(x["root_key"], dh(s.dhs_priv, s.dhr))
    s.ckr = None
    s.hks = x["header_key_a"]
    s.hkr = None
    s.nhkr = x["next_header_key_b"]
    return s


def init_bob(x, spk_priv, privs, max_skip, source=None):
    s = _new_party(x["ad"], privs, max_skip, source)
    s.dhs_priv = spk_priv
    s.dhs_pub = x25519_public(spk_priv)
    s.dhr = None
    s.rk = x["root_key"]
    s.cks = s.ckr = None
    s.hks = None
    s.nhks = x["next_header_key_b"]
    s.hkr = None
    s.nhkr = x["header_key_a"]
    return s


def ratchet_encrypt(s, plaintext, header_nonce):
    """RatchetEncryptHE; mutates s.  Returns (header, enc_header, ciphertext)."""
    if s.cks is None or s.hks is None:
        raise ProtocolError("no sending chain yet")
    if s.ns >= U32_MAX:
        raise ProtocolError("sending chain exhausted")
    s.cks, mk = kdf_ck(s.cks)
    header = s.dhs_pub + s.pn.to_bytes(4, "big") + s.ns.to_bytes(4, "big")
    enc_header = header_nonce + xchacha_encrypt(s.hks, header_nonce, header, s.ad)
    s.ns += 1
    key, nonce = message_key_material(mk)
    ct = chacha_encrypt(key, nonce, plaintext, s.ad + enc_header)
    return header, enc_header, ct


def _decrypt_with(s, mk, enc_header, ct):
    key, nonce = message_key_material(mk)
    pt = chacha_decrypt(key, nonce, ct, s.ad + enc_header)
    if pt is None:
        raise ProtocolError("message authentication failed")
    return pt


def _try_skipped(s, enc_header, ct):
    # The spec loops over every stored (hk, n); HDECRYPT only depends on hk,
    # so try each distinct header key once and look (hk, header.n) up.
    tried = set()
    for hk, _n in list(s.skipped):
        if hk in tried:
            continue
        tried.add(hk)
        h = hdecrypt(hk, enc_header, s.ad)
        if h is not None and (hk, h[2]) in s.skipped:
            mk = s.skipped.pop((hk, h[2]))
            return True, _decrypt_with(s, mk, enc_header, ct)
    return False, None


def _skip(s, until):
    if s.nr + s.max_skip < until:
        raise ProtocolError("too many skipped messages")
    if s.ckr is not None:
        while s.nr < until:
            s.ckr, mk = kdf_ck(s.ckr)
            s.skipped[(s.hkr, s.nr)] = mk
            while len(s.skipped) > s.max_stored:
                del s.skipped[next(iter(s.skipped))]
            s.nr += 1


def ratchet_decrypt(state, enc_header, ct):
    """RatchetDecryptHE, transactional: returns (new_state, plaintext) or
    raises ProtocolError, leaving `state` untouched either way."""
    s = state.clone()
    found, pt = _try_skipped(s, enc_header, ct)
    if found:
        return s, pt
    h = hdecrypt(s.hkr, enc_header, s.ad)
    step = False
    if h is None:
        h = hdecrypt(s.nhkr, enc_header, s.ad)
        if h is None:
            raise ProtocolError("header does not decrypt")
        step = True
    dh_pub, pn, n = h
    if step:
        _skip(s, pn)
        # DHRatchetHE, receiving half.
        s.pn = s.ns
        s.ns = 0
        s.nr = 0
        s.hks = s.nhks
        s.hkr = s.nhkr
        s.dhr = dh_pub
        s.rk, s.ckr, s.nhkr = kdf_rk(s.rk, dh(s.dhs_priv, s.dhr))
    _skip(s, n)
    s.ckr, mk = kdf_ck(s.ckr)
    s.nr += 1
    pt = _decrypt_with(s, mk, enc_header, ct)
    if step:
        # DHRatchetHE, sending half: only once the message authenticated.
        s.dhs_priv = s.draw()
        s.dhs_pub = x25519_public(s.dhs_priv)
        s.rk, s.cks, s.nhks = kdf_rk(s.rk, dh(s.dhs_priv, s.dhr))
    return s, pt


# ---------------------------------------------------------------------------
# Strict JSON reading

HEX_RE = re.compile(r"\A(?:[0-9a-f]{2})*\Z")


def _no_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise VectorError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _keys(obj, required, optional=(), where=""):
    if not isinstance(obj, dict):
        raise VectorError(f"{where}: expected an object")
    missing = [k for k in required if k not in obj]
    extra = [k for k in obj if k not in required and k not in optional]
    if missing:
        raise VectorError(f"{where}: missing field(s) {', '.join(missing)}")
    if extra:
        raise VectorError(f"{where}: unknown field(s) {', '.join(extra)}")


def _hex(v, n, where, nullable=False):
    if v is None and nullable:
        return None
    if not isinstance(v, str) or not HEX_RE.match(v):
        raise VectorError(f"{where}: not lowercase hex")
    b = bytes.fromhex(v)
    if n is not None and len(b) != n:
        raise VectorError(f"{where}: expected {n} bytes, got {len(b)}")
    return b


def _int(v, where):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise VectorError(f"{where}: expected a non-negative integer")
    return v


def _str(v, where):
    if not isinstance(v, str):
        raise VectorError(f"{where}: expected a string")
    return v


def _x3dh_inputs(obj, where):
    return {
        "alice_identity_seed": _hex(obj["alice_identity_seed"], 32, where + ".alice_identity_seed"),
        "bob_identity_seed": _hex(obj["bob_identity_seed"], 32, where + ".bob_identity_seed"),
        "bob_signed_prekey_private": _hex(obj["bob_signed_prekey_private"], 32,
                                          where + ".bob_signed_prekey_private"),
        "bob_signed_prekey_signature": _hex(obj["bob_signed_prekey_signature"], 64,
                                            where + ".bob_signed_prekey_signature"),
        "bob_one_time_prekey_private": _hex(obj["bob_one_time_prekey_private"], 32,
                                            where + ".bob_one_time_prekey_private", True),
        "alice_ephemeral_private": _hex(obj["alice_ephemeral_private"], 32,
                                        where + ".alice_ephemeral_private"),
    }


EXPECTED_X3DH = (("alice_identity_public", 32), ("bob_identity_public", 32),
                 ("bob_signed_prekey_public", 32), ("bob_one_time_prekey_public", 32),
                 ("alice_ephemeral_public", 32), ("sk", 32), ("ad", 64),
                 ("root_key", 32), ("header_key_a", 32), ("next_header_key_b", 32))


# ---------------------------------------------------------------------------
# verify

def verify_x3dh_case(c):
    where = "case"
    _keys(c, ("name",) + X3DH_INPUTS + ("expected",), where=where)
    inp = _x3dh_inputs(c, where)
    exp = c["expected"]
    _keys(exp, [k for k, _ in EXPECTED_X3DH], where=where + ".expected")
    want = {}
    for k, n in EXPECTED_X3DH:
        want[k] = _hex(exp[k], n, f"expected.{k}", k == "bob_one_time_prekey_public")
    try:
        got = x3dh(inp)
    except ProtocolError as e:
        raise VectorError(f"bundle refused: {e}")
    for k, _ in EXPECTED_X3DH:
        if got[k] != want[k]:
            g = None if got[k] is None else got[k].hex()
            raise VectorError(f"expected.{k} mismatch: computed {g}")


def verify_invalid_entry(c):
    where = "invalid"
    _keys(c, ("name",) + X3DH_INPUTS + ("bob_signed_prekey_public", "error"), where=where)
    inp = _x3dh_inputs(c, where)
    offered = _hex(c["bob_signed_prekey_public"], 32, "bob_signed_prekey_public")
    err = c["error"]
    if err not in ("signature", "small_order"):
        raise VectorError(f"error must be \"signature\" or \"small_order\", got {err!r}")
    try:
        x3dh(inp, offered_spk_pub=offered)
    except BundleError as e:
        if e.kind != err:
            raise VectorError(f"refused with {e.kind!r}, expected {err!r}")
        return
    except ProtocolError as e:
        raise VectorError(f"refused for another reason: {e}")
    raise VectorError("bundle accepted, expected refusal")


def verify_ratchet_case(c):
    _keys(c, ("name", "x3dh", "alice_ratchet_privates", "bob_ratchet_privates",
              "messages", "events"), ("max_skip",), where="case")
    max_skip = _int(c["max_skip"], "max_skip") if "max_skip" in c else DEFAULT_MAX_SKIP
    _keys(c["x3dh"], X3DH_INPUTS, where="x3dh")
    inp = _x3dh_inputs(c["x3dh"], "x3dh")
    privs = {}
    for who in ("alice", "bob"):
        lst = c[f"{who}_ratchet_privates"]
        if not isinstance(lst, list):
            raise VectorError(f"{who}_ratchet_privates: expected a list")
        privs[who] = [_hex(v, 32, f"{who}_ratchet_privates[{i}]") for i, v in enumerate(lst)]
    msgs = c["messages"]
    if not isinstance(msgs, list):
        raise VectorError("messages: expected a list")
    parsed = []
    for i, m in enumerate(msgs):
        w = f"messages[{i}]"
        _keys(m, ("sender", "plaintext", "header_nonce", "expected"), where=w)
        if m["sender"] not in ("alice", "bob"):
            raise VectorError(f"{w}.sender: must be \"alice\" or \"bob\"")
        _keys(m["expected"], ("header", "enc_header", "ciphertext"), where=w + ".expected")
        parsed.append({
            "sender": m["sender"],
            "plaintext": _hex(m["plaintext"], None, w + ".plaintext"),
            "header_nonce": _hex(m["header_nonce"], 24, w + ".header_nonce"),
            "header": _hex(m["expected"]["header"], 40, w + ".expected.header"),
            "enc_header": _hex(m["expected"]["enc_header"], 80, w + ".expected.enc_header"),
            "ciphertext": _hex(m["expected"]["ciphertext"], None, w + ".expected.ciphertext"),
        })
    events = c["events"]
    if not isinstance(events, list):
        raise VectorError("events: expected a list")
    for j, ev in enumerate(events):
        w = f"events[{j}]"
        if not isinstance(ev, dict) or "op" not in ev:
            raise VectorError(f"{w}: expected an object with op")
        op = ev["op"]
        if op == "send":
            _keys(ev, ("op", "message"), where=w)
        elif op == "deliver":
            _keys(ev, ("op", "message", "expect"), where=w)
            if ev["expect"] not in ("ok", "error"):
                raise VectorError(f"{w}.expect: must be \"ok\" or \"error\"")
        elif op == "deliver_tampered":
            _keys(ev, ("op", "message", "byte", "expect"), where=w)
            _int(ev["byte"], w + ".byte")
            if ev["expect"] != "error":
                raise VectorError(f"{w}.expect: must be \"error\"")
        else:
            raise VectorError(f"{w}: unknown op {op!r}")
        idx = _int(ev["message"], w + ".message")
        if idx >= len(parsed):
            raise VectorError(f"{w}: no message {idx}")

    try:
        x = x3dh(inp)
    except ProtocolError as e:
        raise VectorError(f"x3dh block is not a valid bundle: {e}")
    if not privs["alice"]:
        raise VectorError("alice_ratchet_privates is empty (it must hold her initial pair)")
    st = {"alice": init_alice(x, x["bob_signed_prekey_public"], privs["alice"], max_skip),
          "bob": init_bob(x, inp["bob_signed_prekey_private"], privs["bob"], max_skip)}

    next_send = 0
    for j, ev in enumerate(events):
        w = f"events[{j}] ({ev['op']} {ev['message']})"
        i = ev["message"]
        m = parsed[i]
        if ev["op"] == "send":
            if i != next_send:
                raise VectorError(f"{w}: sends must name messages in index order, expected {next_send}")
            next_send += 1
            try:
                header, enc_header, ct = ratchet_encrypt(st[m["sender"]], m["plaintext"],
                                                         m["header_nonce"])
            except ProtocolError as e:
                raise VectorError(f"{w}: encryption refused: {e}")
            for k, v in (("header", header), ("enc_header", enc_header), ("ciphertext", ct)):
                if v != m[k]:
                    raise VectorError(f"{w}: expected.{k} mismatch: computed {v.hex()}")
            continue
        if i >= next_send:
            raise VectorError(f"{w}: delivered before it was sent")
        receiver = "bob" if m["sender"] == "alice" else "alice"
        wire = m["enc_header"] + m["ciphertext"]
        if ev["op"] == "deliver_tampered":
            k = ev["byte"]
            if k >= len(wire):
                raise VectorError(f"{w}: byte {k} out of range")
            wire = wire[:k] + bytes([wire[k] ^ 0xFF]) + wire[k + 1:]
        try:
            new_state, pt = ratchet_decrypt(st[receiver], wire[:80], wire[80:])
        except ProtocolError as e:
            if ev["expect"] == "ok":
                raise VectorError(f"{w}: delivery failed: {e}")
            continue
        if ev["expect"] == "error":
            raise VectorError(f"{w}: delivery succeeded, expected error")
        if pt != m["plaintext"]:
            raise VectorError(f"{w}: wrong plaintext")
        st[receiver] = new_state
    if next_send != len(parsed):
        raise VectorError(f"message {next_send} is never sent")
    for who in ("alice", "bob"):
        if st[who].drawn != len(privs[who]):
            raise VectorError(f"{who} used {st[who].drawn} of {len(privs[who])} ratchet privates")


def verify_file(path):
    """Returns (passed, failed) and prints a line per case."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"), object_pairs_hook=_no_dupes)
        if not isinstance(doc, dict):
            raise VectorError("top level is not an object")
        if "kem" in doc:
            import pqxdh_ref
            pqxdh_ref.check_top(doc)
            kind = "pqxdh"
        elif "group_states" in doc:
            import group_ref
            group_ref.check_top(doc)
            kind = "group"
        elif doc.get("profile") != PROFILE:
            raise VectorError(f"profile is not {PROFILE!r}")
        elif "device_lists" in doc:
            kind = "identity"
        elif "sealed" in doc:
            kind = "envelope"
        elif "invalid" in doc:
            kind = "x3dh"
        elif (isinstance(doc.get("cases"), list) and doc["cases"]
              and isinstance(doc["cases"][0], dict) and "alice_identity_seed" in doc["cases"][0]):
            kind = "x3dh"
        else:
            kind = "ratchet"
        if kind in ("pqxdh", "group"):
            pass
        elif kind in ("identity", "envelope"):
            lists = IDENTITY_LISTS if kind == "identity" else ENVELOPE_LISTS
            _keys(doc, ("profile",) + lists, where=f"top level ({kind}.json)")
            for k in lists:
                if not isinstance(doc[k], list):
                    raise VectorError(f"{k}: expected a list")
        elif kind == "x3dh":
            _keys(doc, ("profile", "cases", "invalid"), where="top level (x3dh.json)")
        else:
            _keys(doc, ("profile", "cases"), where="top level (ratchet.json)")
        for k in ("cases", "invalid"):
            if k in doc and not isinstance(doc[k], list):
                raise VectorError(f"{k}: expected a list")
    except (OSError, ValueError, ImportError, VectorError) as e:
        print(f"FAIL {path}: {e}")
        return 0, 1

    passed = failed = 0
    if kind == "identity":
        groups = identity_groups(doc)
    elif kind == "envelope":
        groups = envelope_groups(doc)
    elif kind == "pqxdh":
        groups = pqxdh_ref.groups(doc)
    elif kind == "group":
        groups = group_ref.groups(doc)
    else:
        groups = [(doc["cases"], verify_x3dh_case if kind == "x3dh" else verify_ratchet_case)]
    if kind == "x3dh":
        groups.append((doc["invalid"], verify_invalid_entry))
    for entries, fn in groups:
        for n, c in enumerate(entries):
            name = c.get("name") if isinstance(c, dict) else None
            if name is None and isinstance(c, dict) and isinstance(c.get("unpadded_len"), int):
                name = f"padding_{c['unpadded_len']}"
            if not isinstance(name, str):
                name = f"{path}#{n}"
            try:
                fn(c)
            except (VectorError, ProtocolError) as e:
                print(f"FAIL {name}: {e}")
                failed += 1
            except Exception as e:  # noqa: BLE001 - report, never crash
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                failed += 1
            else:
                print(f"ok {name}")
                passed += 1
    return passed, failed


def cmd_verify(paths):
    if not paths:
        print("usage: tacit_ref.py verify FILE...", file=sys.stderr)
        return 2
    passed = failed = 0
    for p in paths:
        a, b = verify_file(p)
        passed += a
        failed += b
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# Identity (PROTOCOL.md section 14): user keys, device certificates, signed
# device lists, safety numbers.  Written from the specification's text; the
# protobuf encoding and strict decoding are done by hand.

CERT_LABEL = b"tacit/identity/v1/device-certificate"
LIST_LABEL = b"tacit/identity/v1/device-list"
MAX_DEVICES = 16
MAX_DEVICE_LIST_LEN = 4096
MAX_USER_ID_LEN = 64
LIST_FORMAT = 1


class ListRefused(ProtocolError):
    """A device list refused: `name` is the error's name in identity.json,
    `field` the field (for the wire errors that name one), `device_id` the
    device (for invalid_certificate)."""

    def __init__(self, name, field=None, device_id=None):
        super().__init__(f"{name} (field {field}, device {device_id})")
        self.name = name
        self.field = field
        self.device_id = device_id


def cert_tbs(user_key, user_id, device_id, identity_key):
    return (CERT_LABEL + user_key + bytes([len(user_id)]) + user_id
            + device_id.to_bytes(4, "big") + identity_key)


def list_tbs(user_key, user_id, version, devices):
    """devices: list of (device_id, identity_key, added_at_ms, certificate)."""
    out = (LIST_LABEL + user_key + bytes([len(user_id)]) + user_id
           + version.to_bytes(8, "big") + bytes([len(devices)]))
    for device_id, ik, added, cert in devices:
        out += device_id.to_bytes(4, "big") + ik + added.to_bytes(8, "big") + cert
    return out


def pb_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_uint(tag, v):
    return pb_varint(tag << 3) + pb_varint(v) if v else b""


def pb_bytes(tag, v):
    return pb_varint((tag << 3) | 2) + pb_varint(len(v)) + v if v else b""


def encode_entry(device_id, ik, added, cert):
    return pb_uint(1, device_id) + pb_bytes(2, ik) + pb_uint(3, added) + pb_bytes(4, cert)


def encode_list(fmt, user_id, user_key, version, devices, signature):
    """proto3's canonical encoding: fields in tag order, defaults omitted;
    every repeated entry is written, even an empty one."""
    out = pb_uint(1, fmt) + pb_bytes(2, user_id) + pb_bytes(3, user_key) + pb_uint(4, version)
    for d in devices:
        e = encode_entry(*d)
        out += pb_varint((5 << 3) | 2) + pb_varint(len(e)) + e
    return out + pb_bytes(6, signature)


class _Malformed(Exception):
    pass


def _read_varint(b, i):
    v = shift = 0
    for n in range(10):
        if i >= len(b):
            raise _Malformed("truncated varint")
        c = b[i]
        i += 1
        if n == 9 and c > 1:
            raise _Malformed("varint over 64 bits")
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i
    raise _Malformed("varint over 10 bytes")


def _fields(b):
    """Yields (tag, wire_type, value) of a protobuf message; unknown fields
    of every wire type are read (groups skipped) so that they can be refused
    as non-canonical afterwards."""
    i = 0
    out = []
    while i < len(b):
        key, i = _read_varint(b, i)
        tag, wt = key >> 3, key & 7
        if tag == 0 or tag > 2**29 - 1:
            raise _Malformed("bad tag")
        if wt == 0:
            v, i = _read_varint(b, i)
        elif wt == 1:
            if i + 8 > len(b):
                raise _Malformed("truncated fixed64")
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            if i + 4 > len(b):
                raise _Malformed("truncated fixed32")
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = _read_varint(b, i)
            if i + n > len(b):
                raise _Malformed("truncated length-delimited field")
            v, i = b[i:i + n], i + n
        elif wt == 3:
            v, i = _skip_group(b, i, tag)
        else:
            raise _Malformed(f"wire type {wt}")
        out.append((tag, wt, v))
    return out


def _skip_group(b, i, tag, depth=0):
    if depth > 100:
        raise _Malformed("groups nested too deep")
    while True:
        if i >= len(b):
            raise _Malformed("unterminated group")
        key, i = _read_varint(b, i)
        t, wt = key >> 3, key & 7
        if wt == 4:
            if t != tag:
                raise _Malformed("mismatched end group")
            return None, i
        if wt == 0:
            _, i = _read_varint(b, i)
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        elif wt == 2:
            n, i = _read_varint(b, i)
            i += n
        elif wt == 3:
            _, i = _skip_group(b, i, t, depth + 1)
        else:
            raise _Malformed(f"wire type {wt}")
        if i > len(b):
            raise _Malformed("truncated field in group")


def _expect_wt(tag, wt, want):
    if wt != want:
        raise _Malformed(f"field {tag}: wire type {wt}")


def _decode_entry(b):
    e = {"device_id": 0, "identity_key": b"", "added_at_ms": 0, "certificate": b""}
    for tag, wt, v in _fields(b):
        if tag == 1:
            _expect_wt(tag, wt, 0)
            e["device_id"] = v & 0xFFFFFFFF       # uint32: a wider varint is truncated
        elif tag == 2:
            _expect_wt(tag, wt, 2)
            e["identity_key"] = v
        elif tag == 3:
            _expect_wt(tag, wt, 0)
            e["added_at_ms"] = v
        elif tag == 4:
            _expect_wt(tag, wt, 2)
            e["certificate"] = v
        elif wt == 4:
            raise _Malformed("unexpected end group")
    return e


def _decode_list(b):
    m = {"format": 0, "user_id": b"", "user_key": b"", "version": 0, "devices": [],
         "signature": b""}
    for tag, wt, v in _fields(b):
        if tag == 1:
            _expect_wt(tag, wt, 0)
            m["format"] = v & 0xFFFFFFFF
        elif tag == 2:
            _expect_wt(tag, wt, 2)
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("user_id is not UTF-8")
            m["user_id"] = v
        elif tag == 3:
            _expect_wt(tag, wt, 2)
            m["user_key"] = v
        elif tag == 4:
            _expect_wt(tag, wt, 0)
            m["version"] = v
        elif tag == 5:
            _expect_wt(tag, wt, 2)
            m["devices"].append(_decode_entry(v))
        elif tag == 6:
            _expect_wt(tag, wt, 2)
            m["signature"] = v
        elif wt == 4:
            raise _Malformed("unexpected end group")
    return m


def _user_id_ok(user_id):
    """Section 11's rule: 1 to 64 bytes of UTF-8, no control character."""
    if not 1 <= len(user_id) <= MAX_USER_ID_LEN:
        return False
    return not any(unicodedata.category(ch) == "Cc" for ch in user_id.decode("utf-8"))


def _fixed(field, value, n):
    if not value:
        raise ListRefused("missing_field", field)
    if len(value) != n:
        raise ListRefused("invalid_length", field)
    return value


def _key(field, value):
    _fixed(field, value, 32)
    pt = ed_decode(value)
    if pt is None or ed_is_small_order(pt):
        raise ListRefused("invalid_key", field)
    return value


def decode_device_list(b):
    """14.3: strict decoding, the list's rules, every certificate in device
    order, then the list signature.  Returns (user_id, user_key, version,
    devices) or raises ListRefused."""
    if len(b) > MAX_DEVICE_LIST_LEN:
        raise ListRefused("oversize")
    try:
        m = _decode_list(b)
    except _Malformed:
        raise ListRefused("malformed")
    devices = [(e["device_id"], e["identity_key"], e["added_at_ms"], e["certificate"])
               for e in m["devices"]]
    canonical = encode_list(m["format"], m["user_id"], m["user_key"], m["version"], devices,
                            m["signature"])
    if canonical != b:
        raise ListRefused("non_canonical")
    if m["format"] != LIST_FORMAT:
        raise ListRefused("unknown_version")
    # Field by field in message order: present, right length, valid key.
    if not m["user_id"]:
        raise ListRefused("missing_field", "user_id")
    uk = _key("user_key", m["user_key"])
    sig = _fixed("signature", m["signature"], 64)
    for device_id, ik, _, cert in devices:
        _key("identity_key", ik)
        _fixed("certificate", cert, 64)
    # The list's rules.
    if not _user_id_ok(m["user_id"]):
        raise ListRefused("invalid_value", "user_id")
    if m["version"] < 1:
        raise ListRefused("invalid_value", "version")
    if not 1 <= len(devices) <= MAX_DEVICES:
        raise ListRefused("invalid_value", "devices")
    seen_keys = set()
    previous = 0
    for device_id, ik, _, _ in devices:
        if device_id <= previous or ik in seen_keys:
            raise ListRefused("invalid_value", "devices")
        previous = device_id
        seen_keys.add(ik)
    for device_id, ik, _, cert in devices:
        if not verify_strict(uk, cert_tbs(uk, m["user_id"], device_id, ik), cert):
            raise ListRefused("invalid_certificate", device_id=device_id)
    if not verify_strict(uk, list_tbs(uk, m["user_id"], m["version"], devices), sig):
        raise ListRefused("invalid_list_signature")
    return m["user_id"], uk, m["version"], devices


def fingerprint_half(iterations, ident, key):
    h = hashlib.sha512(b"\x00\x00" + key + ident + key).digest()
    for _ in range(iterations - 1):
        h = hashlib.sha512(h + key).digest()
    return "".join(f"{int.from_bytes(h[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def fingerprint_digits(iterations, local_id, local_key, remote_id, remote_key):
    a = fingerprint_half(iterations, local_id, local_key)
    b = fingerprint_half(iterations, remote_id, remote_key)
    return a + b if a <= b else b + a


def _public_checked(seed):
    """Enc(K) of an Ed25519 seed, computed here and by libsodium."""
    ours = ed_public_from_seed(seed)
    pk, _ = nb.crypto_sign_seed_keypair(seed)
    if ours != pk:
        raise VectorError("Ed25519 public key: this program and libsodium disagree")
    return ours


def _same(what, computed, expected):
    if computed != expected:
        c = computed.hex() if isinstance(computed, bytes) else computed
        raise VectorError(f"{what} mismatch: computed {c}")


def _uid(v, where):
    return _str(v, where).encode("utf-8")


def _u32(v, where):
    v = _int(v, where)
    if v > 0xFFFFFFFF:
        raise VectorError(f"{where}: over u32")
    return v


def _u64(v, where):
    v = _int(v, where)
    if v > 0xFFFFFFFFFFFFFFFF:
        raise VectorError(f"{where}: over u64")
    return v


def verify_user_key_case(c):
    _keys(c, ("name", "seed", "expected"), where="user_keys")
    seed = _hex(c["seed"], 32, "seed")
    _keys(c["expected"], ("user_key",), where="user_keys.expected")
    _same("expected.user_key", _public_checked(seed), _hex(c["expected"]["user_key"], 32,
                                                           "expected.user_key"))


def verify_certificate_case(c):
    _keys(c, ("name", "user_key_seed", "user_id", "device_id", "identity_seed", "expected"),
          where="certificates")
    exp = c["expected"]
    _keys(exp, ("user_key", "identity_key", "cert_tbs", "certificate"),
          where="certificates.expected")
    uk_seed = _hex(c["user_key_seed"], 32, "user_key_seed")
    uid = _uid(c["user_id"], "user_id")
    device_id = _u32(c["device_id"], "device_id")
    uk = _public_checked(uk_seed)
    ik = _public_checked(_hex(c["identity_seed"], 32, "identity_seed"))
    if not _user_id_ok(uid) or device_id == 0:
        raise VectorError("not a valid address")
    _same("expected.user_key", uk, _hex(exp["user_key"], 32, "expected.user_key"))
    _same("expected.identity_key", ik, _hex(exp["identity_key"], 32, "expected.identity_key"))
    tbs = cert_tbs(uk, uid, device_id, ik)
    _same("expected.cert_tbs", tbs, _hex(exp["cert_tbs"], None, "expected.cert_tbs"))
    cert = sign_checked(uk_seed, tbs)
    _same("expected.certificate", cert, _hex(exp["certificate"], 64, "expected.certificate"))


def verify_device_list_case(c):
    _keys(c, ("name", "user_key_seed", "user_id", "version", "devices", "expected"),
          where="device_lists")
    exp = c["expected"]
    _keys(exp, ("user_key", "devices", "list_tbs", "signature", "wire"),
          where="device_lists.expected")
    uk_seed = _hex(c["user_key_seed"], 32, "user_key_seed")
    uid = _uid(c["user_id"], "user_id")
    version = _u64(c["version"], "version")
    if not isinstance(c["devices"], list) or not isinstance(exp["devices"], list):
        raise VectorError("devices: expected a list")
    inputs = []
    for d in c["devices"]:
        _keys(d, ("device_id", "identity_seed", "added_at_ms"), where="devices[]")
        inputs.append((_u32(d["device_id"], "device_id"),
                       _hex(d["identity_seed"], 32, "identity_seed"),
                       _u64(d["added_at_ms"], "added_at_ms")))
    inputs.sort(key=lambda d: d[0])
    uk = _public_checked(uk_seed)
    _same("expected.user_key", uk, _hex(exp["user_key"], 32, "expected.user_key"))
    if len(exp["devices"]) != len(inputs):
        raise VectorError("expected.devices: wrong count")
    devices = []
    for (device_id, ik_seed, added), want in zip(inputs, exp["devices"]):
        _keys(want, ("device_id", "identity_key", "certificate"), where="expected.devices[]")
        _same("expected.devices[].device_id", device_id, _u32(want["device_id"], "device_id"))
        ik = _public_checked(ik_seed)
        _same("expected.devices[].identity_key", ik, _hex(want["identity_key"], 32,
                                                           "identity_key"))
        cert = sign_checked(uk_seed, cert_tbs(uk, uid, device_id, ik))
        _same("expected.devices[].certificate", cert, _hex(want["certificate"], 64,
                                                            "certificate"))
        devices.append((device_id, ik, added, cert))
    tbs = list_tbs(uk, uid, version, devices)
    _same("expected.list_tbs", tbs, _hex(exp["list_tbs"], None, "expected.list_tbs"))
    sig = sign_checked(uk_seed, tbs)
    _same("expected.signature", sig, _hex(exp["signature"], 64, "expected.signature"))
    wire = encode_list(LIST_FORMAT, uid, uk, version, devices, sig)
    _same("expected.wire", wire, _hex(exp["wire"], None, "expected.wire"))
    try:
        decoded = decode_device_list(wire)
    except ListRefused as e:
        raise VectorError(f"the list is refused: {e}")
    _same("decoded list", decoded, (uid, uk, version, devices))


def verify_sequence(c, lists):
    _keys(c, ("name", "lists"), where="sequences")
    names = c["lists"]
    if not isinstance(names, list) or len(names) < 2:
        raise VectorError("lists: at least two names")
    previous = None
    for name in names:
        found = [d for d in lists if isinstance(d, dict) and d.get("name") == name]
        if not found:
            raise VectorError(f"no device list {name!r}")
        wire = _hex(found[0]["expected"]["wire"], None, "wire")
        try:
            user_id, uk, version, _ = decode_device_list(wire)
        except ListRefused as e:
            raise VectorError(f"{name}: refused: {e}")
        if previous is not None:
            if (user_id, uk) != previous[:2]:
                raise VectorError(f"{name}: another user id or user key")
            if version <= previous[2]:
                raise VectorError(f"{name}: the version does not grow")
        previous = (user_id, uk, version)


LIST_ERRORS = ("oversize", "malformed", "non_canonical", "unknown_version", "missing_field",
               "invalid_length", "invalid_key", "invalid_value", "invalid_certificate",
               "invalid_list_signature")


def verify_invalid_list(c):
    _keys(c, ("name", "wire", "error", "field", "device_id"), where="invalid_device_lists")
    wire = _hex(c["wire"], None, "wire")
    err = c["error"]
    if err not in LIST_ERRORS:
        raise VectorError(f"unknown error {err!r}")
    field = c["field"]
    device_id = c["device_id"]
    with_field = err in ("missing_field", "invalid_length", "invalid_key", "invalid_value")
    if with_field != isinstance(field, str) or (not with_field and field is not None):
        raise VectorError("field: a string exactly for the errors that name a field, else null")
    if err == "invalid_certificate":
        _u32(device_id, "device_id")
    elif device_id is not None:
        raise VectorError("device_id: null except for invalid_certificate")
    try:
        decode_device_list(wire)
    except ListRefused as e:
        got = (e.name, e.field, e.device_id)
        if got != (err, field, device_id):
            raise VectorError(f"refused with {got}, expected {(err, field, device_id)}")
        return
    raise VectorError("list accepted, expected refusal")


def verify_fingerprint_case(c):
    _keys(c, ("name", "iterations", "local_id", "local_key", "remote_id", "remote_key",
              "expected"), where="fingerprints")
    it = _int(c["iterations"], "iterations")
    if not 2 <= it <= 1_000_000:
        raise VectorError("iterations out of range")
    lid, rid = _uid(c["local_id"], "local_id"), _uid(c["remote_id"], "remote_id")
    lk, rk = _hex(c["local_key"], None, "local_key"), _hex(c["remote_key"], None, "remote_key")
    want = _str(c["expected"], "expected")
    _same("expected", fingerprint_digits(it, lid, lk, rid, rk), want)
    _same("expected (swapped)", fingerprint_digits(it, rid, rk, lid, lk), want)


def verify_safety_number_case(c):
    _keys(c, ("name", "local_user_id", "local_user_key_seed", "remote_user_id",
              "remote_user_key_seed", "expected"), where="safety_numbers")
    exp = c["expected"]
    _keys(exp, ("local_user_key", "remote_user_key", "safety_number"),
          where="safety_numbers.expected")
    lid, rid = _uid(c["local_user_id"], "local_user_id"), _uid(c["remote_user_id"],
                                                                "remote_user_id")
    lk = _public_checked(_hex(c["local_user_key_seed"], 32, "local_user_key_seed"))
    rk = _public_checked(_hex(c["remote_user_key_seed"], 32, "remote_user_key_seed"))
    _same("expected.local_user_key", lk, _hex(exp["local_user_key"], 32, "local_user_key"))
    _same("expected.remote_user_key", rk, _hex(exp["remote_user_key"], 32, "remote_user_key"))
    want = _str(exp["safety_number"], "safety_number")
    _same("expected.safety_number", fingerprint_digits(5200, lid, lk, rid, rk), want)
    _same("expected.safety_number (swapped)", fingerprint_digits(5200, rid, rk, lid, lk), want)


# ---------------------------------------------------------------------------
# Linking (PROTOCOL.md 14.7): link codes, slots and key, request and response
# blobs.

LINK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
LINK_LABEL = b"tacit/link/v1"
LINK_REQUEST_LABEL = b"tacit/link/v1/request"
LINK_NONCE_LEN = 24


class LinkRefused(ProtocolError):
    """A link blob refused: `name` is the error's name in identity.json."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


def link_code_text(code):
    """The 10 bytes as one 80-bit number, 16 characters of 5 bits from the
    most significant, in four groups of four."""
    n = int.from_bytes(code, "big")
    chars = [LINK_ALPHABET[(n >> (5 * (15 - i))) & 31] for i in range(16)]
    return "-".join("".join(chars[i:i + 4]) for i in range(0, 16, 4))


def link_code_parse(text):
    """The code's 10 bytes, or None: spaces and dashes dropped, ASCII case
    ignored, exactly 16 alphabet characters."""
    n = 0
    count = 0
    for ch in text:
        if ch in " -":
            continue
        if "a" <= ch <= "z":
            ch = chr(ord(ch) - 32)
        if ch not in LINK_ALPHABET:
            return None
        n = (n << 5) | LINK_ALPHABET.index(ch)
        count += 1
    if count != 16:
        return None
    return n.to_bytes(10, "big")


def link_secrets(code):
    okm = hkdf(b"\x00" * 32, code, LINK_LABEL, 96)
    return okm[:32], okm[32:64], okm[64:]


def link_seal(key, nonce, slot, payload):
    return nonce + xchacha_encrypt(key, nonce, payload, slot)


def link_open(key, slot, blob):
    if len(blob) < LINK_NONCE_LEN + 16:
        raise LinkRefused("link_blob_does_not_open")
    payload = xchacha_decrypt(key, blob[:LINK_NONCE_LEN], blob[LINK_NONCE_LEN:], slot)
    if payload is None:
        raise LinkRefused("link_blob_does_not_open")
    return payload


def link_request_payload(user_id, device_id, identity_key):
    return (LINK_REQUEST_LABEL + bytes([len(user_id)]) + user_id
            + device_id.to_bytes(4, "big") + identity_key)


def parse_link_request(payload):
    """(user_id, device_id, identity_key) or LinkRefused."""
    bad = LinkRefused("malformed_link_request")
    if not payload.startswith(LINK_REQUEST_LABEL):
        raise bad
    rest = payload[len(LINK_REQUEST_LABEL):]
    if not rest:
        raise bad
    n = rest[0]
    rest = rest[1:]
    if not 1 <= n <= MAX_USER_ID_LEN or len(rest) != n + 4 + 32:
        raise bad
    user_id = rest[:n]
    try:
        if not _user_id_ok(user_id):
            raise bad
    except UnicodeDecodeError:
        raise bad
    device_id = int.from_bytes(rest[n:n + 4], "big")
    if device_id == 0:
        raise bad
    ik = rest[n + 4:]
    try:
        check_identity_key(ik)
    except ProtocolError:
        raise bad
    return user_id, device_id, ik


def link_open_request(code, blob):
    request_slot, _, key = link_secrets(code)
    return parse_link_request(link_open(key, request_slot, blob))


def link_open_response(code, blob):
    _, response_slot, key = link_secrets(code)
    payload = link_open(key, response_slot, blob)
    try:
        return decode_device_list(payload)
    except ListRefused as e:
        raise LinkRefused(e.name)


def verify_link_code_case(c):
    _keys(c, ("name", "code", "expected"), where="link_codes")
    exp = c["expected"]
    _keys(exp, ("text", "request_slot", "response_slot", "key"), where="link_codes.expected")
    code = _hex(c["code"], 10, "code")
    text = _str(exp["text"], "expected.text")
    _same("expected.text", link_code_text(code), text)
    _same("expected.text (parsed back)", link_code_parse(text), code)
    _same("expected.text (typed)", link_code_parse(text.lower().replace("-", " ")), code)
    request_slot, response_slot, key = link_secrets(code)
    _same("expected.request_slot", request_slot, _hex(exp["request_slot"], 32, "request_slot"))
    _same("expected.response_slot", response_slot,
          _hex(exp["response_slot"], 32, "response_slot"))
    _same("expected.key", key, _hex(exp["key"], 32, "key"))


def verify_link_code_text(c):
    _keys(c, ("name", "text", "code"), where="link_code_texts")
    text = _str(c["text"], "text")
    code = _hex(c["code"], 10, "code", nullable=True)
    _same("code", link_code_parse(text), code)


def verify_link_request_case(c):
    _keys(c, ("name", "code", "user_id", "device_id", "identity_seed", "nonce", "expected"),
          where="link_requests")
    exp = c["expected"]
    _keys(exp, ("identity_key", "payload", "blob"), where="link_requests.expected")
    code = _hex(c["code"], 10, "code")
    uid = _uid(c["user_id"], "user_id")
    device_id = _u32(c["device_id"], "device_id")
    nonce = _hex(c["nonce"], 24, "nonce")
    ik = _public_checked(_hex(c["identity_seed"], 32, "identity_seed"))
    if not _user_id_ok(uid) or device_id == 0:
        raise VectorError("not a valid address")
    _same("expected.identity_key", ik, _hex(exp["identity_key"], 32, "identity_key"))
    payload = link_request_payload(uid, device_id, ik)
    _same("expected.payload", payload, _hex(exp["payload"], None, "payload"))
    request_slot, _, key = link_secrets(code)
    blob = link_seal(key, nonce, request_slot, payload)
    _same("expected.blob", blob, _hex(exp["blob"], None, "blob"))
    _same("opened request", link_open_request(code, blob), (uid, device_id, ik))


def verify_link_response_case(c, lists):
    _keys(c, ("name", "code", "device_list", "nonce", "expected"), where="link_responses")
    _keys(c["expected"], ("blob",), where="link_responses.expected")
    code = _hex(c["code"], 10, "code")
    nonce = _hex(c["nonce"], 24, "nonce")
    name = _str(c["device_list"], "device_list")
    found = [d for d in lists if isinstance(d, dict) and d.get("name") == name]
    if not found:
        raise VectorError(f"no device list {name!r}")
    wire = _hex(found[0]["expected"]["wire"], None, "wire")
    _, response_slot, key = link_secrets(code)
    blob = link_seal(key, nonce, response_slot, wire)
    _same("expected.blob", blob, _hex(c["expected"]["blob"], None, "blob"))
    try:
        opened = link_open_response(code, blob)
    except LinkRefused as e:
        raise VectorError(f"the response is refused: {e}")
    _same("opened list", opened, decode_device_list(wire))


LINK_ERRORS = ("link_blob_does_not_open", "malformed_link_request", "invalid_list_signature")


def verify_invalid_link_blob(c):
    _keys(c, ("name", "code", "slot", "blob", "error"), where="invalid_link_blobs")
    code = _hex(c["code"], 10, "code")
    blob = _hex(c["blob"], None, "blob")
    slot, err = c["slot"], c["error"]
    if slot not in ("request", "response"):
        raise VectorError(f"unknown slot {slot!r}")
    if err not in LINK_ERRORS:
        raise VectorError(f"unknown error {err!r}")
    try:
        (link_open_request if slot == "request" else link_open_response)(code, blob)
    except LinkRefused as e:
        if e.name != err:
            raise VectorError(f"refused with {e.name}, expected {err}")
        return
    raise VectorError("blob opened, expected refusal")


# ---------------------------------------------------------------------------
# The relay's registration and login transcripts (docs/relay.md, "Accounts
# and login").

RELAY_LOGIN_CONTEXT = b"tacit-relay-login-v1"
RELAY_REGISTER_CONTEXT = b"tacit-relay-register-v1"


def relay_transcript(context, server_name, challenge, timestamp_ms, user_id, device_id):
    return (context + bytes([len(server_name)]) + server_name + challenge
            + timestamp_ms.to_bytes(8, "big") + bytes([len(user_id)]) + user_id
            + device_id.to_bytes(4, "big"))


def verify_relay_transcript_case(c):
    _keys(c, ("name", "identity_seed", "server_name", "challenge", "timestamp_ms", "user_id",
              "device_id", "expected"), where="relay_transcripts")
    exp = c["expected"]
    _keys(exp, ("identity_key", "register_transcript", "register_signature", "login_transcript",
                "login_signature"), where="relay_transcripts.expected")
    seed = _hex(c["identity_seed"], 32, "identity_seed")
    server = _uid(c["server_name"], "server_name")
    if not 1 <= len(server) <= 255:
        raise VectorError("server_name: 1 to 255 bytes")
    challenge = _hex(c["challenge"], 32, "challenge")
    ts = _u64(c["timestamp_ms"], "timestamp_ms")
    uid = _uid(c["user_id"], "user_id")
    device_id = _u32(c["device_id"], "device_id")
    if not _user_id_ok(uid) or device_id == 0:
        raise VectorError("not a valid address")
    ik = _public_checked(seed)
    _same("expected.identity_key", ik, _hex(exp["identity_key"], 32, "identity_key"))
    register = relay_transcript(RELAY_REGISTER_CONTEXT, server, challenge, ts, uid, device_id) + ik
    _same("expected.register_transcript", register,
          _hex(exp["register_transcript"], None, "register_transcript"))
    _same("expected.register_signature", sign_checked(seed, register),
          _hex(exp["register_signature"], 64, "register_signature"))
    login = relay_transcript(RELAY_LOGIN_CONTEXT, server, challenge, ts, uid, device_id)
    _same("expected.login_transcript", login,
          _hex(exp["login_transcript"], None, "login_transcript"))
    _same("expected.login_signature", sign_checked(seed, login),
          _hex(exp["login_signature"], 64, "login_signature"))


IDENTITY_LISTS = ("user_keys", "certificates", "device_lists", "sequences",
                  "invalid_device_lists", "fingerprints", "safety_numbers", "link_codes",
                  "link_code_texts", "link_requests", "link_responses", "invalid_link_blobs",
                  "relay_transcripts")


def identity_groups(doc):
    return [
        (doc["user_keys"], verify_user_key_case),
        (doc["certificates"], verify_certificate_case),
        (doc["device_lists"], verify_device_list_case),
        (doc["sequences"], lambda c: verify_sequence(c, doc["device_lists"])),
        (doc["invalid_device_lists"], verify_invalid_list),
        (doc["fingerprints"], verify_fingerprint_case),
        (doc["safety_numbers"], verify_safety_number_case),
        (doc["link_codes"], verify_link_code_case),
        (doc["link_code_texts"], verify_link_code_text),
        (doc["link_requests"], verify_link_request_case),
        (doc["link_responses"], lambda c: verify_link_response_case(c, doc["device_lists"])),
        (doc["invalid_link_blobs"], verify_invalid_link_blob),
        (doc["relay_transcripts"], verify_relay_transcript_case),
    ]


# ---------------------------------------------------------------------------
# Envelope layer (PROTOCOL.md section 10, with section 14.4's sealed content
# version 2): padding, Content, sealed sender.  Written from the
# specification's text; the protobuf encoding and strict decoding are done
# by hand, as for the device lists.

SEALED_LABEL_EPHEMERAL = b"tacit/sealed/v1/ephemeral"
SEALED_LABEL_STATIC = b"tacit/sealed/v1/static"
SEALED_CONTENT_VERSION = 2
INNER_RESERVE = 420
TAG_LEN = 16
MAX_MESSAGE_LEN = 256 * 1024
MIN_ENCRYPTED_MESSAGE_LEN = TAG_LEN + INNER_RESERVE + TAG_LEN
MAX_ENVELOPE_LEN = MAX_MESSAGE_LEN + INNER_RESERVE + 256
PADDING_CAP = 131072
MAX_BODY_LEN = 130048
CONTENT_KINDS = {"text": 1, "attachment_pointer": 2, "delivery_receipt": 3,
                 "read_receipt": 4, "typing": 5, "session_control": 6}
ENVELOPE_ERRORS = ("malformed", "invalid_ephemeral_key", "sender_does_not_open",
                   "invalid_sender_identity", "content_does_not_open", "inner_malformed",
                   "inner_padding", "sender_identity_mismatch", "invalid_sender_certificate")
CONTENT_ERRORS = ("padding", "wire", "unknown_kind", "attachment_mismatch",
                  "invalid_attachment_pointer", "body_too_long")


class Refused(ProtocolError):
    """A named refusal of the envelope layer (content or envelope error)."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def padded_len(n_data):
    n = n_data + 1
    if n <= 5120:
        return -(-n // 160) * 160
    if n <= PADDING_CAP:
        e = n.bit_length() - 1            # floor(log2 n)
        step = 2 ** (e - e.bit_length())  # 2^(E - (floor(log2 E) + 1))
        return -(-n // step) * step
    raise Refused("padding", "too long")


def pad_to(data, target):
    return data + b"\x80" + bytes(max(0, target - len(data) - 1))


def strip_padding(padded):
    """data before the 0x80 marker, everything after it zero."""
    stripped = padded.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise Refused("padding", "no 0x80 marker after the data")
    return stripped[:-1]


def unpad(padded):
    data = strip_padding(padded)
    if padded_len(len(data)) != len(padded):
        raise Refused("padding", "not the data's bucket")
    return data


def _message(b, spec, what):
    """Decodes fields of `spec` ({tag: 'v' or 'b'}) once each; anything else,
    wrong wire types or repeats are malformed (re-encoding catches order and
    defaults)."""
    try:
        fields = _fields(b)
    except _Malformed as e:
        raise _Malformed(f"{what}: {e}") from None
    out = {}
    for tag, wt, v in fields:
        if tag not in spec or tag in out or wt != (0 if spec[tag] == "v" else 2):
            raise _Malformed(f"{what}: field {tag} (wire type {wt}) not canonical")
        out[tag] = v
    return out


def _canonical(b, encoded, what):
    if encoded != b:
        raise _Malformed(f"{what}: not the canonical encoding")


def _version(m, want, what):
    if m.get(1, 0) != want:
        raise _Malformed(f"{what}: version {m.get(1, 0)}")


def decode_ratchet_message(b):
    m = _message(b, {1: "v", 2: "b", 3: "b"}, "RatchetMessage")
    _canonical(b, pb_uint(1, m.get(1, 0)) + pb_bytes(2, m.get(2, b"")) + pb_bytes(3, m.get(3, b"")),
               "RatchetMessage")
    _version(m, 1, "RatchetMessage")
    if len(m.get(2, b"")) != 80 or len(m.get(3, b"")) < TAG_LEN:
        raise _Malformed("RatchetMessage: header or ciphertext length")
    return {"ciphertext": m[3]}


def decode_prekey_message(b):
    m = _message(b, {1: "v", 2: "b", 3: "b", 4: "v", 5: "v", 6: "b"}, "PreKeyMessage")
    opk = pb_varint(5 << 3) + pb_varint(m[5]) if 5 in m else b""
    inner = m.get(6)
    enc = (pb_uint(1, m.get(1, 0)) + pb_bytes(2, m.get(2, b"")) + pb_bytes(3, m.get(3, b""))
           + pb_uint(4, m.get(4, 0)) + opk
           + (pb_varint((6 << 3) | 2) + pb_varint(len(inner)) + inner if inner is not None else b""))
    _canonical(b, enc, "PreKeyMessage")
    _version(m, 1, "PreKeyMessage")
    if inner is None or len(m.get(2, b"")) != 32 or len(m.get(3, b"")) != 32:
        raise _Malformed("PreKeyMessage: missing message or key length")
    try:
        check_identity_key(m[2])
    except ProtocolError as e:
        raise _Malformed(f"PreKeyMessage: identity_key: {e}") from None
    r = decode_ratchet_message(inner)
    return {"identity_key": m[2], "ciphertext": r["ciphertext"]}


def decode_session_message(b):
    if len(b) > MAX_MESSAGE_LEN:
        raise _Malformed("SessionMessage: oversize")
    m = _message(b, {1: "b", 2: "b"}, "SessionMessage")
    if len(m) != 1:
        raise _Malformed("SessionMessage: not exactly one kind")
    (tag, v), = m.items()
    _canonical(b, pb_varint((tag << 3) | 2) + pb_varint(len(v)) + v, "SessionMessage")
    return decode_prekey_message(v) if tag == 1 else decode_ratchet_message(v)


# Content

def encode_pointer(p):
    return (pb_bytes(1, p["id"]) + pb_bytes(2, p["key"]) + pb_bytes(3, p["digest"])
            + pb_uint(4, p["size"]) + pb_bytes(5, p["content_type"]))


def encode_content(kind, timestamp, message_id, body, pointer):
    out = pb_uint(1, 1) + pb_uint(2, kind) + pb_uint(3, timestamp) + pb_bytes(4, message_id)
    out += pb_bytes(5, body)
    if pointer is not None:
        p = encode_pointer(pointer)
        out += pb_varint((6 << 3) | 2) + pb_varint(len(p)) + p
    return out


def _pointer_error(p):
    """The first pointer field out of range, in field order, or None."""
    try:
        ct = p["content_type"].decode("utf-8")
    except UnicodeDecodeError:
        return "content_type"
    checks = (("id", 1 <= len(p["id"]) <= 64), ("key", len(p["key"]) == 32),
              ("digest", len(p["digest"]) == 32), ("size", p["size"] <= 2**48),
              ("content_type", len(p["content_type"]) <= 128
               and not any(unicodedata.category(ch) == "Cc" for ch in ct)))
    for field, ok in checks:
        if not ok:
            return field
    return None


def _minimal_varint(b, i):
    v, j = _read_varint(b, i)
    if j - i != len(pb_varint(v)):
        raise _Malformed("non-minimal varint")
    return v, j


def split_unknown(data):
    """Section 10, forward compatibility: the offset at which a Content's
    unknown fields (numbered 7 and above) start. From there every record is
    an unknown field (minimal tag and varints, wire type 0, 1, 2 or 5), in
    non-decreasing field-number order; a known field after an unknown one is
    refused."""
    i, start, last = 0, None, 0
    while i < len(data):
        record = i
        key, i = _minimal_varint(data, i)
        number, wt = key >> 3, key & 7
        if number == 0 or number > 2**29 - 1:
            raise _Malformed("bad field number")
        if wt == 0:
            _, i = _minimal_varint(data, i)
        elif wt in (1, 5):
            i += 8 if wt == 1 else 4
        elif wt == 2:
            n, i = _minimal_varint(data, i)
            i += n
        else:
            raise _Malformed(f"wire type {wt}")
        if i > len(data):
            raise _Malformed("truncated record")
        if number >= 7:
            if start is None:
                start = record
            if number < last:
                raise _Malformed("unknown fields out of order")
            last = number
        elif start is not None:
            raise _Malformed("a known field after an unknown one")
    return len(data) if start is None else start


def decode_content(padded):
    """The content of a padded encoding: (kind, timestamp, message_id, body,
    pointer, unknown_fields), or Refused with the content error's name, the
    checks in section 10's order."""
    data = unpad(padded)
    try:
        if len(data) > PADDING_CAP - 1:
            raise _Malformed("oversize")
        cut = split_unknown(data)
        known, unknown = data[:cut], data[cut:]
        m = _message(known, {1: "v", 2: "v", 3: "v", 4: "b", 5: "b", 6: "b"}, "Content")
        pointer = None
        if 6 in m:
            pm = _message(m[6], {1: "b", 2: "b", 3: "b", 4: "v", 5: "b"}, "AttachmentPointer")
            pointer = {"id": pm.get(1, b""), "key": pm.get(2, b""), "digest": pm.get(3, b""),
                       "size": pm.get(4, 0), "content_type": pm.get(5, b"")}
            _canonical(m[6], encode_pointer(pointer), "AttachmentPointer")
            try:
                pointer["content_type"].decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("content_type is not UTF-8") from None
        enc = (pb_uint(1, m.get(1, 0)) + pb_uint(2, m.get(2, 0)) + pb_uint(3, m.get(3, 0))
               + pb_bytes(4, m.get(4, b"")) + pb_bytes(5, m.get(5, b""))
               + (pb_varint((6 << 3) | 2) + pb_varint(len(m[6])) + m[6] if 6 in m else b""))
        _canonical(known, enc, "Content")
        _version(m, 1, "Content")
    except _Malformed as e:
        raise Refused("wire", str(e)) from None
    kind = m.get(2, 0)
    if kind == 0:
        raise Refused("unknown_kind", "0")
    if len(m.get(4, b"")) != 16:
        raise Refused("wire", "message_id length")
    if pointer is not None and _pointer_error(pointer) is not None:
        raise Refused("invalid_attachment_pointer", _pointer_error(pointer))
    if len(m.get(5, b"")) > MAX_BODY_LEN:
        raise Refused("body_too_long")
    if kind <= 6 and (kind == 2) != (pointer is not None):
        raise Refused("attachment_mismatch")
    return kind, m.get(3, 0), m[4], m.get(5, b""), pointer, unknown


def delivery_token(unknown):
    """Section 10, "Extension field 16": the sender's delivery token in a
    content's unknown fields (as decode_content returns them, so already
    checked record by record), or None. The token is recorded only if
    exactly one record of field 16 is present, and it is of wire type 2 and
    16 to 64 bytes; every record of field 16 counts, whatever its wire type
    or length; anything else is no token, and the content stays valid."""
    records = []
    i = 0
    while i < len(unknown):
        key, i = _read_varint(unknown, i)
        number, wt = key >> 3, key & 7
        if wt == 0:
            _, i = _read_varint(unknown, i)
            value = None
        elif wt == 1:
            value, i = None, i + 8
        elif wt == 5:
            value, i = None, i + 4
        elif wt == 2:
            n, i = _read_varint(unknown, i)
            value, i = unknown[i:i + n], i + n
        else:
            raise VectorError(f"unknown fields: wire type {wt} was accepted")
        if number == 16:
            records.append((wt, value))
    if len(records) != 1:
        return None
    wt, value = records[0]
    if wt != 2 or not 16 <= len(value) <= 64:
        return None
    return value


def verify_padding_case(c):
    _keys(c, ("unpadded_len", "padded_len"), where="padding")
    n, want = _int(c["unpadded_len"], "unpadded_len"), _int(c["padded_len"], "padded_len")
    got = padded_len(n)
    if got != want:
        raise VectorError(f"padded_len: expected {want}, computed {got}")
    data = b"\x5a" * n
    padded = pad_to(data, got)
    if unpad(padded) != data:
        raise VectorError("pad and unpad do not round-trip")


def _pointer_of(v, where):
    if v is None:
        return None
    _keys(v, ("id", "key", "digest", "size", "content_type"), where=where)
    return {"id": _hex(v["id"], None, "id"), "key": _hex(v["key"], 32, "key"),
            "digest": _hex(v["digest"], 32, "digest"), "size": _int(v["size"], "size"),
            "content_type": _str(v["content_type"], "content_type").encode("utf-8")}


def verify_content_case(c):
    _keys(c, ("name", "kind", "body", "timestamp", "message_id", "attachment", "expected"),
          where="contents")
    if c["kind"] not in CONTENT_KINDS:
        raise VectorError(f"kind: unknown {c['kind']!r}")
    kind = CONTENT_KINDS[c["kind"]]
    body = _hex(c["body"], None, "body")
    ts = _int(c["timestamp"], "timestamp")
    mid = _hex(c["message_id"], 16, "message_id")
    pointer = _pointer_of(c["attachment"], "attachment")
    _keys(c["expected"], ("encoded", "padded"), where="expected")
    encoded = encode_content(kind, ts, mid, body, pointer)
    _same("encoded", encoded, _hex(c["expected"]["encoded"], None, "encoded"))
    padded = pad_to(encoded, padded_len(len(encoded)))
    _same("padded", padded, _hex(c["expected"]["padded"], None, "padded"))
    if decode_content(padded) != (kind, ts, mid, body, pointer, b""):
        raise VectorError("padded: decodes to another content")


def verify_unknown_content(c):
    _keys(c, ("name", "padded", "expected"), where="unknown_contents")
    x = c["expected"]
    _keys(x, ("kind", "body", "timestamp", "message_id", "attachment", "unknown_fields"),
          where="unknown_contents expected")
    want = (_int(x["kind"], "kind"), _int(x["timestamp"], "timestamp"),
            _hex(x["message_id"], 16, "message_id"), _hex(x["body"], None, "body"),
            _pointer_of(x["attachment"], "attachment"),
            _hex(x["unknown_fields"], None, "unknown_fields"))
    padded = _hex(c["padded"], None, "padded")
    try:
        got = decode_content(padded)
    except Refused as e:
        raise VectorError(f"the content was refused: {e}") from None
    if got != want:
        raise VectorError("decodes to another content")
    kind, ts, mid, body, pointer, unknown = got
    encoded = encode_content(kind, ts, mid, body, pointer) + unknown
    _same("re-encoded", pad_to(encoded, padded_len(len(encoded))), padded)


def verify_delivery_token_case(c):
    _keys(c, ("name", "padded", "expected"), where="delivery_tokens")
    x = c["expected"]
    _keys(x, ("kind", "unknown_fields", "delivery_token"), where="delivery_tokens expected")
    kind = _int(x["kind"], "kind")
    want_unknown = _hex(x["unknown_fields"], None, "unknown_fields")
    want_token = _hex(x["delivery_token"], None, "delivery_token", nullable=True)
    padded = _hex(c["padded"], None, "padded")
    try:
        got = decode_content(padded)
    except Refused as e:
        raise VectorError(f"the content was refused: {e}") from None
    got_kind, ts, mid, body, pointer, unknown = got
    if got_kind != kind:
        raise VectorError(f"kind: expected {kind}, decoded {got_kind}")
    _same("unknown_fields", unknown, want_unknown)
    token = delivery_token(unknown)
    if token != want_token:
        show = lambda t: "none" if t is None else t.hex()
        raise VectorError(f"delivery_token: expected {show(want_token)}, read {show(token)}")
    encoded = encode_content(got_kind, ts, mid, body, pointer) + unknown
    _same("re-encoded", pad_to(encoded, padded_len(len(encoded))), padded)


# Attachments (section 10): STREAM over XChaCha20-Poly1305, 64 KiB chunks

ATTACHMENT_CHUNK = 65536
ATTACHMENT_ERRORS = ("chunk_authentication", "truncated", "size_mismatch", "digest_mismatch")


def _chunk_nonce(prefix, i, last):
    return prefix + i.to_bytes(4, "big") + bytes([1 if last else 0])


def attachment_encrypt(key, prefix, plaintext):
    chunks = [plaintext[i:i + ATTACHMENT_CHUNK]
              for i in range(0, len(plaintext), ATTACHMENT_CHUNK)] or [b""]
    blob = prefix
    for i, chunk in enumerate(chunks):
        blob += xchacha_encrypt(key, _chunk_nonce(prefix, i, i == len(chunks) - 1), chunk, b"")
    return blob, len(chunks)


def attachment_decrypt(key, digest, size, blob):
    """The decryptor of section 10 fed the whole blob in one piece."""
    chunks = max(1, -(-size // ATTACHMENT_CHUNK))
    blob_len = 19 + size + 16 * chunks
    if len(blob) > blob_len:
        raise Refused("size_mismatch")
    prefix, body = blob[:19], blob[19:]
    out, pos, i = b"", 0, 0
    # A full chunk followed by more data is opened as a non-final chunk.
    while len(body) - pos > ATTACHMENT_CHUNK + 16:
        p = xchacha_decrypt(key, _chunk_nonce(prefix, i, False),
                            body[pos:pos + ATTACHMENT_CHUNK + 16], b"")
        if p is None:
            raise Refused("chunk_authentication", str(i))
        out, pos, i = out + p, pos + ATTACHMENT_CHUNK + 16, i + 1
    # finish
    if len(blob) != blob_len or len(body) - pos < 16:
        raise Refused("truncated")
    last = body[pos:]
    p = xchacha_decrypt(key, _chunk_nonce(prefix, i, True), last, b"")
    if p is None:
        if xchacha_decrypt(key, _chunk_nonce(prefix, i, False), last, b"") is not None:
            raise Refused("truncated", "the last chunk is not final")
        raise Refused("chunk_authentication", str(i))
    if hashlib.sha256(blob).digest() != digest:
        raise Refused("digest_mismatch")
    out += p
    if len(out) != size:
        raise Refused("size_mismatch")
    return out


def verify_attachment_case(c):
    _keys(c, ("name", "key", "prefix", "plaintext", "expected"), where="attachments")
    x = c["expected"]
    _keys(x, ("chunks", "blob", "digest"), where="attachments expected")
    key, prefix = _hex(c["key"], 32, "key"), _hex(c["prefix"], 19, "prefix")
    plaintext = _hex(c["plaintext"], None, "plaintext")
    blob, chunks = attachment_encrypt(key, prefix, plaintext)
    if chunks != _int(x["chunks"], "chunks"):
        raise VectorError(f"chunks: expected {x['chunks']}, computed {chunks}")
    _same("blob", blob, _hex(x["blob"], None, "blob"))
    digest = hashlib.sha256(blob).digest()
    _same("digest", digest, _hex(x["digest"], 32, "digest"))
    if attachment_decrypt(key, digest, len(plaintext), blob) != plaintext:
        raise VectorError("the blob does not decrypt to the plaintext")


def verify_invalid_attachment(c):
    _keys(c, ("name", "key", "digest", "size", "blob", "error"), where="invalid_attachments")
    if c["error"] not in ATTACHMENT_ERRORS:
        raise VectorError(f"error: unknown {c['error']!r}")
    try:
        attachment_decrypt(_hex(c["key"], 32, "key"), _hex(c["digest"], 32, "digest"),
                           _int(c["size"], "size"), _hex(c["blob"], None, "blob"))
    except Refused as e:
        if e.kind != c["error"]:
            raise VectorError(f"expected error {c['error']}, got {e}") from None
        return
    raise VectorError("the blob was accepted")


def verify_invalid_content(c):
    _keys(c, ("name", "padded", "error"), where="invalid_contents")
    if c["error"] not in CONTENT_ERRORS:
        raise VectorError(f"error: unknown {c['error']!r}")
    try:
        decode_content(_hex(c["padded"], None, "padded"))
    except Refused as e:
        if e.kind != c["error"]:
            raise VectorError(f"expected error {c['error']}, got {e}") from None
        return
    raise VectorError("the content was accepted")


# Sealed sender

def _ctx(ephemeral_pub, recipient_ik, user_id, device_id):
    return ephemeral_pub + recipient_ik + bytes([len(user_id)]) + user_id + device_id.to_bytes(4, "big")


def encode_sealed_content(version, user_id, device_id, message, user_key, certificate):
    return (pb_uint(1, version) + pb_bytes(2, user_id) + pb_uint(3, device_id)
            + pb_bytes(4, message) + pb_bytes(5, user_key) + pb_bytes(6, certificate))


def seal(sender_seed, sender_uid, sender_dev, user_seed, recipient_ik, recipient_uid,
         recipient_dev, e_priv, session_message):
    user_key = ed_public_from_seed(user_seed)
    sender_ik = ed_public_from_seed(sender_seed)
    cert = ed_sign(user_seed, cert_tbs(user_key, sender_uid, sender_dev, sender_ik))
    ciphertext = decode_session_message(session_message)["ciphertext"]
    inner = encode_sealed_content(SEALED_CONTENT_VERSION, sender_uid, sender_dev,
                                  session_message, user_key, cert)
    target = len(ciphertext) + INNER_RESERVE
    if len(inner) + 1 > target:
        raise VectorError("sealed content does not fit the reserve")
    padded = pad_to(inner, target)
    e_pub = x25519_public(e_priv)
    ctx = _ctx(e_pub, recipient_ik, recipient_uid, recipient_dev)
    rx = ed_to_montgomery(recipient_ik)
    okm = hkdf(bytes(32), dh(e_priv, rx), SEALED_LABEL_EPHEMERAL + ctx, 76)
    enc_sender = chacha_encrypt(okm[32:64], okm[64:76], sender_ik, ctx)
    okm2 = hkdf(okm[:32], dh(identity_x25519_private(sender_seed), rx),
                SEALED_LABEL_STATIC + ctx + enc_sender, 44)
    enc_message = chacha_encrypt(okm2[:32], okm2[32:44], padded, ctx + enc_sender)
    envelope = pb_uint(1, 1) + pb_bytes(2, e_pub) + pb_bytes(3, enc_sender) + pb_bytes(4, enc_message)
    return envelope, user_key, cert


def open_envelope(recipient_seed, recipient_uid, recipient_dev, envelope):
    """(sender identity key, sender user key, user id, device id, session
    message bytes), or Refused with the envelope error's name, checked in
    section 10's order."""
    try:
        if len(envelope) > MAX_ENVELOPE_LEN:
            raise _Malformed("oversize")
        m = _message(envelope, {1: "v", 2: "b", 3: "b", 4: "b"}, "SealedEnvelope")
        _canonical(envelope, pb_uint(1, m.get(1, 0)) + pb_bytes(2, m.get(2, b""))
                   + pb_bytes(3, m.get(3, b"")) + pb_bytes(4, m.get(4, b"")), "SealedEnvelope")
        _version(m, 1, "SealedEnvelope")
        e_pub, enc_sender, enc_message = m.get(2, b""), m.get(3, b""), m.get(4, b"")
        if len(e_pub) != 32 or len(enc_sender) != 48 or len(enc_message) < MIN_ENCRYPTED_MESSAGE_LEN:
            raise _Malformed("field lengths")
    except _Malformed as e:
        raise Refused("malformed", str(e)) from None
    recipient_ik = ed_public_from_seed(recipient_seed)
    recipient_priv = identity_x25519_private(recipient_seed)
    ctx = _ctx(e_pub, recipient_ik, recipient_uid, recipient_dev)
    try:
        dh_e = dh(recipient_priv, e_pub)
    except ProtocolError:
        raise Refused("invalid_ephemeral_key") from None
    okm = hkdf(bytes(32), dh_e, SEALED_LABEL_EPHEMERAL + ctx, 76)
    sender_ik = chacha_decrypt(okm[32:64], okm[64:76], enc_sender, ctx)
    if sender_ik is None:
        raise Refused("sender_does_not_open")
    try:
        check_identity_key(sender_ik)
        dh_s = dh(recipient_priv, ed_to_montgomery(sender_ik))
    except ProtocolError as e:
        raise Refused("invalid_sender_identity", str(e)) from None
    okm2 = hkdf(okm[:32], dh_s, SEALED_LABEL_STATIC + ctx + enc_sender, 44)
    padded = chacha_decrypt(okm2[:32], okm2[32:44], enc_message, ctx + enc_sender)
    if padded is None:
        raise Refused("content_does_not_open")
    try:
        inner = strip_padding(padded)
    except Refused:
        raise Refused("inner_padding", "marker") from None
    try:
        c = _message(inner, {1: "v", 2: "b", 3: "v", 4: "b", 5: "b", 6: "b"}, "SealedContent")
        uid, dev, msg = c.get(2, b""), c.get(3, 0), c.get(4, b"")
        user_key, cert = c.get(5, b""), c.get(6, b"")
        _canonical(inner, encode_sealed_content(c.get(1, 0), uid, dev, msg, user_key, cert),
                   "SealedContent")
        _version(c, SEALED_CONTENT_VERSION, "SealedContent")
        try:
            uid_ok = _user_id_ok(uid) and dev >= 1
        except UnicodeDecodeError:
            uid_ok = False
        if not uid_ok:
            raise _Malformed("SealedContent: sender address")
        session = decode_session_message(msg)
        if len(user_key) != 32:
            raise _Malformed("SealedContent: sender_user_key length")
        try:
            check_identity_key(user_key)
        except ProtocolError as e:
            raise _Malformed(f"SealedContent: sender_user_key: {e}") from None
        if len(cert) != 64:
            raise _Malformed("SealedContent: sender_certificate length")
    except _Malformed as e:
        raise Refused("inner_malformed", str(e)) from None
    if len(padded) != len(session["ciphertext"]) + INNER_RESERVE:
        raise Refused("inner_padding", "length")
    if not verify_strict(user_key, cert_tbs(user_key, uid, dev, sender_ik), cert):
        raise Refused("invalid_sender_certificate")
    if "identity_key" in session and session["identity_key"] != sender_ik:
        raise Refused("sender_identity_mismatch")
    return sender_ik, user_key, uid, dev, msg


SEALED_FIELDS = ("name", "sender_identity_seed", "sender_user_id", "sender_device_id",
                 "sender_user_key_seed", "recipient_identity_seed", "recipient_user_id",
                 "recipient_device_id", "ephemeral_private", "session_message", "session",
                 "expected")
SESSION_FIELDS = ("x3dh", "signed_prekey_id", "one_time_prekey_id", "alice_ratchet_private",
                  "contents", "header_nonces", "message")


def recompute_session_message(sess, contents):
    """A sealed case's session message from its inputs (section 10, test
    vectors): X3DH, Alice's ratchet sending the named contents' padded
    bytes, message 0 in a prekey message; Bob decrypts each."""
    _keys(sess, SESSION_FIELDS, where="session")
    _keys(sess["x3dh"], X3DH_INPUTS, where="session.x3dh")
    inp = _x3dh_inputs(sess["x3dh"], "session.x3dh")
    names, nonces = sess["contents"], sess["header_nonces"]
    if not isinstance(names, list) or not isinstance(nonces, list) or len(names) != len(nonces):
        raise VectorError("session: contents and header_nonces disagree")
    index = _int(sess["message"], "session.message")
    if index >= len(names):
        raise VectorError("session: message out of range")
    opk_id = sess["one_time_prekey_id"]
    if (opk_id is None) != (inp["bob_one_time_prekey_private"] is None):
        raise VectorError("session: one_time_prekey_id and the handshake disagree")
    x = x3dh(inp)
    alice = init_alice(x, x["bob_signed_prekey_public"],
                       [_hex(sess["alice_ratchet_private"], 32, "alice_ratchet_private")],
                       DEFAULT_MAX_SKIP)
    bob = init_bob(x, inp["bob_signed_prekey_private"], [], DEFAULT_MAX_SKIP,
                   source=lambda i: hashlib.sha256(b"pyref bob %d" % i).digest())
    by_name = {c.get("name"): c for c in contents}
    out = []
    for i, name in enumerate(names):
        if name not in by_name:
            raise VectorError(f"session: no content {name!r}")
        padded = _hex(by_name[name]["expected"]["padded"], None, "padded")
        _, enc_header, ct = ratchet_encrypt(alice, padded, _hex(nonces[i], 24, "header_nonce"))
        bob, plaintext = ratchet_decrypt(bob, enc_header, ct)
        if plaintext != padded:
            raise VectorError(f"session: message {i} decrypts to other bytes")
        ratchet = pb_uint(1, 1) + pb_bytes(2, enc_header) + pb_bytes(3, ct)
        if i == 0:
            opk = b"" if opk_id is None else pb_varint(5 << 3) + pb_varint(_u32(opk_id, "one_time_prekey_id"))
            inner = (pb_uint(1, 1) + pb_bytes(2, x["alice_identity_public"])
                     + pb_bytes(3, x["alice_ephemeral_public"])
                     + pb_uint(4, _u32(sess["signed_prekey_id"], "signed_prekey_id")) + opk
                     + pb_bytes(6, ratchet))
            tag = 1
        else:
            inner, tag = ratchet, 2
        out.append(pb_varint((tag << 3) | 2) + pb_varint(len(inner)) + inner)
    if alice.drawn != 1:
        raise VectorError("session: alice_ratchet_private was not used")
    return out[index]
SEALED_EXPECTED = ("sender_identity_public", "sender_user_key", "sender_certificate",
                   "recipient_identity_public", "ephemeral_public", "envelope")


def verify_sealed_case(c, contents=()):
    _keys(c, SEALED_FIELDS, where="sealed")
    _same("session_message", recompute_session_message(c["session"], contents),
          _hex(c["session_message"], None, "session_message"))
    x = c["expected"]
    _keys(x, SEALED_EXPECTED, where="sealed expected")
    sender_seed = _hex(c["sender_identity_seed"], 32, "sender_identity_seed")
    user_seed = _hex(c["sender_user_key_seed"], 32, "sender_user_key_seed")
    recipient_seed = _hex(c["recipient_identity_seed"], 32, "recipient_identity_seed")
    e_priv = _hex(c["ephemeral_private"], 32, "ephemeral_private")
    suid, ruid = _uid(c["sender_user_id"], "sender_user_id"), _uid(c["recipient_user_id"], "recipient_user_id")
    sdev, rdev = _u32(c["sender_device_id"], "sender_device_id"), _u32(c["recipient_device_id"], "recipient_device_id")
    message = _hex(c["session_message"], None, "session_message")
    sender_ik = _public_checked(sender_seed)
    recipient_ik = _public_checked(recipient_seed)
    _same("sender_identity_public", sender_ik, _hex(x["sender_identity_public"], 32, "sender_identity_public"))
    _same("recipient_identity_public", recipient_ik,
          _hex(x["recipient_identity_public"], 32, "recipient_identity_public"))
    _same("ephemeral_public", x25519_public(e_priv), _hex(x["ephemeral_public"], 32, "ephemeral_public"))
    try:
        decode_session_message(message)
    except _Malformed as e:
        raise VectorError(f"session_message does not decode: {e}") from None
    envelope, user_key, cert = seal(sender_seed, suid, sdev, user_seed, recipient_ik, ruid, rdev,
                                    e_priv, message)
    _same("sender_user_key", user_key, _hex(x["sender_user_key"], 32, "sender_user_key"))
    _same("sender_certificate", cert, _hex(x["sender_certificate"], 64, "sender_certificate"))
    expected = _hex(x["envelope"], None, "envelope")
    _same("envelope", envelope, expected)
    try:
        opened = open_envelope(recipient_seed, ruid, rdev, expected)
    except Refused as e:
        raise VectorError(f"the envelope does not open: {e}") from None
    if opened != (sender_ik, user_key, suid, sdev, message):
        raise VectorError("opened to another sender or message")


def verify_invalid_sealed(c):
    _keys(c, ("name", "recipient_identity_seed", "recipient_user_id", "recipient_device_id",
              "envelope", "error"), where="invalid_sealed")
    if c["error"] not in ENVELOPE_ERRORS:
        raise VectorError(f"error: unknown {c['error']!r}")
    seed = _hex(c["recipient_identity_seed"], 32, "recipient_identity_seed")
    uid, dev = _uid(c["recipient_user_id"], "recipient_user_id"), _u32(c["recipient_device_id"], "recipient_device_id")
    try:
        open_envelope(seed, uid, dev, _hex(c["envelope"], None, "envelope"))
    except Refused as e:
        if e.kind != c["error"]:
            raise VectorError(f"expected error {c['error']}, got {e}") from None
        return
    raise VectorError("the envelope opened")


ENVELOPE_LISTS = ("padding", "contents", "unknown_contents", "invalid_contents", "attachments",
                  "invalid_attachments", "sealed", "invalid_sealed", "delivery_tokens")


def envelope_groups(doc):
    return [
        (doc["padding"], verify_padding_case),
        (doc["contents"], verify_content_case),
        (doc["unknown_contents"], verify_unknown_content),
        (doc["invalid_contents"], verify_invalid_content),
        (doc["attachments"], verify_attachment_case),
        (doc["invalid_attachments"], verify_invalid_attachment),
        (doc["sealed"], lambda c: verify_sealed_case(c, doc["contents"])),
        (doc["invalid_sealed"], verify_invalid_sealed),
        (doc["delivery_tokens"], verify_delivery_token_case),
    ]


# ---------------------------------------------------------------------------
# generate

def rnd(label, n=32):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"tacit-v1 pyref/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def make_x3dh_inputs(label, opk=True):
    b_seed = rnd(label + "/bob_identity_seed")
    spk_priv = rnd(label + "/bob_signed_prekey_private")
    spk_pub = x25519_public(spk_priv)
    return {
        "alice_identity_seed": rnd(label + "/alice_identity_seed"),
        "bob_identity_seed": b_seed,
        "bob_signed_prekey_private": spk_priv,
        "bob_signed_prekey_signature": sign_checked(b_seed, spk_pub),
        "bob_one_time_prekey_private": rnd(label + "/bob_one_time_prekey_private") if opk else None,
        "alice_ephemeral_private": rnd(label + "/alice_ephemeral_private"),
    }


def sign_checked(seed, msg):
    """Ed25519 signature, computed both here and by libsodium."""
    ours = ed_sign(seed, msg)
    pk, sk = nb.crypto_sign_seed_keypair(seed)
    theirs = nb.crypto_sign(msg, sk)[:64]
    assert ours == theirs and pk == ed_public_from_seed(seed), "Ed25519 cross-check failed"
    assert verify_strict(pk, msg, ours)
    return ours


def hexify(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: hexify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [hexify(x) for x in v]
    return v


def selfcheck_primitives():
    # Birational map and identity DH key agree with libsodium.
    for i in range(4):
        seed = rnd(f"selfcheck/{i}")
        pk, sk = nb.crypto_sign_seed_keypair(seed)
        assert ed_to_montgomery(pk) == nb.crypto_sign_ed25519_pk_to_curve25519(pk)
        a = identity_x25519_private(seed)
        assert nb.crypto_scalarmult_base(a) == nb.crypto_sign_ed25519_pk_to_curve25519(pk)
        assert x25519_ladder(a, nb.crypto_scalarmult_base(b"\x09" + bytes(31))) == \
            nb.crypto_scalarmult(a, nb.crypto_scalarmult_base(b"\x09" + bytes(31)))
        other = rnd(f"selfcheck/other/{i}")
        assert x25519_ladder(other, ed_to_montgomery(pk)) == dh(other, ed_to_montgomery(pk))
    # HKDF against RFC 5869 test case 1.
    okm = hkdf(bytes.fromhex("000102030405060708090a0b0c"), b"\x0b" * 22,
               bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def torsion_point_of_order_8():
    i = 0
    while True:
        cand = hashlib.sha256(f"tacit-v1 pyref/torsion/{i}".encode()).digest()
        i += 1
        pt = ed_decode(cand)
        if pt is None:
            continue
        t = ed_mul(L, pt)
        if not ed_eq(ed_mul(4, t), ED_IDENTITY):
            return t


def gen_x3dh():
    cases = []

    def add_case(name, inp):
        cases.append({"name": name, **inp, "expected": x3dh(inp)})

    add_case("x3dh_with_opk", make_x3dh_inputs("x3dh_with_opk", True))
    add_case("x3dh_without_opk", make_x3dh_inputs("x3dh_without_opk", False))
    add_case("x3dh_with_opk_second_seeds", make_x3dh_inputs("x3dh_with_opk_second_seeds", True))
    # All-zero and all-one inputs (clamping does the work for X25519).
    b_seed = b"\xff" * 32
    spk_priv = b"\xff" * 32
    add_case("x3dh_extreme_bytes", {
        "alice_identity_seed": bytes(32), "bob_identity_seed": b_seed,
        "bob_signed_prekey_private": spk_priv,
        "bob_signed_prekey_signature": sign_checked(b_seed, x25519_public(spk_priv)),
        "bob_one_time_prekey_private": bytes(32), "alice_ephemeral_private": b"\x80" + bytes(31),
    })

    invalid = []

    def add_invalid(name, inp, offered, error, expect_unstrict=None):
        entry = {"name": name, **inp, "bob_signed_prekey_public": offered, "error": error}
        try:
            x3dh(inp, offered_spk_pub=offered)
        except BundleError as e:
            assert e.kind == error, (name, e.kind)
        else:
            raise AssertionError(f"{name}: accepted")
        if expect_unstrict is not None:
            assert expect_unstrict(inp["bob_identity_seed"], offered,
                                   inp["bob_signed_prekey_signature"]), name
        invalid.append(entry)

    def base(label, opk=True):
        return make_x3dh_inputs("invalid/" + label, opk)

    # --- signature errors
    inp = base("sig_over_other_key")
    other = x25519_public(rnd("invalid/sig_over_other_key/other"))
    inp["bob_signed_prekey_signature"] = sign_checked(inp["bob_identity_seed"], other)
    add_invalid("signature_over_another_key", inp,
                x25519_public(inp["bob_signed_prekey_private"]), "signature")

    inp = base("sig_by_wrong_identity")
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    inp["bob_signed_prekey_signature"] = sign_checked(inp["alice_identity_seed"], spk_pub)
    add_invalid("signature_by_another_identity_key", inp, spk_pub, "signature")

    inp = base("sig_flip_r", opk=False)
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    sig = bytearray(inp["bob_signed_prekey_signature"])
    sig[5] ^= 0x10
    inp["bob_signed_prekey_signature"] = bytes(sig)
    add_invalid("signature_bit_flipped_in_r", inp, spk_pub, "signature")

    inp = base("sig_flip_s")
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    sig = bytearray(inp["bob_signed_prekey_signature"])
    sig[40] ^= 0x01
    inp["bob_signed_prekey_signature"] = bytes(sig)
    add_invalid("signature_bit_flipped_in_s", inp, spk_pub, "signature")

    inp = base("sig_flip_key")
    spk_pub = bytearray(x25519_public(inp["bob_signed_prekey_private"]))
    spk_pub[17] ^= 0x04
    add_invalid("signature_offered_key_bit_flipped", inp, bytes(spk_pub), "signature")

    inp = base("sig_top_bit_key")
    spk_pub = bytearray(x25519_public(inp["bob_signed_prekey_private"]))
    spk_pub[31] ^= 0x80  # same X25519 public key, different signed bytes
    add_invalid("signature_offered_key_top_bit_set", inp, bytes(spk_pub), "signature")

    inp = base("sig_s_plus_l")
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    sig = inp["bob_signed_prekey_signature"]
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    inp["bob_signed_prekey_signature"] = sig[:32] + s.to_bytes(32, "little")
    add_invalid("signature_non_canonical_s_plus_l", inp, spk_pub, "signature",
                lambda seed, m, sg: equation_holds_unstrict(ed_public_from_seed(seed), m, sg))

    identity_encodings = (
        ("signature_r_identity_crafted", (1).to_bytes(32, "little")),
        ("signature_r_identity_non_canonical_y", (P + 1).to_bytes(32, "little")),
        ("signature_r_identity_sign_bit_set", (1 | (1 << 255)).to_bytes(32, "little")),
    )
    for name, rb in identity_encodings:
        inp = base(name, opk=(name != "signature_r_identity_sign_bit_set"))
        spk_pub = x25519_public(inp["bob_signed_prekey_private"])
        a, _ = ed_secret_scalar(inp["bob_identity_seed"])
        pub = ed_public_from_seed(inp["bob_identity_seed"])
        k = int.from_bytes(hashlib.sha512(rb + pub + spk_pub).digest(), "little") % L
        inp["bob_signed_prekey_signature"] = rb + (k * a % L).to_bytes(32, "little")
        add_invalid(name, inp, spk_pub, "signature",
                    lambda seed, m, sg: equation_holds_unstrict(ed_public_from_seed(seed), m, sg))

    # R of mixed order: R = [r]B + T8; passes only the cofactored equation.
    inp = base("sig_mixed_order_r")
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    a, _ = ed_secret_scalar(inp["bob_identity_seed"])
    pub = ed_public_from_seed(inp["bob_identity_seed"])
    r = int.from_bytes(rnd("invalid/sig_mixed_order_r/r", 64), "little") % L
    rb = ed_encode(ed_add(ed_mul(r, ED_B), torsion_point_of_order_8()))
    k = int.from_bytes(hashlib.sha512(rb + pub + spk_pub).digest(), "little") % L
    inp["bob_signed_prekey_signature"] = rb + ((r + k * a) % L).to_bytes(32, "little")
    add_invalid("signature_r_mixed_order_cofactored_only", inp, spk_pub, "signature",
                lambda seed, m, sg: equation_holds_cofactored(ed_public_from_seed(seed), m, sg))

    # R of order 8 with S = k*a: [S]B = [k]A but R != identity.
    inp = base("sig_order8_r", opk=False)
    spk_pub = x25519_public(inp["bob_signed_prekey_private"])
    a, _ = ed_secret_scalar(inp["bob_identity_seed"])
    pub = ed_public_from_seed(inp["bob_identity_seed"])
    rb = ed_encode(torsion_point_of_order_8())
    k = int.from_bytes(hashlib.sha512(rb + pub + spk_pub).digest(), "little") % L
    inp["bob_signed_prekey_signature"] = rb + (k * a % L).to_bytes(32, "little")
    add_invalid("signature_r_small_order_8", inp, spk_pub, "signature",
                lambda seed, m, sg: equation_holds_cofactored(ed_public_from_seed(seed), m, sg))

    inp = base("sig_all_zero")
    inp["bob_signed_prekey_signature"] = bytes(64)
    add_invalid("signature_all_zero_bytes", inp,
                x25519_public(inp["bob_signed_prekey_private"]), "signature")

    # The signature is checked before the DH outputs: a small-order key with
    # a bad signature is a signature error.
    inp = base("sig_before_dh")
    inp["bob_signed_prekey_signature"] = sign_checked(inp["bob_identity_seed"], b"\x01" + bytes(31))
    add_invalid("signature_checked_before_small_order", inp, bytes(32), "signature")

    # --- small-order offered keys with valid signatures
    o8a = 325606250916557431795983626356110631294008115727848805560023387167927233504
    o8b = 39382357235489614581723060781553021112529911719440698176882885853963445705823
    small = (
        ("small_order_u_0", 0),
        ("small_order_u_1", 1),
        ("small_order_u_p_minus_1", P - 1),
        ("small_order_order8_a", o8a),
        ("small_order_order8_b", o8b),
        ("small_order_u_p_non_canonical", P),
        ("small_order_u_p_plus_1_non_canonical", P + 1),
        ("small_order_u_0_top_bit_set", 1 << 255),
        ("small_order_order8_a_top_bit_set", o8a | (1 << 255)),
        ("small_order_u_1_top_bit_set_non_canonical", (P + 1) | (1 << 255)),
    )
    for n, (name, u) in enumerate(small):
        inp = base(name, opk=(n % 2 == 0))
        offered = u.to_bytes(32, "little")
        assert not any(x25519_ladder(rnd(name + "/probe"), offered))
        inp["bob_signed_prekey_signature"] = sign_checked(inp["bob_identity_seed"], offered)
        add_invalid(name, inp, offered, "small_order")

    return {"profile": PROFILE, "cases": hexify(cases), "invalid": hexify(invalid)}


class Scenario:
    """Builds one ratchet case by running both parties, recording the ratchet
    privates they draw, the messages and the events."""

    def __init__(self, name, max_skip=None, opk=True):
        self.name = name
        self.max_skip = max_skip
        self.inp = make_x3dh_inputs(f"ratchet/{name}/x3dh", opk)
        x = x3dh(self.inp)
        ms = DEFAULT_MAX_SKIP if max_skip is None else max_skip
        self.privs = {"alice": [], "bob": []}

        def src(who):
            return lambda i: rnd(f"ratchet/{name}/{who}/ratchet_private/{i}")

        self.st = {
            "alice": init_alice(x, x["bob_signed_prekey_public"], self.privs["alice"], ms,
                                src("alice")),
            "bob": init_bob(x, self.inp["bob_signed_prekey_private"], self.privs["bob"], ms,
                            src("bob")),
        }
        self.messages = []
        self.wire = []
        self.events = []

    def send(self, sender, plaintext=None):
        i = len(self.messages)
        if plaintext is None:
            plaintext = f"{self.name}: message {i} from {sender}".encode()
        nonce = rnd(f"ratchet/{self.name}/message/{i}/header_nonce", 24)
        header, enc_header, ct = ratchet_encrypt(self.st[sender], plaintext, nonce)
        self.messages.append({"sender": sender, "plaintext": plaintext, "header_nonce": nonce,
                              "expected": {"header": header, "enc_header": enc_header,
                                           "ciphertext": ct}})
        self.wire.append(enc_header + ct)
        self.events.append({"op": "send", "message": i})
        return i

    def _deliver(self, i, wire, expect):
        m = self.messages[i]
        receiver = "bob" if m["sender"] == "alice" else "alice"
        try:
            new, pt = ratchet_decrypt(self.st[receiver], wire[:80], wire[80:])
        except ProtocolError:
            assert expect == "error", f"{self.name}: delivery of {i} failed unexpectedly"
            return
        assert expect == "ok", f"{self.name}: delivery of {i} succeeded unexpectedly"
        assert pt == m["plaintext"]
        self.st[receiver] = new

    def deliver(self, i, expect="ok"):
        self._deliver(i, self.wire[i], expect)
        self.events.append({"op": "deliver", "message": i, "expect": expect})

    def tamper(self, i, k):
        w = bytearray(self.wire[i])
        w[k] ^= 0xFF
        self._deliver(i, bytes(w), "error")
        self.events.append({"op": "deliver_tampered", "message": i, "byte": k,
                            "expect": "error"})

    def exchange(self, sender, plaintext=None):
        self.deliver(self.send(sender, plaintext))

    def case(self):
        c = {"name": self.name}
        if self.max_skip is not None:
            c["max_skip"] = self.max_skip
        c["x3dh"] = dict(self.inp)
        c["alice_ratchet_privates"] = list(self.privs["alice"])
        c["bob_ratchet_privates"] = list(self.privs["bob"])
        c["messages"] = self.messages
        c["events"] = self.events
        return hexify(c)


def gen_ratchet(with_eviction=True):
    cases = []

    # In-order exchange, both directions, several messages per chain.
    s = Scenario("in_order_exchange")
    for who in ("alice", "alice", "bob", "bob", "bob", "alice", "bob", "alice", "alice"):
        s.exchange(who)
    cases.append(s.case())

    s = Scenario("in_order_exchange_without_opk", opk=False)
    for who in ("alice", "bob", "alice", "alice", "bob"):
        s.exchange(who)
    cases.append(s.case())

    # A long one-way chain.
    s = Scenario("long_one_way_chain")
    for _ in range(40):
        s.exchange("alice")
    s.exchange("bob")
    cases.append(s.case())

    # A long chain sent first, delivered afterwards in order.
    s = Scenario("one_way_chain_sent_then_delivered")
    ids = [s.send("alice") for _ in range(12)]
    for i in ids:
        s.deliver(i)
    cases.append(s.case())

    # Ping-pong: every reply is a DH ratchet step.
    s = Scenario("ping_pong")
    for r in range(11):
        s.exchange("alice" if r % 2 == 0 else "bob")
    cases.append(s.case())

    # Out-of-order delivery across two ratchet steps.
    s = Scenario("out_of_order_across_two_ratchet_steps")
    a = [s.send("alice") for _ in range(4)]            # Alice chain 1: N 0..3
    s.deliver(a[1])                                   # skips a0
    b = [s.send("bob") for _ in range(3)]              # Bob chain 1
    s.deliver(b[1])                                   # skips b0
    a += [s.send("alice") for _ in range(3)]           # Alice chain 2: PN 4
    s.deliver(a[6])                                   # old chain skips a2,a3; new skips a4,a5
    b += [s.send("bob") for _ in range(2)]             # Bob chain 2: PN 3
    s.deliver(b[4])                                   # old chain skips b2; new skips b3
    for i in (a[3], b[0], a[0], a[5], b[3], a[2], b[2], a[4]):
        s.deliver(i)
    s.exchange("alice")
    s.exchange("bob")
    cases.append(s.case())

    # Delayed past MAX_SKIP in the current chain.
    s = Scenario("delayed_past_max_skip", max_skip=3)
    a = [s.send("alice") for _ in range(5)]
    s.deliver(a[4], "error")                          # 0 + 3 < 4
    s.deliver(a[3])                                   # stores 3 keys
    s.deliver(a[4])
    s.deliver(a[1])
    a += [s.send("alice") for _ in range(5)]           # N 5..9
    s.deliver(a[9], "error")                          # 5 + 3 < 9
    s.deliver(a[8])
    s.deliver(a[9])
    for i in (a[0], a[2], a[7], a[5], a[6]):
        s.deliver(i)
    s.exchange("bob")
    cases.append(s.case())

    # A new chain's PN forces skipping too many in the old chain.
    s = Scenario("max_skip_exceeded_by_previous_chain_length", max_skip=3)
    a = [s.send("alice") for _ in range(6)]            # N 0..5
    s.deliver(a[0])
    s.exchange("bob")
    a6 = s.send("alice")                              # new chain, PN 6, N 0
    s.deliver(a6, "error")                            # 1 + 3 < 6
    s.deliver(a[1])
    s.deliver(a6, "error")                            # 2 + 3 < 6
    s.deliver(a[2])
    s.deliver(a6)                                     # 3 + 3 >= 6: stores N 3,4,5
    for i in (a[5], a[3], a[4]):
        s.deliver(i)
    s.exchange("bob")
    cases.append(s.case())

    # A new-chain message may skip MAX_SKIP in each chain; one more fails.
    s = Scenario("max_skip_in_old_and_new_chain", max_skip=3)
    a = [s.send("alice") for _ in range(4)]            # N 0..3
    s.deliver(a[0])
    s.exchange("bob")
    c2 = [s.send("alice") for _ in range(5)]           # chain 2: PN 4, N 0..4
    s.deliver(c2[4], "error")                         # old chain ok (1+3>=4), new 0+3<4
    s.deliver(c2[3])                                  # 3 skipped in each chain
    s.deliver(c2[4])
    for i in (a[2], c2[0], a[1], c2[2], a[3], c2[1]):
        s.deliver(i)
    s.exchange("bob")
    cases.append(s.case())

    # Replays.
    s = Scenario("replay")
    a0 = s.send("alice")
    s.deliver(a0)
    s.deliver(a0, "error")                            # replay in the current chain
    a1, a2, a3 = s.send("alice"), s.send("alice"), s.send("alice")
    s.deliver(a3)
    s.deliver(a1)
    s.deliver(a1, "error")                            # replay of a skipped-then-delivered one
    s.deliver(a3, "error")
    b0 = s.send("bob")
    s.deliver(b0)
    s.deliver(b0, "error")                            # replay of a message that opened a chain
    a4 = s.send("alice")
    s.deliver(a4)
    s.deliver(a0, "error")                            # replay from an old chain
    s.deliver(a2)                                     # still stored
    s.deliver(a2, "error")
    s.deliver(a4, "error")
    s.exchange("bob")
    cases.append(s.case())

    # Tampering with header bytes (nonce, encrypted header, header tag).
    s = Scenario("tamper_header_bytes")
    s.exchange("alice")
    a1 = s.send("alice")
    for k in (0, 23, 24, 50, 63, 64, 79):
        s.tamper(a1, k)
    s.deliver(a1)
    s.exchange("bob")
    cases.append(s.case())

    # Tampering with ciphertext bytes, including when the delivery would skip.
    s = Scenario("tamper_ciphertext_bytes")
    s.exchange("alice")
    a1, a2 = s.send("alice"), s.send("alice")
    n = len(s.wire[a2])
    for k in (80, 85, n - 17, n - 16, n - 1):
        s.tamper(a2, k)                               # would skip a1 if it succeeded
    s.deliver(a2)
    s.tamper(a1, 80)                                  # a1's key is now a stored skipped key
    s.tamper(a1, 30)
    s.deliver(a1)
    s.deliver(a1, "error")
    s.exchange("bob")
    cases.append(s.case())

    # Tampering with messages that open a new chain (DH ratchet step).
    s = Scenario("tamper_new_chain_message")
    a0 = s.send("alice")
    s.tamper(a0, 10)                                  # header nonce
    s.tamper(a0, 90)                                  # ciphertext
    s.tamper(a0, len(s.wire[a0]) - 1)                 # tag
    s.deliver(a0)
    b0, b1 = s.send("bob"), s.send("bob")
    s.tamper(b1, 40)
    s.tamper(b1, 81)                                  # would skip b0 and step
    s.deliver(b1)
    s.deliver(b0)
    a1 = s.send("alice")
    s.tamper(a1, 100)
    s.deliver(a1)
    cases.append(s.case())

    # Empty plaintexts.
    s = Scenario("empty_plaintext", opk=False)
    s.exchange("alice", b"")
    s.exchange("bob", b"")
    a1, a2 = s.send("alice", b""), s.send("alice", b"")
    s.deliver(a2)
    s.deliver(a1)
    cases.append(s.case())

    # Large plaintexts.
    s = Scenario("large_plaintext")
    s.exchange("alice", rnd("ratchet/large_plaintext/p0", 6000))
    s.exchange("bob", rnd("ratchet/large_plaintext/p1", 4097))
    s.exchange("alice", bytes(range(256)) * 20)
    cases.append(s.case())

    # Bob sends many before Alice answers, Alice receives them in reverse.
    s = Scenario("reverse_order_chain")
    s.exchange("alice")
    b = [s.send("bob") for _ in range(6)]
    for i in reversed(b):
        s.deliver(i)
    s.exchange("alice")
    cases.append(s.case())

    # MAX_SKIP 0: only in-order delivery works, in either chain.
    s = Scenario("max_skip_zero", max_skip=0, opk=False)
    a0, a1 = s.send("alice"), s.send("alice")
    s.deliver(a1, "error")                            # 0 + 0 < 1
    s.deliver(a0)
    s.deliver(a1)
    s.exchange("bob")
    a2, a3 = s.send("alice"), s.send("alice")          # chain 2: PN 2, N 0..1
    s.deliver(a3, "error")
    s.deliver(a2)
    s.deliver(a3)
    s.exchange("bob")
    a4 = s.send("alice")                              # Alice chain 3: PN 2, N 0
    bx, by = s.send("bob"), s.send("bob")              # Bob chain 2: N 1, 2
    s.deliver(a4)                                     # Bob steps
    b3 = s.send("bob")                                # Bob chain 3: PN 3, N 0
    s.deliver(b3, "error")                            # Alice: old chain 1 + 0 < 3
    s.deliver(by, "error")                            # 1 + 0 < 2
    s.deliver(bx)
    s.deliver(b3, "error")                            # 2 + 0 < 3
    s.deliver(by)
    s.deliver(b3)
    cases.append(s.case())

    if with_eviction:
        cases.append(eviction_case())

    return {"profile": PROFILE, "cases": cases}


def eviction_case():
    # The skipped-key store holds at most 2000 keys; one more evicts the
    # oldest, and a failed delivery evicts nothing.
    s = Scenario("skipped_key_store_eviction")
    a = [s.send("alice", b"") for _ in range(1001)]    # chain A1: N 0..1000
    s.deliver(a[1000])                                 # stores 1000 keys
    s.exchange("bob")
    c = [s.send("alice", b"") for _ in range(1001)]    # chain A2: PN 1001
    s.deliver(c[1000])                                 # stores 1000 more: full (2000)
    s.exchange("bob")
    d = [s.send("alice", b"") for _ in range(2)]       # chain A3
    s.tamper(d[1], 85)                                 # would evict a0 if it succeeded
    s.deliver(a[0])                                    # so a0 is still there (1999 left)
    s.deliver(d[1])                                    # stores d0: 2000, no eviction
    s.exchange("bob")
    e = [s.send("alice", b"") for _ in range(3)]       # chain A4
    s.deliver(e[2])                                    # stores e0, e1: evicts a1, a2
    s.deliver(a[1], "error")
    s.deliver(a[2], "error")
    s.deliver(a[3])
    s.deliver(e[0])
    s.deliver(d[0])
    s.deliver(c[0])
    s.deliver(a[999])
    s.deliver(c[999])
    s.deliver(e[1])
    s.exchange("bob")
    return s.case()


def dump(doc):
    """Deterministic JSON: objects indented, each message / event / list of
    hex strings on one line."""
    def fmt(v, ind, key=None):
        pad = "  " * ind
        if isinstance(v, dict):
            if key in ("expected",) and ind > 4:
                return json.dumps(v, separators=(", ", ": "))
            items = [f'{pad}  {json.dumps(k)}: {fmt(x, ind + 1, k)}' for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
        if isinstance(v, list):
            if not v:
                return "[]"
            if key in ("messages", "events", "alice_ratchet_privates", "bob_ratchet_privates"):
                items = [pad + "  " + json.dumps(x, separators=(", ", ": ")) for x in v]
            else:
                items = [pad + "  " + fmt(x, ind + 1) for x in v]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(v)
    return fmt(doc, 0) + "\n"


def cmd_generate(outdir):
    selfcheck_primitives()
    import pqxdh_ref
    x = gen_x3dh()
    r = gen_ratchet()
    pq = pqxdh_ref.gen_pqxdh()
    import group_ref
    gr = group_ref.gen_group()
    os.makedirs(outdir, exist_ok=True)
    for name, doc in (("x3dh.json", x), ("ratchet.json", r), ("pqxdh.json", pq),
                      ("group.json", gr)):
        text = dump(doc)
        assert json.loads(text) == doc
        with open(os.path.join(outdir, name), "w", encoding="ascii", newline="\n") as f:
            f.write(text)
    print(f"wrote {os.path.join(outdir, 'x3dh.json')} ({len(x['cases'])} cases, "
          f"{len(x['invalid'])} invalid) and {os.path.join(outdir, 'ratchet.json')} "
          f"({len(r['cases'])} cases), {os.path.join(outdir, 'pqxdh.json')} "
          f"({len(pq['cases'])} cases, {len(pq['invalid'])} invalid), "
          f"{os.path.join(outdir, 'group.json')}")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "generate" and len(argv) == 3:
        return cmd_generate(argv[2])
    if len(argv) >= 2 and argv[1] == "verify":
        return cmd_verify(argv[2:])
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
