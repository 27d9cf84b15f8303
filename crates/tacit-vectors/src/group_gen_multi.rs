//! `group.json`'s multi-recipient entries (`docs/PROTOCOL.md` 16.7, 16.9).

use tacit::group::multi;
use tacit::IdentityKeyPair;

use crate::group::{
    error_name, GroupFile, InvalidEnvelope, InvalidSeal, MultiCase, MultiExpected, RecipientFields,
};
use crate::group_gen::d;
use crate::group_multi::OnceRng;
use crate::group_wire::{pb_bytes, pb_uint};
use crate::schema::{Hex, HexBytes};

fn recipient(user: &str, device: u32) -> RecipientFields {
    RecipientFields {
        user_id: user.into(),
        device_id: device,
        identity_seed: d(&format!("identity/{user}_{device}")),
    }
}

pub(crate) fn multi_cases(file: &mut GroupFile) -> Result<(), String> {
    let plaintext = file
        .messages
        .first()
        .map(|m| m.expected.message.0.clone())
        .unwrap_or_default();
    let mut rng = [0u8; 64];
    rng[..32].copy_from_slice(&d("multi/m").0);
    rng[32..].copy_from_slice(&d("multi/e").0);
    let recipients = vec![
        recipient("alice", 2),
        recipient("bob", 1),
        recipient("bob", 2),
    ];
    let list: Vec<_> = recipients
        .iter()
        .map(|r| {
            (
                tacit::Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string()),
                IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
            )
        })
        .map(|(a, k)| a.map(|a| (a, k)))
        .collect::<Result<_, _>>()?;
    let mut fixed = OnceRng::new(rng.to_vec());
    let sealed = multi::seal(&plaintext, &list, &mut fixed).map_err(|e| format!("{e:?}"))?;
    let envelopes: Vec<Vec<u8>> = sealed
        .parts
        .iter()
        .map(|p| sealed.shared.envelope_for(&p.wrapped_key).to_bytes())
        .collect();
    let e0 = envelopes[0].clone();
    file.multi.push(MultiCase {
        name: "multi_three_devices".into(),
        rng: Hex(rng),
        plaintext: HexBytes(plaintext.clone()),
        recipients: recipients.clone(),
        expected: MultiExpected {
            ephemeral_key: Hex(sealed.shared.ephemeral_key().to_bytes()),
            shared_payload: HexBytes(sealed.shared.to_bytes()),
            parts: sealed.parts.iter().map(|p| Hex(p.wrapped_key)).collect(),
            envelopes: envelopes.into_iter().map(HexBytes).collect(),
        },
    });
    file.invalid_seals.push(InvalidSeal {
        name: "seal_no_recipients".into(),
        plaintext: HexBytes(plaintext.clone()),
        recipients: vec![],
        error: String::new(),
    });
    file.invalid_seals.push(InvalidSeal {
        name: "seal_same_address_twice".into(),
        plaintext: HexBytes(plaintext.clone()),
        recipients: vec![
            recipient("bob", 1),
            recipient("alice", 2),
            recipient("bob", 1),
        ],
        error: String::new(),
    });
    for s in &mut file.invalid_seals {
        let list: Vec<_> = s
            .recipients
            .iter()
            .filter_map(|r| {
                tacit::Address::new(&r.user_id, r.device_id).ok().map(|a| {
                    (
                        a,
                        IdentityKeyPair::from_seed(&r.identity_seed.0).public_key(),
                    )
                })
            })
            .collect();
        s.error = match multi::seal(&s.plaintext.0, &list, &mut OnceRng::new(vec![0; 64])) {
            Ok(_) => return Err(format!("{} seals", s.name)),
            Err(e) => error_name(&e),
        };
    }
    let mut bad: Vec<(&str, RecipientFields, Vec<u8>)> = Vec::new();
    bad.push((
        "envelope_for_another_device",
        recipients[1].clone(),
        e0.clone(),
    ));
    let mut same_key_other_address = recipients[0].clone();
    same_key_other_address.device_id = 3;
    bad.push((
        "envelope_at_another_address",
        same_key_other_address,
        e0.clone(),
    ));
    let mut payload = e0.clone();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    bad.push(("envelope_payload_altered", recipients[0].clone(), payload));
    let mut part = e0.clone();
    part[2 + 34 + 2] ^= 0x01;
    bad.push(("envelope_part_altered", recipients[0].clone(), part));
    let mut eph = e0.clone();
    eph[4] ^= 0x01;
    bad.push(("envelope_ephemeral_key_altered", recipients[0].clone(), eph));
    let mut zero = e0.clone();
    zero[4..36].copy_from_slice(&[0; 32]);
    bad.push((
        "envelope_small_order_ephemeral_key",
        recipients[0].clone(),
        zero,
    ));
    let mut short = Vec::new();
    pb_uint(&mut short, 1, 1);
    pb_bytes(&mut short, 2, &e0[4..36], false);
    pb_bytes(&mut short, 3, &e0[38..69], false);
    pb_bytes(&mut short, 4, &e0[72..], false);
    bad.push(("envelope_part_of_31_bytes", recipients[0].clone(), short));
    let mut extra = e0.clone();
    pb_uint(&mut extra, 5, 1);
    bad.push(("envelope_unknown_field", recipients[0].clone(), extra));
    for (name, r, bytes) in bad {
        let address = tacit::Address::new(&r.user_id, r.device_id).map_err(|e| e.to_string())?;
        let ik = IdentityKeyPair::from_seed(&r.identity_seed.0);
        let error = match multi::open(&ik, &address, &bytes) {
            Ok(_) => return Err(format!("{name} opens")),
            Err(e) => error_name(&e),
        };
        file.invalid_envelopes.push(InvalidEnvelope {
            name: name.into(),
            recipient: r,
            bytes: HexBytes(bytes),
            error,
        });
    }
    Ok(())
}
