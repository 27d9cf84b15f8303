"""Groups (PROTOCOL.md section 16): sender chains (16.5), group messages
(16.6), signed group states, changes and concurrent changes (16.2, 16.3),
group controls (16.4) and the multi-recipient envelope (16.7), and the
vectors of 16.9 (`group.json`), written from the document's text.

Protobuf encoding and strict decoding are done here by hand; X25519,
Ed25519 (strict verification), HKDF, ChaCha20-Poly1305, padding and
`Content` come from tacit_ref.  Errors are written as 16.9 says (for
example `Wire(InvalidLength { field: "signature", expected: 64, actual: 63 })`).
"""

import hashlib
import unicodedata

import tacit_ref as t
from tacit_ref import ProtocolError, VectorError

PROFILE = "tacit-v1"
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

MESSAGE_INFO = b"tacit/group/message/v1"
MESSAGE_LABEL = b"tacit/group/v1/message"
STATE_LABEL = b"tacit/group/v1/state"
STATE_HASH_LABEL = b"tacit/group/v1/state-hash"
OWNER_LABEL = b"tacit/group/v1/chain-owner"
PAYLOAD_LABEL = b"tacit/multi/v1/payload"
WRAP_LABEL = b"tacit/multi/v1/wrap"

MAX_GROUP_MESSAGE_LEN = 128 * 1024 + 512
MAX_DISTRIBUTION_LEN = 256
MAX_STORED_CHAIN_KEYS = 2000
MAX_GROUP_MEMBERS = 1000
MAX_TITLE_LEN = 128
MAX_GROUP_STATE_LEN = 64000
MAX_SIGNED_GROUP_STATE_LEN = 64256
MAX_GROUP_CONTROL_LEN = 130048
MAX_CONTROL_STATES = 2
MAX_STATE_HISTORY = 8
MAX_RECIPIENTS = 1000
MAX_PLAINTEXT_LEN = 256 * 1024
MAX_SHARED_PAYLOAD_LEN = MAX_PLAINTEXT_LEN + 64
MAX_GROUP_ENVELOPE_LEN = MAX_PLAINTEXT_LEN + 128


class Refused(ProtocolError):
    """A refusal; `name` is the error as 16.9 writes it."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


def q(s):
    return '"' + s + '"'


# ---------------------------------------------------------------------------
# Wire errors (section 10's encoding rules), written as 16.9 says.

def oversize(n, limit):
    return f"Oversize {{ len: {n}, max: {limit} }}"


def invalid_length(field, expected, actual):
    return f"InvalidLength {{ field: {q(field)}, expected: {expected}, actual: {actual} }}"


class WireRefused(Exception):
    """A wire error, without the wrapper of the layer that reports it."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name


def fixed(field, value, n):
    if not value:
        raise WireRefused(f"MissingField({q(field)})")
    if len(value) != n:
        raise WireRefused(invalid_length(field, n, len(value)))
    return value


def identity_key(field, value):
    fixed(field, value, 32)
    pt = t.ed_decode(value)
    if pt is None:
        raise WireRefused(f"InvalidKey {{ field: {q(field)}, error: InvalidIdentityKey }}")
    if t.ed_is_small_order(pt):
        raise WireRefused(f"InvalidKey {{ field: {q(field)}, error: WeakIdentityKey }}")
    return value


def pb_message(tag, body):
    """A sub-message or repeated element: written even when empty."""
    return t.pb_varint((tag << 3) | 2) + t.pb_varint(len(body)) + body


def decode(b, spec, limit):
    """Section 10's strict decoding of a flat message: the size limit, then
    protobuf (structure, wire types of known fields, UTF-8 of strings:
    Malformed), then canonical re-encoding (unknown or repeated scalar
    fields, order, defaults: NonCanonical), then version 1.  `spec` maps a
    tag to 'v' (varint), 'b' (bytes), 's' (string) or 'r' (repeated
    message, kept as a list of bytes), 'm' (sub-message, kept as bytes).
    Returns {tag: value}; absent scalars are 0 / b""."""
    if len(b) > limit:
        raise WireRefused(oversize(len(b), limit))
    try:
        fields = t._fields(b)
    except t._Malformed:
        raise WireRefused("Malformed") from None
    out = {}
    for tag, wt, v in fields:
        if tag not in spec:
            continue  # an unknown field: kept out of the re-encoding
        want = 0 if spec[tag] == "v" else 2
        if wt != want:
            raise WireRefused("Malformed")
        if spec[tag] == "s":
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                raise WireRefused("Malformed") from None
        if spec[tag] == "r":
            out.setdefault(tag, []).append(v)
        else:
            out[tag] = v  # a repeated scalar: the last one wins
    enc = b""
    for tag in sorted(spec):
        kind = spec[tag]
        if kind == "v":
            enc += t.pb_uint(tag, out.get(tag, 0))
        elif kind in ("b", "s"):
            enc += t.pb_bytes(tag, out.get(tag, b""))
        elif kind == "r":
            for v in out.get(tag, []):
                enc += pb_message(tag, v)
        elif kind == "m" and tag in out:
            enc += pb_message(tag, out[tag])
    if enc != b:
        raise WireRefused("NonCanonical")
    if out.get(1, 0) != 1:
        raise WireRefused(f"UnknownVersion({out.get(1, 0)})")
    for tag, kind in spec.items():
        if kind in ("b", "s"):
            out.setdefault(tag, b"")
        elif kind == "v":
            out.setdefault(tag, 0)
    return out


GROUP_MESSAGE = {1: "v", 2: "b", 3: "b", 4: "b", 5: "v", 6: "b", 7: "b"}
DISTRIBUTION = {1: "v", 2: "b", 3: "b", 4: "b", 5: "v", 6: "b", 7: "b"}
GROUP_STATE = {1: "v", 2: "b", 3: "v", 4: "b", 5: "s", 6: "r"}
GROUP_MEMBER = {1: "s", 2: "b", 3: "v"}
SIGNED_STATE = {1: "v", 2: "b", 3: "s", 4: "v", 5: "b", 6: "b", 7: "b"}
GROUP_CONTROL = {1: "v", 2: "r", 3: "m"}
SESSION_CONTROL = {1: "v", 2: "m"}
SHARED_PAYLOAD = {1: "v", 2: "b", 3: "b"}
GROUP_ENVELOPE = {1: "v", 2: "b", 3: "b", 4: "b"}


def _member_fields(b):
    """A GroupMember's fields: no version field, so decoded here without
    the version rule; canonical as part of its state."""
    try:
        fields = t._fields(b)
    except t._Malformed:
        raise WireRefused("Malformed") from None
    out = {1: b"", 2: b"", 3: 0}
    for tag, wt, v in fields:
        if tag not in GROUP_MEMBER:
            raise WireRefused("NonCanonical")
        if wt != (0 if GROUP_MEMBER[tag] == "v" else 2):
            raise WireRefused("Malformed")
        if tag == 1:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                raise WireRefused("Malformed") from None
        out[tag] = v
    if encode_member(out[1], out[2], out[3]) != b:
        raise WireRefused("NonCanonical")
    return out


# ---------------------------------------------------------------------------
# 16.5 sender chains

def chain_step(ck):
    """(CK_{i+1}, MK_i, K, N) from CK_i."""
    mk = t.hmac_sha256(ck, b"\x01")
    nxt = t.hmac_sha256(ck, b"\x02")
    okm = t.hkdf(bytes(32), mk, MESSAGE_INFO, 44)
    return nxt, mk, okm[:32], okm[32:]


def encode_distribution(group_id, state_hash, signing_key, iteration, chain_key, owner_signature):
    return (t.pb_uint(1, 1) + t.pb_bytes(2, group_id) + t.pb_bytes(3, state_hash)
            + t.pb_bytes(4, signing_key) + t.pb_uint(5, iteration) + t.pb_bytes(6, chain_key)
            + t.pb_bytes(7, owner_signature))


def owner_statement(group_id, state_hash, user_id, device_id):
    """16.5: "tacit/group/v1/chain-owner" || group_id || state_hash || RA(owner),
    RA = u8(len(user_id)) || user_id || u32be(device_id)."""
    return (OWNER_LABEL + group_id + state_hash + bytes([len(user_id)]) + user_id
            + device_id.to_bytes(4, "big"))


def owned_by(dist, user_id, device_id):
    """Whether a decoded distribution's owner signature names this device."""
    return t.verify_strict(dist["signing_key"], owner_statement(
        dist["group_id"], dist["state_hash"], user_id, device_id), dist["owner_signature"])


def decode_distribution(b):
    """16.5's strict decoding; WireRefused otherwise.  The fixed fields are
    checked in field order."""
    m = decode(b, DISTRIBUTION, MAX_DISTRIBUTION_LEN)
    fixed("group_id", m[2], 32)
    fixed("state_hash", m[3], 32)
    identity_key("signing_key", m[4])
    if m[5] >= U32_MAX:
        raise WireRefused(f"InvalidValue({q('iteration')})")
    fixed("chain_key", m[6], 32)
    fixed("owner_signature", m[7], 64)
    return {"group_id": m[2], "state_hash": m[3], "signing_key": m[4],
            "iteration": m[5], "chain_key": m[6], "owner_signature": m[7]}


class InboundChain:
    def __init__(self, dist, max_skip):
        self.group_id = dist["group_id"]
        self.state_hash = dist["state_hash"]
        self.signing_key = dist["signing_key"]
        self.n = dist["iteration"]
        self.ck = dist["chain_key"]
        self.max_skip = max_skip
        self.stored = {}  # iteration -> MK

    def snapshot(self):
        return (self.n, self.ck, tuple(sorted(self.stored.items())))


# ---------------------------------------------------------------------------
# 16.6 group messages

def associated_data(group_id, state_hash, signing_key, i):
    return group_id + state_hash + signing_key + i.to_bytes(4, "big")


def padded_content(content):
    data = t.encode_content(content["kind"], content["timestamp"], content["message_id"],
                            content["body"], None)
    return t.pad_to(data, t.padded_len(len(data)))


def encrypt_message(seed, ck, i, group_id, state_hash, content):
    if i == U32_MAX:
        raise Refused("ChainExhausted")
    signing_key = t.ed_public_from_seed(seed)
    _, mk, key, nonce = chain_step(ck)
    ct = t.chacha_encrypt(key, nonce, padded_content(content),
                          associated_data(group_id, state_hash, signing_key, i))
    body = (t.pb_uint(1, 1) + t.pb_bytes(2, group_id) + t.pb_bytes(3, state_hash)
            + t.pb_bytes(4, signing_key) + t.pb_uint(5, i) + t.pb_bytes(6, ct))
    sig = t.ed_sign(seed, MESSAGE_LABEL + hashlib.sha256(body).digest())
    return body + t.pb_bytes(7, sig)


def decode_group_message(b):
    """16.6 step 1: the fields are checked in field order."""
    m = decode(b, GROUP_MESSAGE, MAX_GROUP_MESSAGE_LEN)
    fixed("group_id", m[2], 32)
    fixed("state_hash", m[3], 32)
    fixed("signing_key", m[4], 32)
    if m[5] >= U32_MAX:
        raise WireRefused(f"InvalidValue({q('iteration')})")
    if not m[6]:
        raise WireRefused(f"MissingField({q('ciphertext')})")
    if len(m[6]) < 16:
        raise WireRefused(f"InvalidValue({q('ciphertext')})")
    fixed("signature", m[7], 64)
    return m


def decrypt_message(chains, b):
    """16.6's steps 1 to 7 against a list of inbound chains; Refused with
    the error, nothing changed, or the decoded content."""
    try:
        m = decode_group_message(b)
    except WireRefused as e:
        raise Refused(f"Wire({e.name})") from None
    chain = next((c for c in chains
                  if c.group_id == m[2] and c.signing_key == m[4]), None)
    if chain is None:
        raise Refused("UnknownChain")
    if chain.state_hash != m[3]:
        raise Refused("WrongState")
    body = b[:-66]
    if not t.verify_strict(chain.signing_key, MESSAGE_LABEL + hashlib.sha256(body).digest(), m[7]):
        raise Refused("InvalidSignature")
    j = m[5]
    skipped = {}
    ck = chain.ck
    if j < chain.n:
        if j not in chain.stored:
            raise Refused("DuplicateOrExpired")
        mk = chain.stored[j]
    else:
        if j - chain.n > chain.max_skip:
            raise Refused("TooManySkipped")
        for k in range(chain.n, j):
            ck, mk_k, _, _ = chain_step(ck)
            skipped[k] = mk_k
        mk = t.hmac_sha256(ck, b"\x01")
        ck = t.hmac_sha256(ck, b"\x02")
    okm = t.hkdf(bytes(32), mk, MESSAGE_INFO, 44)
    padded = t.chacha_decrypt(okm[:32], okm[32:], m[6],
                              associated_data(chain.group_id, chain.state_hash,
                                              chain.signing_key, j))
    if padded is None:
        raise Refused("AuthenticationFailed")
    try:
        content = t.decode_content(padded)
    except t.Refused as e:
        raise Refused(f"Content({e.kind})") from None
    if j < chain.n:
        del chain.stored[j]
    else:
        chain.stored.update(skipped)
        while len(chain.stored) > MAX_STORED_CHAIN_KEYS:
            del chain.stored[min(chain.stored)]
        chain.n, chain.ck = j + 1, ck
    return content


# ---------------------------------------------------------------------------
# 16.2 signed group states

def encode_member(user_id, user_key, role):
    return t.pb_bytes(1, user_id) + t.pb_bytes(2, user_key) + t.pb_uint(3, role)


def encode_state(group_id, epoch, parent, title, members):
    out = t.pb_uint(1, 1) + t.pb_bytes(2, group_id) + t.pb_uint(3, epoch)
    if parent is not None:
        out += t.pb_bytes(4, parent)
    out += t.pb_bytes(5, title)
    for uid, key, role in members:
        out += pb_message(6, encode_member(uid, key, role))
    return out


def certificate(uk_seed, user_id, device_id, ik):
    return t.ed_sign(uk_seed, t.cert_tbs(t.ed_public_from_seed(uk_seed), user_id, device_id, ik))


def encode_signed(state, user_id, device_id, ik_seed, cert):
    sig = t.ed_sign(ik_seed, STATE_LABEL + state)
    return (t.pb_uint(1, 1) + t.pb_bytes(2, state) + t.pb_bytes(3, user_id)
            + t.pb_uint(4, device_id) + t.pb_bytes(5, t.ed_public_from_seed(ik_seed))
            + t.pb_bytes(6, cert) + t.pb_bytes(7, sig))


def state_hash(signed):
    return hashlib.sha256(STATE_HASH_LABEL + signed).digest()


def no_control(s):
    return not any(unicodedata.category(ch) == "Cc" for ch in s.decode("utf-8"))


def decode_state(b):
    """GroupState::from_wire: rules 1 to 9 of 16.2, in order."""
    def wire(name):
        return Refused(f"Wire({name})")
    try:
        m = decode(b, GROUP_STATE, MAX_GROUP_STATE_LEN)
        fixed("group_id", m[2], 32)
        if m[3] == 0 and m[4]:
            raise WireRefused(f"InvalidValue({q('parent')})")
        if m[3] != 0:
            fixed("parent", m[4], 32)
        members_raw = m.get(6, [])
        if len(members_raw) > MAX_GROUP_MEMBERS:
            raise Refused(f"TooManyMembers({len(members_raw)})")
        members = []
        for raw in members_raw:
            f = _member_fields(raw)
            identity_key("user_key", f[2])
            if f[3] not in (1, 2):
                raise WireRefused(f"InvalidValue({q('role')})")
            members.append((f[1], f[2], f[3]))
    except WireRefused as e:
        raise wire(e.name) from None
    title = m[5]
    if len(title) > MAX_TITLE_LEN:
        raise Refused(f"TitleTooLong({len(title)})")
    if not no_control(title):
        raise Refused("TitleCharacters")
    if not members:
        raise Refused("NoMembers")
    prev = None
    for uid, _, _ in members:
        if not t._user_id_ok(uid):
            raise Refused("InvalidUserId")
        if prev is not None:
            if uid == prev:
                raise Refused(f"DuplicateMember({q(uid.decode())})")
            if uid < prev:
                raise Refused("MembersNotAscending")
        prev = uid
    if not any(r == 1 for _, _, r in members):
        raise Refused("NoAdmin")
    return {"group_id": m[2], "epoch": m[3], "parent": m[4] if m[3] else None,
            "title": title, "members": members}


def decode_signed(b):
    """SignedGroupState::from_wire."""
    try:
        m = decode(b, SIGNED_STATE, MAX_SIGNED_GROUP_STATE_LEN)
        if not m[2]:
            raise WireRefused(f"MissingField({q('state')})")
    except WireRefused as e:
        raise Refused(f"Wire({e.name})") from None
    state = decode_state(m[2])
    try:
        if not m[3]:
            raise WireRefused(f"MissingField({q('signer_user_id')})")
        if m[4] == 0:
            raise WireRefused(f"InvalidValue({q('signer_device_id')})")
        if not t._user_id_ok(m[3]):
            raise WireRefused(f"InvalidValue({q('signer_user_id')})")
        identity_key("signer_identity_key", m[5])
        fixed("signer_certificate", m[6], 64)
        fixed("signature", m[7], 64)
    except WireRefused as e:
        raise Refused(f"Wire({e.name})") from None
    return {"state": state, "state_bytes": m[2], "user_id": m[3], "device_id": m[4],
            "ik": m[5], "cert": m[6], "sig": m[7], "wire": b, "hash": state_hash(b)}


def member_of(state, uid):
    return next((mm for mm in state["members"] if mm[0] == uid), None)


def verify_signed(s, authority):
    """The signature check of 16.2 against the authorising state."""
    mm = member_of(authority, s["user_id"])
    if mm is None:
        raise Refused(f"SignerNotMember({q(s['user_id'].decode())})")
    tbs = t.cert_tbs(mm[1], s["user_id"], s["device_id"], s["ik"])
    if not t.verify_strict(mm[1], tbs, s["cert"]):
        raise Refused("InvalidCertificate")
    if not t.verify_strict(s["ik"], STATE_LABEL + s["state_bytes"], s["sig"]):
        raise Refused("InvalidSignature")


def check_first(s):
    verify_signed(s, s["state"])
    if member_of(s["state"], s["user_id"])[2] != 1:
        raise Refused("Unauthorised")


def check_change(p, n):
    """Rules 1 to 6 of 16.3."""
    ps, ns = p["state"], n["state"]
    if ns["group_id"] != ps["group_id"]:
        raise Refused("WrongGroup")
    if ps["epoch"] == U64_MAX:
        raise Refused("EpochExhausted")
    if ns["epoch"] != ps["epoch"] + 1:
        raise Refused(f"WrongEpoch {{ expected: {ps['epoch'] + 1}, actual: {ns['epoch']} }}")
    if ns["parent"] != p["hash"]:
        raise Refused("WrongParent")
    verify_signed(n, ps)
    if ns["title"] == ps["title"] and ns["members"] == ps["members"]:
        raise Refused("NoChange")
    u = n["user_id"]
    if member_of(ps, u)[2] == 1:
        return
    without = [mm for mm in ps["members"] if mm[0] != u]
    if not (ns["title"] == ps["title"] and ns["members"] == without):
        raise Refused("Unauthorised")


def precedence(p, n):
    """16.3, concurrent changes: of two siblings of p, one signed by an
    admin of p wins over one signed by a plain member of it; between two of
    the same kind, the lower StateHash (big-endian) wins.  Lowest wins."""
    return (member_of(p["state"], n["user_id"])[2] != 1, n["hash"])


class Member:
    """A member's history of states (16.3), oldest first."""

    def __init__(self, history):
        if not history:
            raise VectorError("an empty history")
        if history[0]["state"]["epoch"] == 0:
            check_first(history[0])
        for a, b in zip(history, history[1:]):
            check_change(a, b)
        self.history = list(history)

    def apply(self, n):
        """Group::apply; returns the outcome's name or raises Refused."""
        if n["state"]["group_id"] != self.history[-1]["state"]["group_id"]:
            raise Refused("WrongGroup")
        if any(s["hash"] == n["hash"] for s in self.history):
            raise Refused("AlreadyApplied")
        idx = next((i for i, s in enumerate(self.history)
                    if n["state"]["parent"] is not None and s["hash"] == n["state"]["parent"]), None)
        if idx is None:
            epoch, oldest = n["state"]["epoch"], self.history[0]["state"]["epoch"]
            if epoch <= oldest:
                raise Refused(f"Stale {{ epoch: {epoch}, oldest: {oldest} }}")
            raise Refused(f"UnknownParent({epoch})")
        check_change(self.history[idx], n)
        if idx == len(self.history) - 1:
            self.history.append(n)
            outcome = "advanced"
        elif precedence(self.history[idx], n) < precedence(self.history[idx], self.history[idx + 1]):
            self.history = self.history[:idx + 1] + [n]
            outcome = "switched_to_winner"
        else:
            return "lost"
        self.history = self.history[-MAX_STATE_HISTORY:]
        return outcome


# ---------------------------------------------------------------------------
# 16.4 group controls

def encode_control(states, chain):
    control = t.pb_uint(1, 1)
    for s in states:
        control += pb_message(2, s)
    if chain is not None:
        control += pb_message(3, chain)
    return control, t.pb_uint(1, 1) + pb_message(2, control)


def decode_session_control(b):
    try:
        body = decode(b, SESSION_CONTROL, MAX_GROUP_CONTROL_LEN)
        if 2 not in body:
            raise WireRefused(f"MissingField({q('group')})")
        m = decode(body[2], GROUP_CONTROL, MAX_GROUP_CONTROL_LEN)
    except WireRefused as e:
        raise Refused(f"Wire({e.name})") from None
    raw = m.get(2, [])
    if len(raw) > MAX_CONTROL_STATES:
        raise Refused(f"StateCount({len(raw)})")
    states = [decode_signed(s) for s in raw]
    if len(states) == 2 and states[1]["state"]["parent"] != states[0]["hash"]:
        raise Refused("WrongParent")
    chain = None
    if 3 in m:
        try:
            chain = decode_distribution(m[3])
        except WireRefused as e:
            raise Refused(f"Wire({e.name})") from None
    return states, chain


# ---------------------------------------------------------------------------
# 16.7 multi-recipient envelope

def ra(user_id, device_id):
    return bytes([len(user_id)]) + user_id + device_id.to_bytes(4, "big")


def wrap_key(dh_out, e_pub, ik, user_id, device_id):
    return t.hkdf(bytes(32), dh_out, WRAP_LABEL + e_pub + ik + ra(user_id, device_id), 32)


def seal(plaintext, recipients, rng):
    """recipients: (user_id, device_id, ik); rng: the 64 bytes, or None
    to require a refusal before drawing."""
    if not recipients:
        raise Refused("NoRecipients")
    if len(recipients) > MAX_RECIPIENTS:
        raise Refused(f"TooManyRecipients {{ count: {len(recipients)}, max: {MAX_RECIPIENTS} }}")
    seen = set()
    for i, (uid, dev, _) in enumerate(recipients):
        if (uid, dev) in seen:
            raise Refused(f"DuplicateRecipient {{ index: {i} }}")
        seen.add((uid, dev))
    if len(plaintext) > MAX_PLAINTEXT_LEN:
        raise Refused(f"TooLarge {{ len: {len(plaintext)}, max: {MAX_PLAINTEXT_LEN} }}")
    if rng is None:
        raise VectorError("sealing would draw randomness")
    m, e = rng[:32], rng[32:]
    e_pub = t.x25519_public(e)
    okm = t.hkdf(bytes(32), m, PAYLOAD_LABEL + e_pub, 44)
    payload = t.chacha_encrypt(okm[:32], okm[32:], plaintext, e_pub)
    parts = []
    for i, (uid, dev, ik) in enumerate(recipients):
        try:
            shared = t.dh(e, t.ed_to_montgomery(ik))
        except ProtocolError:
            raise Refused(f"InvalidRecipientIdentity {{ index: {i}, .. }}") from None
        w = wrap_key(shared, e_pub, ik, uid, dev)
        parts.append(bytes(x ^ y for x, y in zip(m, w)))
    return e_pub, payload, parts


def encode_shared(e_pub, payload):
    return t.pb_uint(1, 1) + t.pb_bytes(2, e_pub) + t.pb_bytes(3, payload)


def encode_envelope(e_pub, part, payload):
    return t.pb_uint(1, 1) + t.pb_bytes(2, e_pub) + t.pb_bytes(3, part) + t.pb_bytes(4, payload)


def open_envelope(ik_seed, user_id, device_id, b):
    try:
        m = decode(b, GROUP_ENVELOPE, MAX_GROUP_ENVELOPE_LEN)
        fixed("ephemeral_key", m[2], 32)
        fixed("wrapped_key", m[3], 32)
        if not m[4]:
            raise WireRefused(f"MissingField({q('payload')})")
        if len(m[4]) < 16:
            raise WireRefused(invalid_length("payload", 16, len(m[4])))
    except WireRefused as e:
        raise Refused(f"Malformed({e.name})") from None
    e_pub = m[2]
    try:
        shared = t.dh(t.identity_x25519_private(ik_seed), e_pub)
    except ProtocolError:
        raise Refused("InvalidEphemeralKey") from None
    ik = t.ed_public_from_seed(ik_seed)
    w = wrap_key(shared, e_pub, ik, user_id, device_id)
    mm = bytes(x ^ y for x, y in zip(m[3], w))
    okm = t.hkdf(bytes(32), mm, PAYLOAD_LABEL + e_pub, 44)
    out = t.chacha_decrypt(okm[:32], okm[32:], m[4], e_pub)
    if out is None:
        raise Refused("DoesNotOpen")
    return out


# ---------------------------------------------------------------------------
# group.json (16.9): schema and checks

LISTS = ("chain_steps", "messages", "invalid_messages", "distributions",
         "invalid_distributions", "signers", "group_states", "transitions", "controls",
         "invalid_controls", "multi", "invalid_seals", "invalid_envelopes")


def check_top(doc):
    t._keys(doc, ("profile",) + LISTS, where="top level (group.json)")
    if doc["profile"] != PROFILE:
        raise VectorError(f"profile is not {PROFILE!r}")
    for k in LISTS:
        if not isinstance(doc[k], list):
            raise VectorError(f"{k}: expected a list")


def same(what, computed, expected):
    if computed != expected:
        a = computed.hex() if isinstance(computed, bytes) else computed
        b = expected.hex() if isinstance(expected, bytes) else expected
        raise VectorError(f"{what}: expected {b}, computed {a}")


def h(c, k, n=None):
    return t._hex(c[k], n, k)


def u(c, k, limit=U32_MAX):
    v = t._int(c[k], k)
    if v > limit:
        raise VectorError(f"{k}: out of range")
    return v


def s(c, k):
    return t._str(c[k], k)


def lst(c, k):
    if not isinstance(c[k], list):
        raise VectorError(f"{k}: expected a list")
    return c[k]


def uid(c, k="user_id"):
    return s(c, k).encode("utf-8")


def expect(fn, error):
    try:
        fn()
    except Refused as e:
        same("error", e.name, error)
        return
    raise VectorError(f"accepted; expected {error}")


def verify_steps(c):
    t._keys(c, ("name", "chain_key", "steps"), where=c.get("name", "chain_steps"))
    ck, at = h(c, "chain_key", 32), 0
    for st in lst(c, "steps"):
        t._keys(st, ("iteration", "chain_key", "message_key", "key", "nonce"), where="step")
        i = u(st, "iteration")
        if i < at:
            raise VectorError("iterations are not ascending")
        while at < i:
            ck = chain_step(ck)[0]
            at += 1
        nxt, mk, key, nonce = chain_step(ck)
        same("chain_key", ck, h(st, "chain_key", 32))
        same("message_key", mk, h(st, "message_key", 32))
        same("key", key, h(st, "key", 32))
        same("nonce", nonce, h(st, "nonce", 12))
        ck, at = nxt, at + 1


def content_of(c):
    t._keys(c, ("kind", "timestamp", "message_id", "body"), where="content")
    return {"kind": u(c, "kind"), "timestamp": u(c, "timestamp", U64_MAX),
            "message_id": h(c, "message_id", 16), "body": h(c, "body")}


def receiver_of(r, max_skip=None):
    t._keys(r, ("group_id", "state_hash", "signing_key", "chain_key", "iteration", "max_skip"),
            where="receiver")
    dist = {"group_id": h(r, "group_id", 32), "state_hash": h(r, "state_hash", 32),
            "signing_key": h(r, "signing_key", 32), "iteration": u(r, "iteration"),
            "chain_key": h(r, "chain_key", 32)}
    # The fields are checked as a distribution's; the owner signature is
    # not part of a receiver's chain (checked once, when the chain is made).
    try:
        decode_distribution(encode_distribution(**dist, owner_signature=bytes(64)))
    except WireRefused as e:
        raise VectorError(f"receiver: {e.name}") from None
    ms = u(r, "max_skip")
    if ms > 25000:
        raise VectorError("max_skip above 25000")
    return InboundChain(dist, ms)


def verify_message(c):
    t._keys(c, ("name", "signing_seed", "chain_key", "iteration", "group_id", "state_hash",
                "content", "expected"), where=c.get("name", "message"))
    t._keys(c["expected"], ("signing_key", "message"), where="expected")
    seed, ck, i = h(c, "signing_seed", 32), h(c, "chain_key", 32), u(c, "iteration")
    gid, sh = h(c, "group_id", 32), h(c, "state_hash", 32)
    content = content_of(c["content"])
    same("signing_key", t.ed_public_from_seed(seed), h(c["expected"], "signing_key", 32))
    msg = encrypt_message(seed, ck, i, gid, sh, content)
    same("message", msg, h(c["expected"], "message"))
    chain = InboundChain({"group_id": gid, "state_hash": sh,
                          "signing_key": t.ed_public_from_seed(seed), "iteration": i,
                          "chain_key": ck}, 0)
    got = decrypt_message([chain], msg)
    same("decrypted content", (got[0], got[1], got[2], got[3], got[4]),
         (content["kind"], content["timestamp"], content["message_id"], content["body"], None))


def verify_invalid_message(c):
    t._keys(c, ("name", "receiver", "deliver_first", "bytes", "error"),
            where=c.get("name", "invalid message"))
    chains = [receiver_of(c["receiver"])]
    for i, m in enumerate(lst(c, "deliver_first")):
        try:
            decrypt_message(chains, t._hex(m, None, f"deliver_first[{i}]"))
        except Refused as e:
            raise VectorError(f"deliver_first {i} refused: {e.name}") from None
    before = chains[0].snapshot()
    expect(lambda: decrypt_message(chains, h(c, "bytes")), s(c, "error"))
    if chains[0].snapshot() != before:
        raise VectorError("the refusal changed the chain")


def verify_distribution(c):
    t._keys(c, ("name", "group_id", "state_hash", "signing_seed", "iteration", "chain_key",
                "owner_user_id", "owner_device_id", "expected"),
            where=c.get("name", "distribution"))
    b = distribution_bytes(c)
    same("expected", b, h(c, "expected"))
    try:
        dist = decode_distribution(b)
    except WireRefused as e:
        raise VectorError(f"does not decode: {e.name}") from None
    user, device = s(c, "owner_user_id").encode(), u(c, "owner_device_id")
    if not owned_by(dist, user, device):
        raise VectorError("the owner signature does not name the owner")
    if owned_by(dist, user, device % U32_MAX + 1):
        raise VectorError("the owner signature names another device")


def distribution_bytes(c):
    seed, gid, sh = h(c, "signing_seed", 32), h(c, "group_id", 32), h(c, "state_hash", 32)
    sig = t.ed_sign(seed, owner_statement(gid, sh, s(c, "owner_user_id").encode(),
                                          u(c, "owner_device_id")))
    return encode_distribution(gid, sh, t.ed_public_from_seed(seed), u(c, "iteration"),
                               h(c, "chain_key", 32), sig)


def verify_invalid_bytes(decoder):
    def run(c):
        t._keys(c, ("name", "bytes", "error"), where=c.get("name", "invalid"))
        expect(lambda: decoder(h(c, "bytes")), s(c, "error"))
    return run


def invalid_distribution(b):
    try:
        decode_distribution(b)
    except WireRefused as e:
        raise Refused(e.name) from None


def signer_fields(c):
    t._keys(c, ("name", "user_id", "device_id", "user_key_seed", "identity_seed", "expected"),
            where=c.get("name", "signer"))
    uks, iks = h(c, "user_key_seed", 32), h(c, "identity_seed", 32)
    user_id, dev = uid(c), u(c, "device_id")
    ik = t.ed_public_from_seed(iks)
    return user_id, dev, uks, iks, certificate(uks, user_id, dev, ik)


def verify_signer(c):
    user_id, dev, uks, iks, cert = signer_fields(c)
    e = c["expected"]
    t._keys(e, ("user_key", "identity_key", "certificate"), where="expected")
    uk, ik = t.ed_public_from_seed(uks), t.ed_public_from_seed(iks)
    same("user_key", uk, h(e, "user_key", 32))
    same("identity_key", ik, h(e, "identity_key", 32))
    same("certificate", cert, h(e, "certificate", 64))
    if not (t._user_id_ok(user_id) and dev >= 1):
        raise VectorError("not a valid address")
    if not t.verify_strict(uk, t.cert_tbs(uk, user_id, dev, ik), cert):
        raise VectorError("the certificate does not verify")


def by_name(items, name, what):
    for it in items:
        if isinstance(it, dict) and it.get("name") == name:
            return it
    raise VectorError(f"no {what} named {name!r}")


def state_bytes(c, doc):
    """(Enc(GroupState), Enc(SignedGroupState)) of a group_states entry."""
    t._keys(c, ("name", "group_id", "epoch", "parent", "title", "members", "signer", "expected"),
            where=c.get("name", "state"))
    members = []
    for mm in lst(c, "members"):
        t._keys(mm, ("user_id", "user_key", "role"), where="member")
        members.append((uid(mm), h(mm, "user_key", 32), u(mm, "role")))
    parent = t._hex(c["parent"], 32, "parent", nullable=True)
    state = encode_state(h(c, "group_id", 32), u(c, "epoch", U64_MAX), parent,
                         s(c, "title").encode("utf-8"), members)
    signer = by_name(doc["signers"], s(c, "signer"), "signer")
    user_id, dev, _, iks, cert = signer_fields(signer)
    return state, encode_signed(state, user_id, dev, iks, cert)


def verify_state(c, doc):
    state, signed = state_bytes(c, doc)
    e = c["expected"]
    t._keys(e, ("state", "signed", "hash", "decode_error"), where="expected")
    same("state", state, h(e, "state"))
    same("signed", signed, h(e, "signed"))
    same("hash", state_hash(signed), h(e, "hash", 32))
    err = e["decode_error"]
    if err is None:
        try:
            decode_signed(signed)
        except Refused as x:
            raise VectorError(f"does not decode: {x.name}") from None
    else:
        expect(lambda: decode_signed(signed), t._str(err, "decode_error"))


def decoded(doc, name):
    return decode_signed(state_bytes(by_name(doc["group_states"], name, "state"), doc)[1])


def verify_transition(c, doc):
    t._keys(c, ("name", "local_user", "history", "apply", "current"),
            where=c.get("name", "transition"))
    local = uid(c, "local_user")
    history = [decoded(doc, t._str(n, "history")) for n in lst(c, "history")]
    member = Member(history) if history else None
    for i, step in enumerate(lst(c, "apply")):
        t._keys(step, ("state", "outcome"), where=f"apply[{i}]")
        try:
            n = decoded(doc, s(step, "state"))
            if member is None:
                check_first(n)
                mm = member_of(n["state"], local)
                if mm is None:
                    raise Refused("NotInNewState")
                member = Member([n])
                outcome = "accepted"
            else:
                before = [x["hash"] for x in member.history]
                try:
                    outcome = member.apply(n)
                except Refused:
                    if [x["hash"] for x in member.history] != before:
                        raise VectorError("a refusal changed the history") from None
                    raise
        except Refused as e:
            outcome = e.name
        same(f"step {i} ({step['state']})", outcome, s(step, "outcome"))
    cur = t._str(c["current"], "current") if c["current"] is not None else None
    got = member.history[-1]["hash"] if member else None
    want = decoded(doc, cur)["hash"] if cur is not None else None
    same("current", got, want)


def verify_control(c, doc):
    t._keys(c, ("name", "states", "chain", "expected"), where=c.get("name", "control"))
    states = [state_bytes(by_name(doc["group_states"], t._str(n, "states"), "state"), doc)[1]
              for n in lst(c, "states")]
    chain = None
    if c["chain"] is not None:
        chain = distribution_bytes(by_name(doc["distributions"], s(c, "chain"), "distribution"))
    control, body = encode_control(states, chain)
    e = c["expected"]
    t._keys(e, ("group_control", "session_control_body"), where="expected")
    same("group_control", control, h(e, "group_control"))
    same("session_control_body", body, h(e, "session_control_body"))
    try:
        decode_session_control(body)
    except Refused as x:
        raise VectorError(f"does not decode: {x.name}") from None


def recipient_of(r):
    t._keys(r, ("user_id", "device_id", "identity_seed"), where="recipient")
    return uid(r), u(r, "device_id"), h(r, "identity_seed", 32)


def verify_multi(c):
    t._keys(c, ("name", "rng", "plaintext", "recipients", "expected"), where=c.get("name", "multi"))
    rs = [recipient_of(r) for r in lst(c, "recipients")]
    pt = h(c, "plaintext")
    e_pub, payload, parts = seal(pt, [(a, b, t.ed_public_from_seed(k)) for a, b, k in rs],
                                 h(c, "rng", 64))
    e = c["expected"]
    t._keys(e, ("ephemeral_key", "shared_payload", "parts", "envelopes"), where="expected")
    same("ephemeral_key", e_pub, h(e, "ephemeral_key", 32))
    same("shared_payload", encode_shared(e_pub, payload), h(e, "shared_payload"))
    if len(lst(e, "parts")) != len(rs) or len(lst(e, "envelopes")) != len(rs):
        raise VectorError("one part and one envelope per recipient")
    for i, ((user_id, dev, seed), part) in enumerate(zip(rs, parts)):
        same(f"parts[{i}]", part, t._hex(e["parts"][i], 32, "part"))
        env = encode_envelope(e_pub, part, payload)
        same(f"envelopes[{i}]", env, t._hex(e["envelopes"][i], None, "envelope"))
        same(f"opened by {i}", open_envelope(seed, user_id, dev, env), pt)


def verify_invalid_seal(c):
    t._keys(c, ("name", "plaintext", "recipients", "error"), where=c.get("name", "seal"))
    rs = [recipient_of(r) for r in lst(c, "recipients")]
    expect(lambda: seal(h(c, "plaintext"),
                        [(a, b, t.ed_public_from_seed(k)) for a, b, k in rs], None),
           s(c, "error"))


def verify_invalid_envelope(c):
    t._keys(c, ("name", "recipient", "bytes", "error"), where=c.get("name", "envelope"))
    user_id, dev, seed = recipient_of(c["recipient"])
    expect(lambda: open_envelope(seed, user_id, dev, h(c, "bytes")), s(c, "error"))


def groups(doc):
    return [
        (doc["chain_steps"], verify_steps),
        (doc["messages"], verify_message),
        (doc["invalid_messages"], verify_invalid_message),
        (doc["distributions"], verify_distribution),
        (doc["invalid_distributions"], verify_invalid_bytes(invalid_distribution)),
        (doc["signers"], verify_signer),
        (doc["group_states"], lambda c: verify_state(c, doc)),
        (doc["transitions"], lambda c: verify_transition(c, doc)),
        (doc["controls"], lambda c: verify_control(c, doc)),
        (doc["invalid_controls"], verify_invalid_bytes(decode_session_control)),
        (doc["multi"], verify_multi),
        (doc["invalid_seals"], verify_invalid_seal),
        (doc["invalid_envelopes"], verify_invalid_envelope),
    ]


# ---------------------------------------------------------------------------
# generate: this program's own group.json (same schema, other inputs and
# other edge cases), which the main implementation's verify must pass.

def _r(label, n=32):
    return t.rnd("pyref-group/" + label, n)


def _error_of(fn):
    try:
        fn()
    except Refused as e:
        return e.name
    raise VectorError("a refusal was expected")


def _ck(ck0, i):
    for _ in range(i):
        ck0 = chain_step(ck0)[0]
    return ck0


def _gen_chains(doc):
    ck0 = _r("ck0")
    steps = []
    for i in (0, 3, 4, 64, 25000):
        ck = _ck(ck0, i)
        _, mk, key, nonce = chain_step(ck)
        steps.append({"iteration": i, "chain_key": ck, "message_key": mk, "key": key,
                      "nonce": nonce})
    doc["chain_steps"].append({"name": "pyref_chain", "chain_key": ck0, "steps": steps})

    gid, sh, seed = _r("group_id"), _r("state_hash"), _r("signing_seed")
    pub = t.ed_public_from_seed(seed)
    msgs = {}
    for name, i, kind, body in (
            ("pyref_empty_text_0", 0, 1, b""),
            ("pyref_read_receipt_1", 1, 4, _r("ids", 32)),
            ("pyref_session_control_2", 2, 6, b"\x08\x01"),
            ("pyref_delivery_receipt_40", 40, 3, _r("id40", 16)),
            ("pyref_text_bucket_edge_3", 3, 1, b"y" * 140)):
        content = {"kind": kind, "timestamp": 2**40 + i, "message_id": _r(name + "/id", 16),
                   "body": body}
        m = encrypt_message(seed, _ck(ck0, i), i, gid, sh, content)
        msgs[name] = m
        doc["messages"].append({
            "name": name, "signing_seed": seed, "chain_key": _ck(ck0, i), "iteration": i,
            "group_id": gid, "state_hash": sh, "content": content,
            "expected": {"signing_key": pub, "message": m}})

    def receiver(iteration=0, max_skip=1000, **kw):
        r = {"group_id": gid, "state_hash": sh, "signing_key": pub,
             "chain_key": _ck(ck0, iteration), "iteration": iteration, "max_skip": max_skip}
        r.update(kw)
        return r
    m0, m1, m40 = msgs["pyref_empty_text_0"], msgs["pyref_read_receipt_1"], msgs["pyref_delivery_receipt_40"]
    body0 = m0[:-66]
    dec0 = decode_group_message(m0)

    def body(ct=None, iteration=0, sig=None, signer=seed):
        b = (t.pb_uint(1, 1) + t.pb_bytes(2, gid) + t.pb_bytes(3, sh) + t.pb_bytes(4, pub)
             + t.pb_uint(5, iteration) + t.pb_bytes(6, dec0[6] if ct is None else ct))
        if sig is None:
            sig = t.ed_sign(signer, MESSAGE_LABEL + hashlib.sha256(b).digest())
        return b + t.pb_bytes(7, sig)
    invalid = [
        ("pyref_signed_by_another_member", receiver(), [], body(signer=_r("other_seed"))),
        ("pyref_signature_over_the_body_itself", receiver(), [],
         body0 + t.pb_bytes(7, t.ed_sign(seed, MESSAGE_LABEL + body0))),
        ("pyref_ciphertext_of_15_bytes", receiver(), [], body(ct=bytes(15))),
        ("pyref_no_ciphertext", receiver(), [], body(ct=b"")),
        ("pyref_ciphertext_of_16_bytes_signed", receiver(), [], body(ct=bytes(16))),
        ("pyref_max_skip_0_one_ahead", receiver(max_skip=0), [], m1),
        ("pyref_max_skip_39_forty_ahead", receiver(max_skip=39), [], m40),
        ("pyref_before_the_distribution", receiver(iteration=1), [], m0),
        ("pyref_skipped_key_used_twice", receiver(), [m1, m0], m0),
        ("pyref_other_group", receiver(group_id=_r("other_group")), [], m0),
        ("pyref_signature_missing", receiver(), [], body0),
        ("pyref_short_ciphertext_and_no_signature", receiver(), [], body(ct=bytes(15))[:-66]),
        ("pyref_iteration_max_and_short_signature", receiver(), [],
         body(iteration=U32_MAX, sig=bytes(63))),
        ("pyref_fields_out_of_order", receiver(), [], t.pb_bytes(2, gid) + t.pb_uint(1, 1) + m0[2 + 34:]),
        ("pyref_truncated", receiver(), [], m0[:-1]),
    ]
    for name, r, first, b in invalid:
        chains = [InboundChain({"group_id": r["group_id"], "state_hash": r["state_hash"],
                                "signing_key": r["signing_key"], "iteration": r["iteration"],
                                "chain_key": r["chain_key"]}, r["max_skip"])]
        for f in first:
            decrypt_message(chains, f)
        doc["invalid_messages"].append({
            "name": name, "receiver": r, "deliver_first": first, "bytes": b,
            "error": _error_of(lambda: decrypt_message(chains, b))})

    top = U32_MAX - 1
    for name, i, owner, dev in (("pyref_distribution_0", 0, "pyref", 1),
                                ("pyref_distribution_max", top, "ü" * 32, U32_MAX)):
        ck = _r(f"{name}/ck")
        c = {"name": name, "group_id": gid, "state_hash": sh, "signing_seed": seed,
             "iteration": i, "chain_key": ck, "owner_user_id": owner, "owner_device_id": dev}
        c["expected"] = distribution_bytes(t.hexify(c))
        doc["distributions"].append(c)
    osig = t.ed_sign(seed, owner_statement(gid, sh, b"pyref", 1))
    good = encode_distribution(gid, sh, pub, 5, _r("ck5"), osig)
    for name, b in (
            ("pyref_distribution_iteration_max", encode_distribution(gid, sh, pub, U32_MAX, _r("ck5"), osig)),
            ("pyref_distribution_version_0", good[2:]),
            ("pyref_distribution_oversize", good + t.pb_bytes(9, bytes(200))),
            ("pyref_distribution_not_a_point", encode_distribution(
                gid, sh, bytes([2]) + bytes(31), 5, _r("ck5"), osig)),
            ("pyref_distribution_no_state_hash", encode_distribution(gid, b"", pub, 5, _r("ck5"), osig)),
            ("pyref_distribution_no_owner_signature", encode_distribution(gid, sh, pub, 5, _r("ck5"), b"")),
            ("pyref_distribution_owner_signature_65_bytes",
             encode_distribution(gid, sh, pub, 5, _r("ck5"), osig + b"\0"))):
        doc["invalid_distributions"].append({
            "name": name, "bytes": b, "error": _error_of(lambda: invalid_distribution(b))})
    return msgs


def _gen_states(doc):
    def signer(name, user, dev, uk_label):
        uks, iks = _r("uk/" + uk_label), _r("ik/" + name)
        ik = t.ed_public_from_seed(iks)
        return {"name": name, "user_id": user, "device_id": dev, "user_key_seed": uks,
                "identity_seed": iks,
                "expected": {"user_key": t.ed_public_from_seed(uks), "identity_key": ik,
                             "certificate": certificate(uks, user.encode(), dev, ik)}}
    long_id = "z" * 64
    doc["signers"] += [signer("dora_7", "dora", 7, "dora"), signer("erin_1", "erin", 1, "erin"),
                       signer("ünïcode_2", "ünïcode", 2, "ünïcode"),
                       signer("long_4294967295", long_id, U32_MAX, long_id)]

    def key(user):
        return t.ed_public_from_seed(_r("uk/" + user))
    gid = _r("state/group_id")
    hashes = {}

    def add(name, epoch, parent, title, members, by):
        mem = [{"user_id": u_, "user_key": key(u_), "role": r_} for u_, r_ in members]
        sg = by_name(doc["signers"], by, "signer")
        state = encode_state(gid, epoch, hashes.get(parent, parent), title.encode(),
                             [(m["user_id"].encode(), m["user_key"], m["role"]) for m in mem])
        signed = encode_signed(state, sg["user_id"].encode(), sg["device_id"],
                               sg["identity_seed"], sg["expected"]["certificate"])
        try:
            decode_signed(signed)
            err = None
        except Refused as e:
            err = e.name
        hashes[name] = state_hash(signed)
        doc["group_states"].append({
            "name": name, "group_id": gid, "epoch": epoch,
            "parent": hashes.get(parent, parent), "title": title, "members": mem,
            "signer": by, "expected": {"state": state, "signed": signed,
                                       "hash": hashes[name], "decode_error": err}})
    de = [("dora", 1), ("erin", 1), ("ünïcode", 2)]
    add("p0", 0, None, "", de, "dora_7")
    add("p1_erin_demotes_dora", 1, "p0", "", [("dora", 2), ("erin", 1), ("ünïcode", 2)], "erin_1")
    add("p1_long_id_added", 1, "p0", "Ünïcode title ✓", de[:2] + [(long_id, 2)] + de[2:], "dora_7")
    add("p2_dora_leaves", 2, "p1_erin_demotes_dora", "", [("erin", 1), ("ünïcode", 2)], "dora_7")
    add("p2_demoted_dora_retitles", 2, "p1_erin_demotes_dora", "Dora's", [("dora", 2), ("erin", 1), ("ünïcode", 2)], "dora_7")
    add("p2_unicode_promotes_itself", 2, "p1_erin_demotes_dora", "", [("dora", 2), ("erin", 1), ("ünïcode", 1)], "ünïcode_2")
    add("p1_signed_by_long_id_not_member", 1, "p0", "x", de, "long_4294967295")
    add("p1_retitled_t", 1, "p0", "t", de, "dora_7")
    add("p0_other_first_state", 0, None, "other", [("dora", 1)], "dora_7")
    add("p1_duplicate_member", 1, "p0", "", [("dora", 1), ("dora", 1)], "dora_7")
    add("p1_title_129_bytes", 1, "p0", "t" * 129, de, "dora_7")
    add("p1_role_3", 1, "p0", "", [("dora", 1), ("erin", 3)], "dora_7")
    add("p1_no_members", 1, "p0", "x", [], "dora_7")
    add("p1_epoch_0_with_parent", 0, "p0", "", de, "dora_7")
    add("p3_on_p1", 3, "p1_long_id_added", "x", de, "dora_7")
    add("p_last_epoch", U64_MAX, _r("some_parent"), "last", de, "dora_7")
    add("p_after_last_epoch", 5, "p_last_epoch", "after", de, "dora_7")
    gid_saved = gid
    gid = _r("state/other_group_id")
    add("p1_of_another_group", 1, "p0", "other group", de, "dora_7")
    gid = gid_saved
    prev = "p0"
    for i in range(1, 10):
        add(f"q{i}", i, prev, f"title {i}", de, "erin_1")
        prev = f"q{i}"
    add("q1_sibling", 1, "p0", "sibling of q1", de, "erin_1")

    def tr(name, history, steps, local="dora"):
        hd = t.hexify(doc)
        hist = [decoded(hd, h_) for h_ in history]
        member = Member(hist) if hist else None
        apply = []
        for st in steps:
            try:
                n = decoded(hd, st)
                if member is None:
                    check_first(n)
                    member = Member([n])
                    out = "accepted"
                else:
                    out = member.apply(n)
            except Refused as e:
                out = e.name
            apply.append({"state": st, "outcome": out})
        cur = None
        if member:
            cur = next(s_["name"] for s_ in doc["group_states"]
                       if s_["expected"]["hash"] == member.history[-1]["hash"])
        doc["transitions"].append({"name": name, "local_user": local, "history": history,
                                   "apply": apply, "current": cur})
    tr("pyref_first_state_other_local_user", [], ["p0"], local="erin")
    tr("pyref_demote_then_leave", ["p0"], ["p1_erin_demotes_dora", "p2_dora_leaves"])
    tr("pyref_demoted_member_cannot_retitle", ["p0", "p1_erin_demotes_dora"], ["p2_demoted_dora_retitles"])
    tr("pyref_member_cannot_promote_itself", ["p0", "p1_erin_demotes_dora"], ["p2_unicode_promotes_itself"])
    tr("pyref_signer_not_member", ["p0"], ["p1_signed_by_long_id_not_member"])
    tr("pyref_siblings", ["p0"], ["p1_long_id_added", "p1_erin_demotes_dora", "p1_retitled_t"])
    tr("pyref_other_first_state_of_same_group", ["p0"], ["p0_other_first_state"])
    tr("pyref_decode_errors_are_outcomes", ["p0"], ["p1_duplicate_member", "p1_title_129_bytes", "p1_role_3", "p1_no_members", "p1_epoch_0_with_parent"])
    tr("pyref_epoch_jump_unknown_parent", ["p0"], ["p3_on_p1"])
    tr("pyref_history_of_two", ["p0", "p1_long_id_added"], ["p1_erin_demotes_dora", "p2_dora_leaves"])
    tr("pyref_epoch_exhausted", ["p_last_epoch"], ["p_after_last_epoch"])
    tr("pyref_another_group", ["p0"], ["p1_of_another_group"])
    tr("pyref_history_of_eight_keeps_eight", ["p0"] + [f"q{i}" for i in range(1, 8)],
       ["q8", "q1_sibling", "q9"])
    tr("pyref_sibling_within_the_history", ["p0"] + [f"q{i}" for i in range(1, 8)],
       ["q1_sibling"])

    def ctl(name, states, chain):
        hd = t.hexify(doc)
        wires = [state_bytes(by_name(hd["group_states"], n, "state"), hd)[1] for n in states]
        ch = None if chain is None else distribution_bytes(by_name(hd["distributions"], chain, "distribution"))
        c, b = encode_control(wires, ch)
        doc["controls"].append({"name": name, "states": states, "chain": chain,
                                "expected": {"group_control": c, "session_control_body": b}})
    ctl("pyref_control_empty", [], None)
    ctl("pyref_control_pair_and_chain", ["p0", "p1_long_id_added"], "pyref_distribution_max")
    sb = {s_["name"]: s_["expected"]["signed"] for s_ in doc["group_states"]}
    good_chain = by_name(doc["distributions"], "pyref_distribution_0", "distribution")["expected"]
    bad = [
        ("pyref_control_reversed_pair", encode_control([sb["p1_long_id_added"], sb["p0"]], None)[1]),
        ("pyref_control_bad_chain", encode_control([], good_chain[:-1])[1]),
        ("pyref_control_version_0", t.pb_uint(1, 1) + pb_message(2, b"")),
        ("pyref_control_bad_state", encode_control([sb["p1_role_3"]], None)[1]),
    ]
    for name, b in bad:
        doc["invalid_controls"].append({"name": name, "bytes": b,
                                        "error": _error_of(lambda: decode_session_control(b))})


def _gen_multi(doc, msgs):
    def rec(user, dev):
        return {"user_id": user, "device_id": dev, "identity_seed": _r(f"rec/{user}/{dev}")}
    for name, pt, rs in (
            ("pyref_one_recipient_empty_plaintext", b"", [rec("z" * 64, U32_MAX)]),
            ("pyref_same_key_two_addresses", msgs["pyref_read_receipt_1"],
             [rec("dora", 1), rec("dora", 2), rec("ünïcode", 1)])):
        if name == "pyref_same_key_two_addresses":
            rs[1]["identity_seed"] = rs[0]["identity_seed"]
        rng = _r(name + "/rng", 64)
        triples = [(r["user_id"].encode(), r["device_id"], t.ed_public_from_seed(r["identity_seed"])) for r in rs]
        e_pub, payload, parts = seal(pt, triples, rng)
        doc["multi"].append({
            "name": name, "rng": rng, "plaintext": pt, "recipients": rs,
            "expected": {"ephemeral_key": e_pub, "shared_payload": encode_shared(e_pub, payload),
                         "parts": parts,
                         "envelopes": [encode_envelope(e_pub, p, payload) for p in parts]}})
    m = doc["multi"][1]
    envs = m["expected"]["envelopes"]
    e_pub = m["expected"]["ephemeral_key"]
    payload = decode(envs[0], GROUP_ENVELOPE, MAX_GROUP_ENVELOPE_LEN)[4]
    r0, r1 = m["recipients"][0], m["recipients"][1]
    for name, r, b in (
            ("pyref_same_key_other_address", r1, envs[0]),
            ("pyref_parts_swapped", r0, encode_envelope(e_pub, m["expected"]["parts"][1], payload)),
            ("pyref_payload_of_15_bytes", r0, encode_envelope(e_pub, m["expected"]["parts"][0], payload[:15])),
            ("pyref_no_wrapped_key", r0, encode_envelope(e_pub, b"", payload)),
            ("pyref_ephemeral_key_u_1", r0, encode_envelope(bytes([1]) + bytes(31), m["expected"]["parts"][0], payload)),
            ("pyref_envelope_version_2", r0, b"\x08\x02" + envs[0][2:])):
        seed = r["identity_seed"]
        doc["invalid_envelopes"].append({
            "name": name, "recipient": r, "bytes": b,
            "error": _error_of(lambda: open_envelope(seed, r["user_id"].encode(), r["device_id"], b))})
    rs = [rec("a", 1), rec("b", 1), rec("a", 1)]
    # (The size limits are not shipped: an oversize entry is a quarter of a
    # megabyte of hex.)
    for name, pt, lst_ in (("pyref_seal_duplicate_first_pair", b"x", [rec("a", 1), rec("a", 1)]),
                           ("pyref_seal_three_with_a_repeat", b"", rs)):
        triples = [(r["user_id"].encode(), r["device_id"], t.ed_public_from_seed(r["identity_seed"])) for r in lst_]
        doc["invalid_seals"].append({"name": name, "plaintext": pt, "recipients": lst_,
                                     "error": _error_of(lambda: seal(pt, triples, None))})


def gen_group():
    doc = {"profile": PROFILE}
    for k in LISTS:
        doc[k] = []
    msgs = _gen_chains(doc)
    _gen_states(doc)
    _gen_multi(doc, msgs)
    doc = t.hexify(doc)
    # Everything generated verifies here first.
    for entries, fn in groups(doc):
        for c in entries:
            fn(c)
    return doc
