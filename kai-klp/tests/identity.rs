//! Identities and did:key DIDs against published vectors, and every malformed DID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kai_klp::{Did, Error, Identity};
use serde::Deserialize;

#[derive(Deserialize)]
struct Ed25519Vector {
    name: String,
    secret_key: String,
    public_key: String,
    message: String,
    signature: String,
}

/// RFC 8032 section 7.1: the keys, and signatures byte for byte (Ed25519 is deterministic).
#[test]
fn rfc_8032_vectors() {
    let vectors: Vec<Ed25519Vector> = serde_json::from_str(include_str!("vectors/ed25519_rfc8032.json")).unwrap();
    assert!(vectors.len() >= 4);
    for v in vectors {
        let secret: [u8; 32] = hex::decode(&v.secret_key).unwrap().try_into().unwrap();
        let identity = Identity::from_secret_bytes(&secret);
        let did = identity.did();
        assert_eq!(hex::encode(did.public_key().as_bytes()), v.public_key, "{}", v.name);
        let message = hex::decode(&v.message).unwrap();
        let signature = identity.sign(&message);
        assert_eq!(hex::encode(signature), v.signature, "{}", v.name);
        did.verify(&message, &signature).unwrap();
        let mut forged = signature;
        forged[0] ^= 1;
        assert!(
            matches!(did.verify(&message, &forged), Err(Error::BadSignature)),
            "{}",
            v.name
        );
    }
}

#[derive(Deserialize)]
struct DidVector {
    source: String,
    did: String,
    #[serde(default)]
    seed_hex: Option<String>,
    #[serde(default)]
    public_key_base58: Option<String>,
    #[serde(default)]
    x25519_key_agreement: Option<String>,
    #[serde(default)]
    x25519_public_key_base58: Option<String>,
    #[serde(default)]
    did_document: Option<serde_json::Value>,
}

/// The id of a verification method, whether listed by reference or embedded.
fn method_id(entry: &serde_json::Value, did: &str) -> String {
    let id = entry.as_str().or_else(|| entry["id"].as_str()).unwrap();
    if id.starts_with('#') {
        format!("{did}{id}")
    } else {
        id.to_owned()
    }
}

/// The did:key method's published Ed25519 examples: DID ↔ key, and the derived X25519 key.
#[test]
fn did_key_examples() {
    let vectors: Vec<DidVector> = serde_json::from_str(include_str!("vectors/did_key_ed25519.json")).unwrap();
    assert!(vectors.len() >= 3);
    for v in vectors {
        let did: Did = v.did.parse().unwrap_or_else(|e| panic!("{}: {e}", v.source));
        assert_eq!(did.to_string(), v.did, "{}", v.source);
        if let Some(seed) = &v.seed_hex {
            let seed: [u8; 32] = hex::decode(seed).unwrap().try_into().unwrap();
            assert_eq!(
                Identity::from_secret_bytes(&seed).did(),
                did,
                "{}: seed → DID",
                v.source
            );
        }
        if let Some(key) = &v.public_key_base58 {
            assert_eq!(&bs58_encode(did.public_key().as_bytes()), key, "{}", v.source);
        }
        if let Some(agreement) = &v.x25519_key_agreement {
            let expected = agreement.rsplit('#').next().unwrap();
            assert_eq!(did.x25519_multibase(), expected, "{}", v.source);
        }
        if let Some(key) = &v.x25519_public_key_base58 {
            assert_eq!(&bs58_encode(&did.x25519_public_key()), key, "{}", v.source);
        }
        if let Some(expected) = &v.did_document {
            let ours = did.document();
            assert_eq!(ours["id"], expected["id"], "{}", v.source);
            for relation in [
                "authentication",
                "assertionMethod",
                "capabilityInvocation",
                "capabilityDelegation",
                "keyAgreement",
            ] {
                let ids = |doc: &serde_json::Value| -> Vec<String> {
                    doc[relation]
                        .as_array()
                        .map(|a| a.iter().map(|e| method_id(e, &v.did)).collect())
                        .unwrap_or_default()
                };
                assert_eq!(ids(&ours), ids(expected), "{}: {relation}", v.source);
            }
        }
    }
}

#[test]
fn the_did_document_names_both_keys() {
    let identity = Identity::from_secret_bytes(&[7; 32]);
    let did = identity.did();
    let document = did.document();
    let id = did.to_string();
    assert_eq!(document["id"], id);
    let method = &document["verificationMethod"][0];
    assert_eq!(method["id"], format!("{id}#{}", did.multibase()));
    assert_eq!(method["controller"], id);
    assert_eq!(method["publicKeyMultibase"], did.multibase());
    assert_eq!(document["authentication"][0], method["id"]);
    let agreement = &document["verificationMethod"][1];
    assert_eq!(document["keyAgreement"][0], agreement["id"]);
    assert!(agreement["publicKeyMultibase"].as_str().unwrap().starts_with("z6LS"));
    assert!(did.multibase().starts_with("z6Mk"));
}

#[test]
fn malformed_dids_are_rejected_with_reasons() {
    let good = Identity::from_secret_bytes(&[1; 32]).did().to_string();
    let ed_prefixed_short = format!("did:key:z{}", bs58_encode(&[0xed, 0x01, 1, 2, 3]));
    let x25519 = format!(
        "did:key:z{}",
        bs58_encode(&[[0xec, 0x01].as_slice(), &[9u8; 32]].concat())
    );
    let small_order = format!(
        "did:key:z{}",
        bs58_encode(&[[0xed, 0x01].as_slice(), &[0u8; 32]].concat())
    );
    let cases = [
        ("did:web:example.com", "did:key"),
        ("did:key:", "base58btc multibase"),
        ("did:key:f0123", "base58btc multibase"),
        (&format!("did:key:z0OIl{}", "1".repeat(43)), "not valid base58btc"),
        (ed_prefixed_short.as_str(), "47 base58 digits"),
        (x25519.as_str(), "not an Ed25519 key"),
        (small_order.as_str(), "small-order"),
        (&format!("{good}#key-1"), "DID URL"),
        (&good.replace("did:key:", "did:key:2:"), "version 2 is not supported"),
        (&good.replace("did:key:", "did:key:1:1:"), "base58btc multibase"),
        (&good.replace("did:key:", "did:key:x:"), "`did:key:1:<multibase>`"),
        (
            &good.replace("did:key:", &format!("did:key:{}:", "9".repeat(40_000))),
            "`did:key:1:<multibase>`",
        ),
    ];
    for (text, expected) in cases {
        match text.parse::<Did>() {
            Err(Error::InvalidDid { reason }) => assert!(reason.contains(expected), "{text}: {reason}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(good.parse::<Did>().unwrap().to_string(), good);
}

/// The did:key method's versioned form (`did:key:1:<multibase>`, version 1 being the only one defined)
/// names the same key, and prints in the unversioned form.
#[test]
fn the_versioned_form_names_the_same_did() {
    let did = Identity::from_secret_bytes(&[1; 32]).did();
    let versioned = did.to_string().replace("did:key:", "did:key:1:");
    assert_eq!(versioned.parse::<Did>().unwrap(), did);
    assert_eq!(versioned.parse::<Did>().unwrap().to_string(), did.to_string());
}

/// base58btc, for building malformed inputs (the tests must not share the code they test).
fn bs58_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char))
        .collect()
}

#[cfg(feature = "vault")]
#[test]
fn identities_survive_the_vault() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.vault");
    let mut vault =
        kai_memory::Vault::create(&path, "pass", kai_memory::Kdf::Pbkdf2Sha256 { iterations: 1_000 }).unwrap();
    let identity = Identity::generate();
    identity.store(&mut vault, "agent").unwrap();
    drop(vault);
    let reopened = kai_memory::Vault::open(&path, "pass").unwrap();
    let loaded = Identity::load(&reopened, "agent").unwrap().unwrap();
    assert_eq!(loaded.did(), identity.did());
    assert!(Identity::load(&reopened, "nobody").unwrap().is_none());
}

#[test]
fn an_identity_never_prints_its_secret() {
    let identity = Identity::generate();
    let printed = format!("{identity:?}");
    let secret_hex: String = identity.secret_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(!printed.contains(&secret_hex) && printed.contains("did:key:z6Mk"));
}

#[test]
fn dids_round_trip_through_serde() {
    let did = Identity::generate().did();
    let json = serde_json::to_string(&did).unwrap();
    assert_eq!(serde_json::from_str::<Did>(&json).unwrap(), did);
    assert!(serde_json::from_str::<Did>("\"did:key:nope\"").is_err());
}
