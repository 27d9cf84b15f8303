#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Property tests of delivery: two parties exchange messages in both
//! directions across many DH ratchet steps, and a random schedule delivers
//! them out of order, drops, replays, corrupts and truncates some.
//!
//! A model of the protocol (per receiver: the sender's chain it is in, `Nr`,
//! and the skipped-key store in insertion order with its cap) predicts the
//! exact outcome of every delivery, including the error variant, whether a
//! DH step happens (32 bytes of randomness drawn) and the number of stored
//! skipped keys. Independently of the model, the test checks that no
//! message ever decrypts twice, that a decryption returns the plaintext
//! that was sent, and that every failure leaves the serialized state
//! byte-for-byte unchanged.

mod common;

use std::collections::{HashSet, VecDeque};

use common::{proptest_config, session, state, CountingRng};
use proptest::prelude::*;
use proptest::sample::Index;
use tacit::ratchet::{EncryptedMessage, Ratchet, RatchetConfig, MAX_SKIPPED_CHAINS};
use tacit::DecryptError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Party {
    Alice,
    Bob,
}

/// A message as sent, with what the model knows of its header.
struct Sent {
    sender: Party,
    /// The index of the sender's sending chain (0 for its first).
    chain: usize,
    n: u32,
    pn: u32,
    plaintext: Vec<u8>,
    message: EncryptedMessage,
}

/// What the model predicts for a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok { new_chain: bool },
    Err(DecryptError),
}

/// The model of one party.
#[derive(Debug)]
struct Side {
    /// The index of this party's sending chain, if it has one.
    send_chain: Option<usize>,
    sent: u32,
    previous_sent: u32,
    /// The peer's chain this party receives in, if any.
    recv_chain: Option<usize>,
    received: u64,
    /// Skipped keys `(peer chain, n)`, oldest first.
    store: VecDeque<(usize, u32)>,
    /// Keys evicted with their whole chain (`MAX_SKIPPED_CHAINS`).
    lost: HashSet<(usize, u32)>,
}

impl Side {
    fn new(initiator: bool) -> Self {
        Self {
            send_chain: initiator.then_some(0),
            sent: 0,
            previous_sent: 0,
            recv_chain: None,
            received: 0,
            store: VecDeque::new(),
            lost: HashSet::new(),
        }
    }

    fn next_chain(&self) -> usize {
        self.recv_chain.map_or(0, |c| c + 1)
    }

    /// The outcome of receiving `m` (of the peer) in this state.
    fn predict(&self, m: &Sent, config: RatchetConfig) -> Outcome {
        let max_skip = u64::from(config.max_skip());
        let n = u64::from(m.n);
        if self.recv_chain == Some(m.chain) {
            if n >= self.received {
                if self.received + max_skip < n {
                    return Outcome::Err(DecryptError::TooManySkipped);
                }
                return Outcome::Ok { new_chain: false };
            }
            if self.store.contains(&(m.chain, m.n)) {
                return Outcome::Ok { new_chain: false };
            }
            return Outcome::Err(DecryptError::DuplicateMessage);
        }
        if m.chain == self.next_chain() {
            if self.received + max_skip < u64::from(m.pn) || max_skip < n {
                return Outcome::Err(DecryptError::TooManySkipped);
            }
            return Outcome::Ok { new_chain: true };
        }
        // A sender is never more than one chain ahead of its receiver: its
        // next chain needs a reply to the chain the receiver is in.
        assert!(m.chain < self.next_chain(), "model: chain from the future");
        if self.store.contains(&(m.chain, m.n)) {
            Outcome::Ok { new_chain: false }
        } else if self.store.iter().any(|&(c, _)| c == m.chain) {
            // The retired chain's header key is still known (it has keys).
            Outcome::Err(DecryptError::DuplicateMessage)
        } else {
            Outcome::Err(DecryptError::UnknownHeaderKey)
        }
    }

    fn store_key(&mut self, key: (usize, u32), cap: u32) {
        if cap == 0 {
            return;
        }
        let chains = |store: &VecDeque<(usize, u32)>| {
            store.iter().map(|&(c, _)| c).collect::<HashSet<_>>().len()
        };
        if !self.store.iter().any(|&(c, _)| c == key.0) {
            while chains(&self.store) >= MAX_SKIPPED_CHAINS {
                let oldest = self.store[0].0;
                self.lost
                    .extend(self.store.iter().filter(|&&(c, _)| c == oldest));
                self.store.retain(|&(c, _)| c != oldest);
            }
        }
        while self.store.len() >= cap as usize {
            self.store.pop_front();
        }
        self.store.push_back(key);
    }

    /// Applies the successful receipt of `m`.
    fn receive(&mut self, m: &Sent, config: RatchetConfig) {
        let cap = config.max_stored_skipped_keys();
        let n = u64::from(m.n);
        if self.recv_chain == Some(m.chain) && n >= self.received {
            for k in self.received..n {
                self.store_key((m.chain, u32::try_from(k).unwrap()), cap);
            }
            self.received = n + 1;
        } else if m.chain == self.next_chain() && self.recv_chain != Some(m.chain) {
            if let Some(old) = self.recv_chain {
                for k in self.received..u64::from(m.pn) {
                    self.store_key((old, u32::try_from(k).unwrap()), cap);
                }
            }
            for k in 0..m.n {
                self.store_key((m.chain, k), cap);
            }
            self.recv_chain = Some(m.chain);
            self.received = n + 1;
            self.previous_sent = self.sent;
            self.sent = 0;
            self.send_chain = Some(self.send_chain.map_or(0, |c| c + 1));
        } else {
            let at = self.store.iter().position(|&k| k == (m.chain, m.n));
            self.store.remove(at.expect("model: key to use is stored"));
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// The party sends a message of `len` bytes (Bob only once he can).
    Send { alice: bool, len: usize },
    /// Delivers an in-flight message.
    Deliver(Index),
    /// Delivers again a message that was delivered before.
    Replay(Index),
    /// Delivers a copy of any sent message with byte `at` XORed with `mask`.
    Corrupt(Index, Index, u8),
    /// Delivers a copy of any sent message shortened by `cut` bytes.
    Truncate(Index, Index),
    /// Loses an in-flight message for good.
    Drop(Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        7 => (any::<bool>(), 0..48usize).prop_map(|(alice, len)| Op::Send { alice, len }),
        6 => any::<Index>().prop_map(Op::Deliver),
        1 => any::<Index>().prop_map(Op::Replay),
        1 => (any::<Index>(), any::<Index>(), 1..=255u8).prop_map(|(m, at, mask)| Op::Corrupt(m, at, mask)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(m, cut)| Op::Truncate(m, cut)),
        1 => any::<Index>().prop_map(Op::Drop),
    ]
}

/// The two parties, their models, and the messages.
struct World {
    config: RatchetConfig,
    alice: Ratchet,
    bob: Ratchet,
    model_alice: Side,
    model_bob: Side,
    sent: Vec<Sent>,
    /// Indices of messages sent and neither delivered nor dropped.
    in_flight: Vec<usize>,
    /// Indices of messages that decrypted (each exactly once).
    delivered: Vec<usize>,
    delivered_set: HashSet<usize>,
    /// Messages that were dropped before they were ever delivered.
    dropped: HashSet<usize>,
    /// The seed of the next RNG.
    seed: u64,
    /// Outcomes seen, for coverage checks.
    errors_seen: HashSet<String>,
    steps: usize,
}

impl World {
    fn new(config: RatchetConfig, seed: u64) -> Self {
        let s = session(config, seed);
        Self {
            config,
            alice: s.alice,
            bob: s.bob,
            model_alice: Side::new(true),
            model_bob: Side::new(false),
            sent: Vec::new(),
            in_flight: Vec::new(),
            delivered: Vec::new(),
            delivered_set: HashSet::new(),
            dropped: HashSet::new(),
            seed: seed.wrapping_mul(1_000_003),
            errors_seen: HashSet::new(),
            steps: 0,
        }
    }

    fn next_rng(&mut self) -> CountingRng {
        self.seed = self.seed.wrapping_add(1);
        CountingRng::new(self.seed)
    }

    fn parts(&mut self, party: Party) -> (&mut Ratchet, &mut Side) {
        match party {
            Party::Alice => (&mut self.alice, &mut self.model_alice),
            Party::Bob => (&mut self.bob, &mut self.model_bob),
        }
    }

    fn send(&mut self, alice: bool, len: usize) -> Result<(), TestCaseError> {
        let sender = if alice || self.model_bob.send_chain.is_none() {
            Party::Alice
        } else {
            Party::Bob
        };
        let index = self.sent.len();
        // A plaintext unique to the message: its index, then filler.
        let mut plaintext = u32::try_from(index).unwrap().to_be_bytes().to_vec();
        plaintext.extend((0..len).map(|i| (i as u8) ^ (index as u8)));
        let mut rng = self.next_rng();
        let (ratchet, side) = self.parts(sender);
        prop_assert!(ratchet.can_send());
        let header = ratchet.next_header().unwrap();
        let message = ratchet.encrypt(&plaintext, &mut rng).unwrap();
        prop_assert_eq!((rng.bytes, rng.calls), (24, 1));
        prop_assert_eq!(message.ciphertext().len(), plaintext.len() + 16);
        // The header counters are the model's.
        prop_assert_eq!(header.message_number, side.sent);
        prop_assert_eq!(header.previous_chain_length, side.previous_sent);
        let chain = side.send_chain.unwrap();
        let sent = Sent {
            sender,
            chain,
            n: side.sent,
            pn: side.previous_sent,
            plaintext,
            message,
        };
        side.sent += 1;
        self.sent.push(sent);
        self.in_flight.push(index);
        Ok(())
    }

    /// Delivers message `index` (possibly altered) to its receiver and
    /// checks the outcome against the model.
    fn deliver(&mut self, index: usize, alteration: Alteration) -> Result<(), TestCaseError> {
        let config = self.config;
        let receiver = match self.sent[index].sender {
            Party::Alice => Party::Bob,
            Party::Bob => Party::Alice,
        };
        let mut rng = self.next_rng();
        let bytes = self.sent[index].message.to_bytes();
        let (message, header_altered) = match alteration {
            Alteration::None => (self.sent[index].message.clone(), false),
            Alteration::Flip(at, mask) => {
                let at = at.index(bytes.len());
                let mut altered = bytes.clone();
                altered[at] ^= mask;
                (EncryptedMessage::from_bytes(&altered).unwrap(), at < 80)
            }
            Alteration::Truncate(cut) => {
                let cut = 1 + cut.index(bytes.len());
                match EncryptedMessage::from_bytes(&bytes[..bytes.len() - cut]) {
                    Ok(m) => (m, false),
                    Err(e) => {
                        prop_assert!(bytes.len() - cut < 96);
                        prop_assert_eq!(e, DecryptError::MessageTooShort);
                        return Ok(());
                    }
                }
            }
        };
        let World {
            alice,
            bob,
            model_alice,
            model_bob,
            sent,
            delivered,
            delivered_set,
            errors_seen,
            steps,
            ..
        } = self;
        let (ratchet, side) = match receiver {
            Party::Alice => (alice, model_alice),
            Party::Bob => (bob, model_bob),
        };
        let m = &sent[index];
        let predicted = side.predict(m, config);
        let expected = match (alteration, predicted) {
            (Alteration::None, p) => p,
            (_, _) if header_altered => Outcome::Err(DecryptError::UnknownHeaderKey),
            (_, Outcome::Ok { .. }) => Outcome::Err(DecryptError::AuthenticationFailed),
            (_, error) => error,
        };
        let before = state(ratchet);
        let result = ratchet.decrypt(&message, &mut rng);
        match expected {
            Outcome::Ok { new_chain } => {
                prop_assert_eq!(result.as_ref(), Ok(&m.plaintext), "message {}", index);
                let draws = if new_chain { (32, 1) } else { (0, 0) };
                prop_assert_eq!((rng.bytes, rng.calls), draws);
                side.receive(m, config);
                prop_assert!(
                    delivered_set.insert(index),
                    "message {} decrypted twice",
                    index
                );
                delivered.push(index);
                if new_chain {
                    *steps += 1;
                }
            }
            Outcome::Err(error) => {
                prop_assert_eq!(result, Err(error), "message {}", index);
                prop_assert_eq!(&state(ratchet), &before, "failure changed the state");
                prop_assert_eq!(rng.bytes, 0);
                errors_seen.insert(format!("{error:?}"));
            }
        }
        prop_assert_eq!(ratchet.skipped_key_count(), side.store.len());
        prop_assert_eq!(ratchet.can_send(), side.send_chain.is_some());
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Send { alice, len } => self.send(*alice, *len)?,
            Op::Deliver(pick) if !self.in_flight.is_empty() => {
                let index = self.in_flight.remove(pick.index(self.in_flight.len()));
                self.deliver(index, Alteration::None)?;
            }
            Op::Replay(pick) if !self.delivered.is_empty() => {
                let index = self.delivered[pick.index(self.delivered.len())];
                self.deliver(index, Alteration::None)?;
            }
            Op::Corrupt(pick, at, mask) if !self.sent.is_empty() => {
                let index = pick.index(self.sent.len());
                self.deliver(index, Alteration::Flip(*at, *mask))?;
            }
            Op::Truncate(pick, cut) if !self.sent.is_empty() => {
                let index = pick.index(self.sent.len());
                self.deliver(index, Alteration::Truncate(*cut))?;
            }
            Op::Drop(pick) if !self.in_flight.is_empty() => {
                let index = self.in_flight.remove(pick.index(self.in_flight.len()));
                self.dropped.insert(index);
            }
            _ => {}
        }
        Ok(())
    }

    /// Delivers everything still in flight, newest first.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        while let Some(index) = self.in_flight.pop() {
            self.deliver(index, Alteration::None)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Alteration {
    None,
    Flip(Index, u8),
    Truncate(Index),
}

proptest! {
    #![proptest_config(proptest_config(32))]

    /// Default limits, sequences far below them: every message that is not
    /// dropped decrypts exactly once, whatever the order.
    #[test]
    fn every_message_decrypts_exactly_once_in_any_order(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..600),
    ) {
        let mut world = World::new(RatchetConfig::default(), seed);
        for op in &ops {
            world.apply(op)?;
        }
        world.flush()?;
        prop_assert!(world.sent.len() < 600);
        for (index, m) in world.sent.iter().enumerate() {
            let receiver = match m.sender {
                Party::Alice => &world.model_bob,
                Party::Bob => &world.model_alice,
            };
            // Lost: evicted with its whole chain (MAX_SKIPPED_CHAINS).
            let lost = receiver.lost.contains(&(m.chain, m.n));
            let delivered = world.delivered_set.contains(&index);
            prop_assert!(
                delivered != (world.dropped.contains(&index) || lost),
                "message {} delivered: {}, dropped: {}, lost: {}",
                index,
                delivered,
                world.dropped.contains(&index),
                lost
            );
        }
        // Under these limits only replays and alterations fail.
        for error in &world.errors_seen {
            prop_assert!(
                ["DuplicateMessage", "UnknownHeaderKey", "AuthenticationFailed"]
                    .contains(&error.as_str()),
                "unexpected {}", error
            );
        }
        // Replays and alterations are all answered; the sessions still work.
        let mut rng = world.next_rng();
        let ping = world.alice.encrypt(b"ping", &mut rng).unwrap();
        prop_assert_eq!(world.bob.decrypt(&ping, &mut rng).unwrap(), b"ping");
        let pong = world.bob.encrypt(b"pong", &mut rng).unwrap();
        prop_assert_eq!(world.alice.decrypt(&pong, &mut rng).unwrap(), b"pong");
        // The only keys left are those of dropped messages.
        for (side, peer) in [(&world.model_alice, Party::Bob), (&world.model_bob, Party::Alice)] {
            for &(chain, n) in &side.store {
                let index = world
                    .sent
                    .iter()
                    .position(|m| m.sender == peer && m.chain == chain && m.n == n)
                    .unwrap();
                prop_assert!(world.dropped.contains(&index));
            }
        }
    }

}

proptest! {
    #![proptest_config(proptest_config(96))]

    /// Small `max_skip` and cap: the model says exactly which deliveries
    /// fail with `TooManySkipped`, which keys were evicted and which
    /// retired chains are forgotten.
    #[test]
    fn small_limits_give_exactly_the_modelled_outcomes(
        seed in any::<u64>(),
        max_skip in 0..6u32,
        cap in prop_oneof![0..8u32, Just(2000u32)],
        ops in proptest::collection::vec(op(), 1..160),
    ) {
        let config = RatchetConfig::default()
            .with_max_skip(max_skip).unwrap()
            .with_max_stored_skipped_keys(cap).unwrap();
        let mut world = World::new(config, seed);
        for op in &ops {
            world.apply(op)?;
        }
        world.flush()?;
        // Whatever failed then may be deliverable now; try once more.
        let undelivered: Vec<usize> = (0..world.sent.len())
            .filter(|i| !world.delivered_set.contains(i))
            .collect();
        for index in undelivered {
            world.deliver(index, Alteration::None)?;
        }
    }
}

/// The schedules above do reach what they are meant to test: many DH
/// steps, and every error the model distinguishes.
#[test]
fn schedules_reach_ratchet_steps_and_every_error() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut steps = 0;
    let mut errors = HashSet::new();
    for case in 0..12u64 {
        let ops = proptest::collection::vec(op(), 300..301)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let config = if case % 2 == 0 {
            RatchetConfig::default()
        } else {
            RatchetConfig::default()
                .with_max_skip(2)
                .unwrap()
                .with_max_stored_skipped_keys(3)
                .unwrap()
        };
        let mut world = World::new(config, case);
        for op in &ops {
            world.apply(op).unwrap();
        }
        world.flush().unwrap();
        steps += world.steps;
        errors.extend(world.errors_seen);
    }
    assert!(steps >= 12 * 10, "only {steps} DH steps");
    for error in [
        "DuplicateMessage",
        "UnknownHeaderKey",
        "AuthenticationFailed",
        "TooManySkipped",
    ] {
        assert!(errors.contains(error), "{error} never happened: {errors:?}");
    }
}
