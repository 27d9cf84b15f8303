"""Profile tacit-v2 (PROTOCOL.md section 15): PQXDH over X25519 and
ML-KEM-1024, its wire fields, the responder's checks of 15.5, and the
vectors of 15.12 (`pqxdh.json`), written from the document's text.

ML-KEM is kyber-py's pure-Python FIPS 203 (`ML_KEM_1024`, through its
`_keygen_internal`, `_encaps_internal` and `_decaps_internal`, algorithms
16 to 18); the encapsulation-key check of FIPS 203 7.2 is done here with
plain integers.  Everything else (X25519, Ed25519, HKDF, the ratchet, the
protobuf helpers) comes from tacit_ref.
"""

import hashlib

from kyber_py.ml_kem import ML_KEM_1024

import tacit_ref as t
from tacit_ref import ProtocolError, VectorError

PROFILE_V2 = "tacit-v2"
KEM_NAME = "ML-KEM-1024"
INFO_PQXDH = b"tacit/pqxdh/v2"
INFO_SESSION_V2 = b"tacit/session/v2"
KEM_TYPE = 0x0A
EK_LEN = 1568
ENCODED_KEM_LEN = 1 + EK_LEN
CT_LEN = 1568
Q = 3329
MAX_BUNDLE_LEN = 2048

BUNDLE_ERRORS = ("malformed", "version", "kem_key_length", "kem_key_encoding",
                 "kem_key_invalid", "signature", "kem_signature", "small_order")
MESSAGE_ERRORS = ("malformed", "version", "kem_ciphertext_length", "classical_refused",
                  "unknown_signed_prekey", "unknown_one_time_prekey", "unknown_kem_prekey",
                  "small_order", "decrypt")


class Refused(ProtocolError):
    """A refusal named by one of the vector error names of 15.12."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# ---------------------------------------------------------------------------
# ML-KEM-1024 (15.1, 15.2)

def ek_check(ek):
    """FIPS 203 section 7.2: 1568 bytes, and each of the 4 * 256 12-bit
    coefficients of ek[0..1536), read little-endian (ByteDecode_12), below q."""
    if len(ek) != EK_LEN:
        return False
    for i in range(0, 1536, 3):
        b0, b1, b2 = ek[i], ek[i + 1], ek[i + 2]
        if (b0 | (b1 & 0x0F) << 8) >= Q or (b1 >> 4 | b2 << 4) >= Q:
            return False
    return True


def kem_keygen(d, z):
    """ML-KEM.KeyGen_internal(d, z): (ek, dk)."""
    return ML_KEM_1024._keygen_internal(d, z)


def kem_encaps(ek, m):
    """ML-KEM.Encaps_internal(ek, m): (CT, SS)."""
    ss, ct = ML_KEM_1024._encaps_internal(ek, m)
    return ct, ss


def kem_decaps(dk, ct):
    """ML-KEM.Decaps_internal(dk, CT): SS (implicit rejection, never fails on
    a 1568-byte CT)."""
    return ML_KEM_1024._decaps_internal(dk, ct)


def encode_kem(ek):
    return bytes([KEM_TYPE]) + ek


# ---------------------------------------------------------------------------
# Wire format (section 9 and 15.7)

def _opt_uint(tag, v):
    return b"" if v is None else t.pb_varint(tag << 3) + t.pb_varint(v)


def _opt_bytes(tag, v):
    return b"" if v is None else t.pb_varint((tag << 3) | 2) + t.pb_varint(len(v)) + v


def encode_ratchet_message(enc_header, ciphertext, version=1):
    return t.pb_uint(1, version) + t.pb_bytes(2, enc_header) + t.pb_bytes(3, ciphertext)


def encode_bundle(f):
    """f: version, identity_key, signed_prekey_id, signed_prekey,
    signed_prekey_signature, one_time_prekey_id, one_time_prekey, kem_prekey_id,
    kem_prekey, kem_prekey_signature (None: absent)."""
    return (t.pb_uint(1, f["version"]) + t.pb_bytes(2, f["identity_key"])
            + t.pb_uint(3, f["signed_prekey_id"]) + t.pb_bytes(4, f["signed_prekey"])
            + t.pb_bytes(5, f["signed_prekey_signature"])
            + _opt_uint(6, f["one_time_prekey_id"]) + _opt_bytes(7, f["one_time_prekey"])
            + _opt_uint(8, f["kem_prekey_id"]) + _opt_bytes(9, f["kem_prekey"])
            + _opt_bytes(10, f["kem_prekey_signature"]))


def encode_prekey_message(f):
    """f: version, identity_key, ephemeral_key, signed_prekey_id,
    one_time_prekey_id, message (RatchetMessage bytes), kem_prekey_id,
    kem_ciphertext (None: absent)."""
    return (t.pb_uint(1, f["version"]) + t.pb_bytes(2, f["identity_key"])
            + t.pb_bytes(3, f["ephemeral_key"]) + t.pb_uint(4, f["signed_prekey_id"])
            + _opt_uint(5, f["one_time_prekey_id"]) + _opt_bytes(6, f["message"])
            + _opt_uint(7, f["kem_prekey_id"]) + _opt_bytes(8, f["kem_ciphertext"]))


def _decode_fields(b, spec, what):
    """prost's decoding of the message (uint32 fields truncated to 32 bits),
    then the canonical re-encoding must be the input.  Unknown fields,
    repeats and wrong wire types fail the re-encoding."""
    try:
        m = t._message(b, spec, what)
    except t._Malformed as e:
        raise Refused("malformed", str(e)) from None
    return {k: (v & 0xFFFFFFFF if spec[k] == "v" else v) for k, v in m.items()}


def _version_checks(version, kem_tags, m, what):
    if version not in (1, 2):
        raise Refused("version", f"{what}: unknown version {version}")
    present = [tag in m for tag in kem_tags]
    if (version == 1 and any(present)) or (version == 2 and not all(present)):
        raise Refused("version", f"{what}: version {version} and KEM fields {present}")


def _need(m, tag, n, what, name):
    v = m.get(tag, b"")
    if not v:
        raise Refused("malformed", f"{what}: {name} missing")
    if len(v) != n:
        raise Refused("malformed", f"{what}: {name} of {len(v)} bytes")
    return v


def _identity(v, what):
    try:
        t.check_identity_key(v)
    except ProtocolError as e:
        raise Refused("malformed", f"{what}: identity_key: {e}") from None
    return v


BUNDLE_SPEC = {1: "v", 2: "b", 3: "v", 4: "b", 5: "b", 6: "v", 7: "b", 8: "v", 9: "b", 10: "b"}


def decode_bundle(b):
    """Strict decoding of a PreKeyBundle (section 9 checks 1 to 3, 15.7's
    version checks, section 9 checks 5 to 7, then the KEM fields)."""
    what = "PreKeyBundle"
    if len(b) > MAX_BUNDLE_LEN:
        raise Refused("malformed", f"{what}: oversize")
    m = _decode_fields(b, BUNDLE_SPEC, what)
    f = {
        "version": m.get(1, 0), "identity_key": m.get(2, b""), "signed_prekey_id": m.get(3, 0),
        "signed_prekey": m.get(4, b""), "signed_prekey_signature": m.get(5, b""),
        "one_time_prekey_id": m.get(6), "one_time_prekey": m.get(7),
        "kem_prekey_id": m.get(8), "kem_prekey": m.get(9), "kem_prekey_signature": m.get(10),
    }
    if encode_bundle(f) != b:
        raise Refused("malformed", f"{what}: not the canonical encoding")
    _version_checks(f["version"], (8, 9, 10), m, what)
    _need(m, 2, 32, what, "identity_key")
    _need(m, 4, 32, what, "signed_prekey")
    _need(m, 5, 64, what, "signed_prekey_signature")
    if (6 in m) != (7 in m):
        raise Refused("malformed", f"{what}: one_time_prekey_id without one_time_prekey or back")
    if 7 in m:
        _need(m, 7, 32, what, "one_time_prekey")
    _identity(f["identity_key"], what)
    if f["version"] == 2:
        kem = f["kem_prekey"]
        if len(kem) != ENCODED_KEM_LEN:
            raise Refused("kem_key_length", f"{what}: kem_prekey of {len(kem)} bytes")
        if kem[0] != KEM_TYPE:
            raise Refused("kem_key_encoding", f"{what}: type byte {kem[0]:#04x}")
        if not ek_check(kem[1:]):
            raise Refused("kem_key_invalid", f"{what}: a coefficient is q or more")
        if len(f["kem_prekey_signature"]) != 64:
            raise Refused("malformed", f"{what}: kem_prekey_signature of "
                          f"{len(f['kem_prekey_signature'])} bytes")
    return f


PREKEY_SPEC = {1: "v", 2: "b", 3: "b", 4: "v", 5: "v", 6: "b", 7: "v", 8: "b"}


def decode_prekey_message(b):
    """Strict decoding of a PreKeyMessage (check 0 of 15.5)."""
    what = "PreKeyMessage"
    if len(b) > t.MAX_MESSAGE_LEN:
        raise Refused("malformed", f"{what}: oversize")
    m = _decode_fields(b, PREKEY_SPEC, what)
    f = {
        "version": m.get(1, 0), "identity_key": m.get(2, b""), "ephemeral_key": m.get(3, b""),
        "signed_prekey_id": m.get(4, 0), "one_time_prekey_id": m.get(5),
        "message": m.get(6), "kem_prekey_id": m.get(7), "kem_ciphertext": m.get(8),
    }
    inner = None
    if f["message"] is not None:
        inner = _decode_fields(f["message"], {1: "v", 2: "b", 3: "b"}, "RatchetMessage")
        if encode_ratchet_message(inner.get(2, b""), inner.get(3, b""),
                                  inner.get(1, 0)) != f["message"]:
            raise Refused("malformed", "RatchetMessage: not the canonical encoding")
    if encode_prekey_message(f) != b:
        raise Refused("malformed", f"{what}: not the canonical encoding")
    _version_checks(f["version"], (7, 8), m, what)
    _need(m, 2, 32, what, "identity_key")
    _need(m, 3, 32, what, "ephemeral_key")
    if inner is None:
        raise Refused("malformed", f"{what}: message missing")
    if inner.get(1, 0) != 1:
        raise Refused("version", f"RatchetMessage: version {inner.get(1, 0)}")
    enc_header = _need(inner, 2, 80, "RatchetMessage", "encrypted_header")
    ct = inner.get(3, b"")
    if len(ct) < t.TAG_LEN:
        raise Refused("malformed", "RatchetMessage: ciphertext shorter than its tag")
    _identity(f["identity_key"], what)
    if f["version"] == 2 and len(f["kem_ciphertext"]) != CT_LEN:
        raise Refused("kem_ciphertext_length",
                      f"{what}: kem_ciphertext of {len(f['kem_ciphertext'])} bytes")
    f["enc_header"], f["ciphertext"] = enc_header, ct
    return f


# ---------------------------------------------------------------------------
# PQXDH (15.3, 15.4, 15.5)

def session_keys(sk, ika_pub, ikb_pub):
    okm = t.hkdf(bytes(32), sk, INFO_SESSION_V2, 96)
    return {"sk": sk, "ad": ika_pub + ikb_pub, "root_key": okm[:32],
            "header_key_a": okm[32:64], "next_header_key_b": okm[64:96]}


def derive_sk(dhs, ss, encoded_kem, ct):
    km = b"\xff" * 32 + b"".join(dhs) + ss + encoded_kem + ct
    assert len(km) in (3297, 3329)
    return t.hkdf(bytes(32), km, INFO_PQXDH, 32)


def initiate(alice_seed, bundle, ek_priv, m):
    """15.3 on a decoded version-2 bundle; EK_A and m are the two draws.
    Raises Refused(signature | kem_signature | small_order)."""
    ikb = bundle["identity_key"]
    spk = bundle["signed_prekey"]
    if not t.verify_strict(ikb, spk, bundle["signed_prekey_signature"]):
        raise Refused("signature")
    if not t.verify_strict(ikb, bundle["kem_prekey"], bundle["kem_prekey_signature"]):
        raise Refused("kem_signature")
    ika_x = t.identity_x25519_private(alice_seed)
    try:
        dhs = [t.dh(ika_x, spk), t.dh(ek_priv, t.ed_to_montgomery(ikb)), t.dh(ek_priv, spk)]
        if bundle["one_time_prekey"] is not None:
            dhs.append(t.dh(ek_priv, bundle["one_time_prekey"]))
    except ProtocolError as e:
        raise Refused("small_order", str(e)) from None
    ct, ss = kem_encaps(bundle["kem_prekey"][1:], m)
    sk = derive_sk(dhs, ss, bundle["kem_prekey"], ct)
    keys = session_keys(sk, t.ed_public_from_seed(alice_seed), ikb)
    keys.update({"alice_ephemeral_public": t.x25519_public(ek_priv),
                 "kem_ciphertext": ct, "kem_shared_secret": ss})
    return keys


def initiate_v1(alice_seed, bundle, ek_priv):
    """A version-1 bundle gives a tacit-v1 session (15.8): X3DH, section 2.1."""
    ikb = bundle["identity_key"]
    spk = bundle["signed_prekey"]
    if not t.verify_strict(ikb, spk, bundle["signed_prekey_signature"]):
        raise Refused("signature")
    ika_x = t.identity_x25519_private(alice_seed)
    try:
        dhs = [t.dh(ika_x, spk), t.dh(ek_priv, t.ed_to_montgomery(ikb)), t.dh(ek_priv, spk)]
        if bundle["one_time_prekey"] is not None:
            dhs.append(t.dh(ek_priv, bundle["one_time_prekey"]))
    except ProtocolError as e:
        raise Refused("small_order", str(e)) from None
    return t.hkdf(bytes(32), b"\xff" * 32 + b"".join(dhs), t.INFO_X3DH, 32)


def _bob_draws(i):
    # Bob's ratchet pair after the first message; no vector value depends on it.
    return hashlib.sha256(f"tacit-v2 pyref/bob ratchet/{i}".encode()).digest()


class Bob:
    """The responder of an invalid entry (15.12): his identity, one signed
    prekey, the case's OPK if any, one KEM prekey, the policy on, and the
    sessions he has accepted (by base key)."""

    def __init__(self, seed, spk_id, spk_priv, opk_id, opk_priv, kem_id, kem_dz, kem_one_time):
        self.seed = seed
        self.ik = t.ed_public_from_seed(seed)
        self.spk_id, self.spk_priv = spk_id, spk_priv
        self.opk = None if opk_id is None else (opk_id, opk_priv)
        self.kem_id, self.kem_one_time = kem_id, kem_one_time
        self.kem_ek, self.kem_dk = kem_keygen(*kem_dz)
        self.kem_present = True
        self.sessions = []  # (base key, peer identity, ratchet state)

    def receive(self, b):
        """15.5 on prekey message bytes: returns the plaintext or raises
        Refused; nothing changes on a refusal."""
        f = decode_prekey_message(b)
        ik_a, ek_a = f["identity_key"], f["ephemeral_key"]
        for n, (base, peer, st) in enumerate(self.sessions):
            if base == ek_a and peer == ik_a:
                try:
                    new, pt = t.ratchet_decrypt(st, f["enc_header"], f["ciphertext"])
                except ProtocolError as e:
                    raise Refused("decrypt", f"stored session: {e}") from None
                self.sessions[n] = (base, peer, new)
                return pt
        if f["version"] == 1:
            raise Refused("classical_refused")
        if f["signed_prekey_id"] != self.spk_id:
            raise Refused("unknown_signed_prekey", str(f["signed_prekey_id"]))
        opk_id = f["one_time_prekey_id"]
        if opk_id is not None and (self.opk is None or self.opk[0] != opk_id):
            raise Refused("unknown_one_time_prekey", str(opk_id))
        if f["kem_prekey_id"] != self.kem_id or not self.kem_present:
            raise Refused("unknown_kem_prekey", str(f["kem_prekey_id"]))
        ikb_x = t.identity_x25519_private(self.seed)
        try:
            dhs = [t.dh(self.spk_priv, t.ed_to_montgomery(ik_a)), t.dh(ikb_x, ek_a),
                   t.dh(self.spk_priv, ek_a)]
            if opk_id is not None:
                dhs.append(t.dh(self.opk[1], ek_a))
        except ProtocolError as e:
            raise Refused("small_order", str(e)) from None
        ss = kem_decaps(self.kem_dk, f["kem_ciphertext"])
        keys = session_keys(derive_sk(dhs, ss, encode_kem(self.kem_ek), f["kem_ciphertext"]),
                            ik_a, self.ik)
        st = t.init_bob(keys, self.spk_priv, [], t.DEFAULT_MAX_SKIP, _bob_draws)
        try:
            st, pt = t.ratchet_decrypt(st, f["enc_header"], f["ciphertext"])
        except ProtocolError as e:
            raise Refused("decrypt", str(e)) from None
        # One commit: the one-time keys named go, the session is stored.
        if opk_id is not None:
            self.opk = None
        if self.kem_one_time:
            self.kem_present = False
        self.sessions.append((ek_a, ik_a, st))
        self.last_keys = dict(keys, kem_shared_secret=ss)
        return pt


# ---------------------------------------------------------------------------
# A case: Bob's bundle and Alice's first message, from the inputs alone

def build_case(inp):
    """Every value of a case's `expected` from its inputs (bytes / ints /
    None), plus Bob's view of the first message."""
    a_seed, b_seed = inp["alice_identity_seed"], inp["bob_identity_seed"]
    ika, ikb = t.ed_public_from_seed(a_seed), t.ed_public_from_seed(b_seed)
    spk = t.x25519_public(inp["bob_signed_prekey_private"])
    spk_sig = sign_twice(b_seed, spk)
    opk_priv = inp["bob_one_time_prekey_private"]
    opk = None if opk_priv is None else t.x25519_public(opk_priv)
    ek, _dk = kem_keygen(inp["bob_kem_prekey_d"], inp["bob_kem_prekey_z"])
    if not ek_check(ek):
        raise VectorError("ML-KEM key generation gave a key that fails the FIPS 203 check")
    encoded = encode_kem(ek)
    kem_sig = sign_twice(b_seed, encoded)
    bundle = encode_bundle({
        "version": 2, "identity_key": ikb, "signed_prekey_id": inp["bob_signed_prekey_id"],
        "signed_prekey": spk, "signed_prekey_signature": spk_sig,
        "one_time_prekey_id": inp["bob_one_time_prekey_id"], "one_time_prekey": opk,
        "kem_prekey_id": inp["bob_kem_prekey_id"], "kem_prekey": encoded,
        "kem_prekey_signature": kem_sig})
    try:
        keys = initiate(a_seed, decode_bundle(bundle), inp["alice_ephemeral_private"],
                        inp["kem_encapsulation_m"])
    except Refused as e:
        raise VectorError(f"the case's own bundle is refused: {e}") from None
    first = first_message(inp, keys, spk)
    out = {
        "alice_identity_public": ika, "bob_identity_public": ikb,
        "bob_signed_prekey_public": spk, "bob_signed_prekey_signature": spk_sig,
        "bob_one_time_prekey_public": opk, "bob_kem_prekey_encoded": encoded,
        "bob_kem_prekey_signature": kem_sig,
        "alice_ephemeral_public": keys["alice_ephemeral_public"],
        "kem_ciphertext": keys["kem_ciphertext"], "kem_shared_secret": keys["kem_shared_secret"],
        "sk": keys["sk"], "ad": keys["ad"], "root_key": keys["root_key"],
        "header_key_a": keys["header_key_a"], "next_header_key_b": keys["next_header_key_b"],
        "bundle": bundle, "first_message": first,
    }
    return out


def first_message(inp, keys, spk_pub, **override):
    """Alice's first message (15.12): the ratchet from the session keys,
    `plaintext` encrypted with `header_nonce`, wrapped in a version-2
    PreKeyMessage.  `override` replaces wire fields (for hostile entries)."""
    st = t.init_alice(keys, spk_pub, [inp["alice_ratchet_private"]], t.DEFAULT_MAX_SKIP)
    _h, enc_header, ct = t.ratchet_encrypt(st, inp["plaintext"], inp["header_nonce"])
    f = {
        "version": 2, "identity_key": keys["ad"][:32],
        "ephemeral_key": keys["alice_ephemeral_public"],
        "signed_prekey_id": inp["bob_signed_prekey_id"],
        "one_time_prekey_id": inp["bob_one_time_prekey_id"],
        "message": encode_ratchet_message(enc_header, ct),
        "kem_prekey_id": inp["bob_kem_prekey_id"], "kem_ciphertext": keys["kem_ciphertext"],
    }
    f.update(override)
    return encode_prekey_message(f)


def sign_twice(seed, msg):
    """Ed25519 (RFC 8032, deterministic) here and by libsodium; they must agree."""
    ours = t.ed_sign(seed, msg)
    _pk, sk = t.nb.crypto_sign_seed_keypair(seed)
    if t.nb.crypto_sign(msg, sk)[:64] != ours or not t.verify_strict(
            t.ed_public_from_seed(seed), msg, ours):
        raise VectorError("Ed25519: this program and libsodium disagree")
    return ours


def bob_of(inp):
    return Bob(inp["bob_identity_seed"], inp["bob_signed_prekey_id"],
               inp["bob_signed_prekey_private"], inp["bob_one_time_prekey_id"],
               inp["bob_one_time_prekey_private"], inp["bob_kem_prekey_id"],
               (inp["bob_kem_prekey_d"], inp["bob_kem_prekey_z"]),
               inp["bob_kem_prekey_one_time"])


def bob_accepts_first(inp, exp):
    """Bob of the case accepts its first message (which must decrypt to the
    plaintext with the same SS and SK as Alice's); returns Bob."""
    bob = bob_of(inp)
    try:
        pt = bob.receive(exp["first_message"])
    except Refused as e:
        raise VectorError(f"Bob refuses the first message: {e}") from None
    if pt != inp["plaintext"]:
        raise VectorError("Bob decrypts the first message to another plaintext")
    for k in ("kem_shared_secret", "sk", "root_key", "header_key_a", "next_header_key_b", "ad"):
        if bob.last_keys[k] != exp[k]:
            raise VectorError(f"Bob's {k} differs from Alice's")
    return bob


# ---------------------------------------------------------------------------
# verify (15.12)

CASE_INPUTS = (("alice_identity_seed", 32), ("bob_identity_seed", 32),
               ("bob_signed_prekey_id", "u32"), ("bob_signed_prekey_private", 32),
               ("bob_one_time_prekey_id", "u32?"), ("bob_one_time_prekey_private", "32?"),
               ("bob_kem_prekey_id", "u32"), ("bob_kem_prekey_one_time", "bool"),
               ("bob_kem_prekey_d", 32), ("bob_kem_prekey_z", 32),
               ("alice_ephemeral_private", 32), ("kem_encapsulation_m", 32),
               ("alice_ratchet_private", 32), ("header_nonce", 24), ("plaintext", None))
CASE_EXPECTED = (("alice_identity_public", 32), ("bob_identity_public", 32),
                 ("bob_signed_prekey_public", 32), ("bob_signed_prekey_signature", 64),
                 ("bob_one_time_prekey_public", "32?"),
                 ("bob_kem_prekey_encoded", ENCODED_KEM_LEN), ("bob_kem_prekey_signature", 64),
                 ("alice_ephemeral_public", 32), ("kem_ciphertext", CT_LEN),
                 ("kem_shared_secret", 32), ("sk", 32), ("ad", 64), ("root_key", 32),
                 ("header_key_a", 32), ("next_header_key_b", 32), ("bundle", None),
                 ("first_message", None))
INVALID_FIELDS = ("name", "case", "kind", "after_first_message", "bytes", "error")


def _value(v, kind, where):
    if kind in ("u32", "u32?"):
        if v is None and kind == "u32?":
            return None
        if t._int(v, where) > t.U32_MAX:
            raise VectorError(f"{where}: not a u32")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise VectorError(f"{where}: expected true or false")
        return v
    if kind == "32?":
        return t._hex(v, 32, where, nullable=True)
    return t._hex(v, kind, where)


def _fields_of(obj, spec, extra, where):
    t._keys(obj, [k for k, _ in spec] + list(extra), where=where)
    return {k: _value(obj[k], kind, f"{where}.{k}") for k, kind in spec}


def parse_case(c):
    inp = _fields_of(c, CASE_INPUTS, ("name", "expected"), "case")
    t._str(c["name"], "case.name")
    if (inp["bob_one_time_prekey_id"] is None) != (inp["bob_one_time_prekey_private"] is None):
        raise VectorError("bob_one_time_prekey_private must be null exactly when the id is")
    exp = _fields_of(c["expected"], CASE_EXPECTED, (), "expected")
    return inp, exp


def verify_case(c):
    inp, exp = parse_case(c)
    got = build_case(inp)
    for k, _ in CASE_EXPECTED:
        if got[k] != exp[k]:
            g = None if got[k] is None else got[k].hex()
            raise VectorError(f"expected.{k} mismatch: computed {g}")
    bob_accepts_first(inp, exp)


def verify_invalid(c, cases):
    t._keys(c, INVALID_FIELDS, where="invalid")
    for k in ("name", "case", "kind", "error"):
        t._str(c[k], f"invalid.{k}")
    after = _value(c["after_first_message"], "bool", "invalid.after_first_message")
    b = t._hex(c["bytes"], None, "invalid.bytes")
    matches = [x for x in cases if isinstance(x, dict) and x.get("name") == c["case"]]
    if len(matches) != 1:
        raise VectorError(f"case {c['case']!r} names {len(matches)} cases, not one")
    inp, exp = parse_case(matches[0])
    kind, err = c["kind"], c["error"]
    if kind == "bundle":
        if err not in BUNDLE_ERRORS:
            raise VectorError(f"error {err!r} is not a bundle error")
        if after:
            raise VectorError("after_first_message must be false for a bundle")
        try:
            bundle = decode_bundle(b)
            if bundle["version"] == 1:
                initiate_v1(inp["alice_identity_seed"], bundle, inp["alice_ephemeral_private"])
            else:
                initiate(inp["alice_identity_seed"], bundle, inp["alice_ephemeral_private"],
                         inp["kem_encapsulation_m"])
        except Refused as e:
            if e.kind != err:
                raise VectorError(f"refused with {e}, expected {err!r}") from None
            return
        raise VectorError(f"bundle accepted (version {bundle['version']}), expected {err!r}")
    if kind != "message":
        raise VectorError(f"kind must be \"bundle\" or \"message\", got {kind!r}")
    if err not in MESSAGE_ERRORS:
        raise VectorError(f"error {err!r} is not a message error")
    bob = bob_accepts_first(inp, exp) if after else bob_of(inp)
    before = (bob.opk, bob.kem_present, len(bob.sessions))
    try:
        bob.receive(b)
    except Refused as e:
        if e.kind != err:
            raise VectorError(f"refused with {e}, expected {err!r}") from None
        if (bob.opk, bob.kem_present, len(bob.sessions)) != before:
            raise VectorError("a refused message changed Bob's keys")
        return
    raise VectorError(f"message accepted, expected {err!r}")


def check_top(doc):
    t._keys(doc, ("profile", "kem", "cases", "invalid"), where="top level (pqxdh.json)")
    if doc["profile"] != PROFILE_V2:
        raise VectorError(f"profile is not {PROFILE_V2!r}")
    if doc["kem"] != KEM_NAME:
        raise VectorError(f"kem is not {KEM_NAME!r}")
    for k in ("cases", "invalid"):
        if not isinstance(doc[k], list):
            raise VectorError(f"{k}: expected a list")


def groups(doc):
    return [(doc["cases"], verify_case),
            (doc["invalid"], lambda c: verify_invalid(c, doc["cases"]))]


# ---------------------------------------------------------------------------
# generate (this program's own pqxdh.json, same schema)

def _rnd(label, n=32):
    return t.rnd("pqxdh/" + label, n)


def make_inputs(name, opk_id, kem_id, one_time, spk_id=1, plaintext=None, seeds=None):
    """A case's inputs, each random value derived from its name."""
    def r(field, n=32):
        if seeds and field in seeds:
            return seeds[field]
        return _rnd(f"{name}/{field}", n)
    return {
        "alice_identity_seed": r("alice_identity_seed"),
        "bob_identity_seed": r("bob_identity_seed"),
        "bob_signed_prekey_id": spk_id,
        "bob_signed_prekey_private": r("bob_signed_prekey_private"),
        "bob_one_time_prekey_id": opk_id,
        "bob_one_time_prekey_private": None if opk_id is None else r("bob_one_time_prekey_private"),
        "bob_kem_prekey_id": kem_id,
        "bob_kem_prekey_one_time": one_time,
        "bob_kem_prekey_d": r("bob_kem_prekey_d"),
        "bob_kem_prekey_z": r("bob_kem_prekey_z"),
        "alice_ephemeral_private": r("alice_ephemeral_private"),
        "kem_encapsulation_m": r("kem_encapsulation_m"),
        "alice_ratchet_private": r("alice_ratchet_private"),
        "header_nonce": r("header_nonce", 24),
        "plaintext": (f"first tacit-v2 message of {name}".encode()
                      if plaintext is None else plaintext),
    }


def _bundle_fields(inp, exp):
    return {
        "version": 2, "identity_key": exp["bob_identity_public"],
        "signed_prekey_id": inp["bob_signed_prekey_id"],
        "signed_prekey": exp["bob_signed_prekey_public"],
        "signed_prekey_signature": exp["bob_signed_prekey_signature"],
        "one_time_prekey_id": inp["bob_one_time_prekey_id"],
        "one_time_prekey": exp["bob_one_time_prekey_public"],
        "kem_prekey_id": inp["bob_kem_prekey_id"], "kem_prekey": exp["bob_kem_prekey_encoded"],
        "kem_prekey_signature": exp["bob_kem_prekey_signature"],
    }


def _message_fields(b):
    """The wire fields of a (valid) prekey message, for editing."""
    f = decode_prekey_message(b)
    return {k: f[k] for k in ("version", "identity_key", "ephemeral_key", "signed_prekey_id",
                              "one_time_prekey_id", "message", "kem_prekey_id",
                              "kem_ciphertext")}


def _flip(b, i, mask=0x01):
    return b[:i] + bytes([b[i] ^ mask]) + b[i + 1:]


def _with_coefficient(encoded, index, value):
    """EncodeKEM(ek) with the index-th 12-bit coefficient of ek set to value."""
    ek = bytearray(encoded[1:])
    i = 3 * (index // 2)
    if index % 2 == 0:
        ek[i] = value & 0xFF
        ek[i + 1] = (ek[i + 1] & 0xF0) | (value >> 8)
    else:
        ek[i + 1] = (ek[i + 1] & 0x0F) | ((value & 0x0F) << 4)
        ek[i + 2] = value >> 4
    return encoded[:1] + bytes(ek)


def second_first_message(inp, exp, label, opk_id):
    """A valid-looking first message of the case's bundle with another EK_A
    and m (and another ratchet pair and nonce), naming opk_id."""
    other = dict(inp, alice_ephemeral_private=_rnd(label + "/alice_ephemeral_private"),
                 kem_encapsulation_m=_rnd(label + "/kem_encapsulation_m"),
                 alice_ratchet_private=_rnd(label + "/alice_ratchet_private"),
                 header_nonce=_rnd(label + "/header_nonce", 24),
                 bob_one_time_prekey_id=opk_id)
    keys = initiate(inp["alice_identity_seed"], decode_bundle(exp["bundle"]),
                    other["alice_ephemeral_private"], other["kem_encapsulation_m"])
    return first_message(other, keys, exp["bob_signed_prekey_public"])


def classical_first_message(inp, exp):
    """A tacit-v1 first message (X3DH, section 2; version 1, no KEM fields)
    made with Bob's keys of the case."""
    bundle = decode_bundle(exp["bundle"])
    sk = initiate_v1(inp["alice_identity_seed"], bundle, inp["alice_ephemeral_private"])
    okm = t.hkdf(bytes(32), sk, t.INFO_SESSION, 96)
    keys = {"ad": exp["ad"], "root_key": okm[:32], "header_key_a": okm[32:64],
            "next_header_key_b": okm[64:96],
            "alice_ephemeral_public": exp["alice_ephemeral_public"], "kem_ciphertext": None}
    return first_message(inp, keys, exp["bob_signed_prekey_public"], version=1,
                         kem_prekey_id=None)


def gen_pqxdh():
    specs = [
        ("opk_one_time_kem", dict(opk_id=7, kem_id=1, one_time=True)),
        ("no_opk_last_resort_kem", dict(opk_id=None, kem_id=2, one_time=False, spk_id=3)),
        ("opk_last_resort_kem", dict(opk_id=100, kem_id=3, one_time=False, spk_id=2)),
        ("no_opk_one_time_kem", dict(opk_id=None, kem_id=4, one_time=True)),
        ("largest_ids_empty_plaintext", dict(opk_id=t.U32_MAX, kem_id=t.U32_MAX, one_time=True,
                                             spk_id=t.U32_MAX, plaintext=b"")),
        ("zero_ids_edge_seeds", dict(opk_id=0, kem_id=0, one_time=False, spk_id=0, seeds={
            "bob_kem_prekey_d": bytes(32), "bob_kem_prekey_z": b"\xff" * 32,
            "kem_encapsulation_m": bytes(32), "header_nonce": b"\xff" * 24})),
        ("long_plaintext", dict(opk_id=5, kem_id=9, one_time=True, plaintext=bytes(
            (i * 7) & 0xFF for i in range(5000)))),
    ]
    cases, built = [], {}
    for name, kw in specs:
        inp = make_inputs(name, **kw)
        exp = build_case(inp)
        bob_accepts_first(inp, exp)
        built[name] = (inp, exp)
        cases.append({"name": name, **inp, "expected": exp})

    invalid = []

    def bundle(name, case, err, **override):
        inp, exp = built[case]
        f = _bundle_fields(inp, exp)
        f.update(override)
        invalid.append({"name": name, "case": case, "kind": "bundle",
                        "after_first_message": False, "bytes": encode_bundle(f), "error": err})

    def message(name, case, err, b, after=False):
        invalid.append({"name": name, "case": case, "kind": "message",
                        "after_first_message": after, "bytes": b, "error": err})

    def edited(case, **override):
        f = _message_fields(built[case][1]["first_message"])
        f.update(override)
        return encode_prekey_message(f)

    a = "opk_one_time_kem"
    inp, exp = built[a]
    enc, bseed = exp["bob_kem_prekey_encoded"], inp["bob_identity_seed"]
    other_seed = _rnd("invalid/other_identity_seed")

    def resigned(encoded):
        return {"kem_prekey": encoded, "kem_prekey_signature": sign_twice(bseed, encoded)}

    bundle("kem_key_1568_bytes", a, "kem_key_length", **resigned(enc[:-1]))
    bundle("kem_key_1570_bytes", a, "kem_key_length", **resigned(enc + b"\x00"))
    bundle("kem_key_without_type_byte", a, "kem_key_length", **resigned(enc[1:]))
    bundle("kem_key_empty", a, "kem_key_length", **resigned(b""))
    bundle("kem_key_type_byte_0b", a, "kem_key_encoding", **resigned(b"\x0b" + enc[1:]))
    bundle("kem_key_type_byte_05", a, "kem_key_encoding", **resigned(b"\x05" + enc[1:]))
    bundle("kem_key_first_coefficient_3329", a, "kem_key_invalid",
           **resigned(_with_coefficient(enc, 0, 3329)))
    bundle("kem_key_last_coefficient_4095", a, "kem_key_invalid",
           **resigned(_with_coefficient(enc, 1023, 4095)))
    bundle("kem_key_odd_coefficient_3329", a, "kem_key_invalid",
           **resigned(_with_coefficient(enc, 511, 3329)))
    bundle("kem_key_coefficient_3328_signed_for_another_key", a, "kem_signature",
           kem_prekey=_with_coefficient(enc, 0, 3328))
    bundle("kem_key_rho_bit_flipped", a, "kem_signature", kem_prekey=_flip(enc, 1568))
    bundle("kem_prekey_signed_by_another_identity", a, "kem_signature",
           kem_prekey_signature=sign_twice(other_seed, enc))
    bundle("ec_signature_as_kem_signature", a, "kem_signature",
           kem_prekey_signature=exp["bob_signed_prekey_signature"])
    bundle("kem_signature_as_ec_signature", a, "signature",
           signed_prekey_signature=exp["bob_kem_prekey_signature"])
    bundle("signatures_swapped", a, "signature",
           signed_prekey_signature=exp["bob_kem_prekey_signature"],
           kem_prekey_signature=exp["bob_signed_prekey_signature"])
    bundle("kem_signature_bit_flipped_in_s", a, "kem_signature",
           kem_prekey_signature=_flip(exp["bob_kem_prekey_signature"], 40))
    bundle("signed_prekey_signature_bad_and_kem_key_signed_by_another", a, "signature",
           signed_prekey_signature=_flip(exp["bob_signed_prekey_signature"], 0),
           kem_prekey_signature=sign_twice(other_seed, enc))
    bundle("version_1_with_kem_fields", a, "version", version=1)
    bundle("version_2_without_kem_fields", a, "version", kem_prekey_id=None, kem_prekey=None,
           kem_prekey_signature=None)
    bundle("version_2_without_kem_signature", a, "version", kem_prekey_signature=None)
    bundle("version_2_without_kem_prekey_id", a, "version", kem_prekey_id=None)
    bundle("version_3", a, "version", version=3)
    bundle("kem_signature_63_bytes", a, "malformed",
           kem_prekey_signature=exp["bob_kem_prekey_signature"][:63])
    small = bytes(32)
    bundle("signed_prekey_of_small_order", a, "small_order", signed_prekey=small,
           signed_prekey_signature=sign_twice(bseed, small))
    bundle("one_time_prekey_of_small_order", a, "small_order", one_time_prekey=small)
    b = "no_opk_last_resort_kem"
    bundle("kem_key_invalid_before_bad_signature", b, "kem_key_invalid",
           kem_prekey=_with_coefficient(built[b][1]["bob_kem_prekey_encoded"], 2, 4095))

    ct = exp["kem_ciphertext"]
    message("kem_ciphertext_1567_bytes", a, "kem_ciphertext_length", edited(a, kem_ciphertext=ct[:-1]))
    message("kem_ciphertext_1569_bytes", a, "kem_ciphertext_length",
            edited(a, kem_ciphertext=ct + b"\x00"))
    message("kem_ciphertext_empty", a, "kem_ciphertext_length", edited(a, kem_ciphertext=b""))
    message("classical_first_message", a, "classical_refused", classical_first_message(inp, exp))
    message("classical_first_message_last_resort", b, "classical_refused",
            classical_first_message(*built[b]))
    message("version_2_without_kem_fields", a, "version",
            edited(a, kem_prekey_id=None, kem_ciphertext=None))
    message("version_2_without_kem_ciphertext", a, "version", edited(a, kem_ciphertext=None))
    message("version_1_with_kem_fields", a, "version", edited(a, version=1))
    message("version_3", a, "version", edited(a, version=3))
    message("kem_ciphertext_first_byte_flipped", a, "decrypt", edited(a, kem_ciphertext=_flip(ct, 0)))
    message("kem_ciphertext_last_byte_flipped", a, "decrypt",
            edited(a, kem_ciphertext=_flip(ct, CT_LEN - 1, 0x80)))
    message("kem_ciphertext_of_another_m", a, "decrypt", edited(
        a, kem_ciphertext=kem_encaps(enc[1:], _rnd("invalid/other_m"))[0]))
    message("ephemeral_key_bit_flipped", a, "decrypt",
            edited(a, ephemeral_key=_flip(exp["alice_ephemeral_public"], 5)))
    message("unknown_kem_prekey_id", a, "unknown_kem_prekey", edited(a, kem_prekey_id=2))
    message("unknown_signed_prekey_id", a, "unknown_signed_prekey", edited(a, signed_prekey_id=2))
    message("unknown_one_time_prekey_id", a, "unknown_one_time_prekey",
            edited(a, one_time_prekey_id=8))
    message("one_time_prekey_named_but_none_held", b, "unknown_one_time_prekey",
            edited(b, one_time_prekey_id=1))
    message("unknown_signed_prekey_before_unknown_kem_prekey", a, "unknown_signed_prekey",
            edited(a, signed_prekey_id=2, kem_prekey_id=2))
    message("ephemeral_key_of_small_order", a, "small_order", edited(a, ephemeral_key=small))
    message("extra_field", a, "malformed", exp["first_message"] + t.pb_uint(15, 1))
    message("identity_key_of_small_order", a, "malformed",
            edited(a, identity_key=(1).to_bytes(32, "little")))
    inner = t._message(exp["first_message"], PREKEY_SPEC, "PreKeyMessage")[6]
    rm = t._message(inner, {1: "v", 2: "b", 3: "b"}, "RatchetMessage")
    message("ratchet_message_version_2", a, "version",
            edited(a, message=encode_ratchet_message(rm[2], rm[3], 2)))
    message("ratchet_header_79_bytes", a, "malformed",
            edited(a, message=encode_ratchet_message(rm[2][:79], rm[3])))
    message("ratchet_ciphertext_bit_flipped", a, "decrypt",
            edited(a, message=encode_ratchet_message(rm[2], _flip(rm[3], 0))))
    d = "no_opk_one_time_kem"
    message("second_first_message_naming_consumed_kem_prekey", d, "unknown_kem_prekey",
            second_first_message(*built[d], "invalid/second_first_message", None), after=True)
    message("second_first_message_naming_consumed_one_time_prekey", a, "unknown_one_time_prekey",
            second_first_message(inp, exp, "invalid/second_first_message_opk", 7), after=True)
    message("first_message_replayed", a, "decrypt", exp["first_message"], after=True)
    message("first_message_replayed_last_resort", b, "decrypt", built[b][1]["first_message"],
            after=True)

    doc = {"profile": PROFILE_V2, "kem": KEM_NAME, "cases": cases, "invalid": invalid}
    for c in invalid:
        verify_invalid(t.hexify(c), [t.hexify(x) for x in cases])
    return t.hexify(doc)
