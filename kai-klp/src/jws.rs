//! Compact JWS with EdDSA (RFC 7515, RFC 8037), signed by a KLP identity.
//!
//! Every token names what it is in its header's `typ` (explicit typing, RFC 8725 section 3.11): a
//! consent token is a UCAN (`JWT`, with `ucv`), an envelope `klp-envelope+jwt`, a presence record
//! `klp-presence+jwt`. A token is read only as the kind it says it is, so a signature given for one
//! purpose never serves another.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;

/// The largest token accepted, in bytes: bounds the work an attacker can ask of a verifier.
pub(crate) const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The UCAN version of consent tokens, as their header's `ucv` states it.
pub(crate) const UCAN_VERSION: &str = "0.8.1";

/// What a signed token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A UCAN 0.8.1 consent token: `typ` `JWT` and `ucv` `0.8.1`.
    Ucan,
    /// A KLP envelope, on a session or sealed: `typ` `klp-envelope+jwt`.
    Envelope,
    /// A presence record: `typ` `klp-presence+jwt`.
    Presence,
}

impl Kind {
    /// The header this kind is signed with.
    fn header(self) -> &'static str {
        match self {
            Kind::Ucan => r#"{"alg":"EdDSA","typ":"JWT","ucv":"0.8.1"}"#,
            Kind::Envelope => r#"{"alg":"EdDSA","typ":"klp-envelope+jwt"}"#,
            Kind::Presence => r#"{"alg":"EdDSA","typ":"klp-presence+jwt"}"#,
        }
    }

    /// The `typ` this kind carries.
    fn typ(self) -> &'static str {
        match self {
            Kind::Ucan => "JWT",
            Kind::Envelope => "klp-envelope+jwt",
            Kind::Presence => "klp-presence+jwt",
        }
    }
}

/// Signs `claims` as a compact JWS of `kind`.
pub(crate) fn sign<C: Serialize>(identity: &Identity, kind: Kind, claims: &C) -> Result<String, Error> {
    let header = URL_SAFE_NO_PAD.encode(kind.header());
    let payload = serde_json::to_vec(claims).map_err(|e| malformed(e.to_string()))?;
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = identity.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// A token split and its parts decoded from base64url; the payload is not parsed until the signature
/// has been checked, so an unauthenticated sender cannot make us build a large JSON tree.
pub(crate) struct Unverified {
    payload: Vec<u8>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Unverified {
    /// The claims, once the signature checks out with the key of `signer`. A payload that names a key
    /// twice in any object, at any depth, is refused rather than read last-wins: two readers of one
    /// signed text must never see two different claims.
    pub(crate) fn verify<C: DeserializeOwned>(&self, signer: &Did) -> Result<C, Error> {
        signer.verify(self.signing_input.as_bytes(), &self.signature)?;
        refuse_duplicate_keys(&self.payload, "claims")?;
        serde_json::from_slice(&self.payload).map_err(|e| malformed(format!("bad claims: {e}")))
    }

    /// Only the claim naming the signer (`S` is a struct of that one field), read without building
    /// the rest of the payload: who to check the signature against.
    pub(crate) fn claimed_signer<S: DeserializeOwned>(&self) -> Result<S, Error> {
        serde_json::from_slice(&self.payload).map_err(|e| malformed(format!("bad claims: {e}")))
    }
}

/// The header fields read; any other is ignored, except `crit`, which is refused.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    ucv: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Splits and decodes a compact JWS of `kind`, of at most [`MAX_TOKEN_BYTES`].
pub(crate) fn decode(token: &str, kind: Kind) -> Result<Unverified, Error> {
    decode_within(token, MAX_TOKEN_BYTES, kind)
}

/// [`decode`] for a token of at most `max_bytes`.
pub(crate) fn decode_within(token: &str, max_bytes: usize, kind: Kind) -> Result<Unverified, Error> {
    if token.len() > max_bytes {
        return Err(malformed(format!("longer than {max_bytes} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a compact JWS has exactly three parts"));
    };
    // The header is small, fixed in shape and read before anything else; bound it anyway.
    if header.len() > 1024 {
        return Err(malformed("the header is too long"));
    }
    let header = b64(header, "header")?;
    refuse_duplicate_keys(&header, "header")?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| malformed("the header is not a JWS header"))?;
    if header.alg != "EdDSA" {
        return Err(malformed("the algorithm must be EdDSA"));
    }
    if header.crit.is_some() {
        return Err(malformed("critical header parameters are not supported"));
    }
    // Media type names are case-insensitive (RFC 7515 section 4.1.9).
    if !header
        .typ
        .as_deref()
        .is_some_and(|typ| typ.eq_ignore_ascii_case(kind.typ()))
    {
        return Err(malformed(format!("the type must be {}", kind.typ())));
    }
    if kind == Kind::Ucan && !header.ucv.as_deref().is_some_and(is_ucan_0_8) {
        return Err(malformed(format!("the UCAN version must be 0.8.x ({UCAN_VERSION})")));
    }
    let payload = b64(payload, "payload")?;
    let signature = b64(signature, "signature")?;
    Ok(Unverified {
        payload,
        signing_input: token[..token.len() - parts_len(token)].to_owned(),
        signature,
    })
}

/// Whether `version` is a UCAN 0.8 patch release (`0.8.<digits>`): the versions whose layout this
/// crate reads.
fn is_ucan_0_8(version: &str) -> bool {
    version
        .strip_prefix("0.8.")
        .is_some_and(|patch| !patch.is_empty() && patch.len() <= 9 && patch.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses JSON `text` in which an object names one key twice, at any depth.
fn refuse_duplicate_keys(text: &[u8], what: &str) -> Result<(), Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    UniqueKeys::deserialize(&mut deserializer)
        .and_then(|_| deserializer.end())
        .map_err(|e| malformed(format!("bad {what}: {e}")))
}

/// A JSON value read only to check that no object in it repeats a key.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(serde::de::Error::custom("an object names a key twice"));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(self)
    }
}

/// The length of the final `.signature` part.
fn parts_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(format!("the {what} is not base64url")))
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::TokenMalformed { reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.4: the key is RFC 8032 test 1, the payload "Example of Ed25519 signing".
    #[test]
    fn rfc_8037_a4() {
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap()
            .try_into()
            .unwrap();
        let identity = Identity::from_secret_bytes(&secret);
        assert_eq!(
            URL_SAFE_NO_PAD.encode(identity.did().public_key().as_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let signature = URL_SAFE_NO_PAD.encode(identity.sign(signing_input.as_bytes()));
        assert_eq!(
            signature,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        identity
            .did()
            .verify(signing_input.as_bytes(), &URL_SAFE_NO_PAD.decode(&signature).unwrap())
            .unwrap();
    }

    /// An unauthenticated body is never parsed: garbage under a wrong signature is a bad signature,
    /// not a parse error (which would mean the body was read first).
    #[test]
    fn the_signature_is_checked_before_the_payload_is_parsed() {
        let header = URL_SAFE_NO_PAD.encode(Kind::Envelope.header());
        let payload = URL_SAFE_NO_PAD.encode(b"[[[[[[[[ not json");
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        let someone = Identity::generate().did();
        let result = decode(&token, Kind::Envelope)
            .unwrap()
            .verify::<serde_json::Value>(&someone);
        assert!(matches!(result, Err(Error::BadSignature)), "{:?}", result.err());
    }

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(b"{}")
        );
        assert!(matches!(decode(&none, Kind::Ucan), Err(Error::TokenMalformed { .. })));
        assert!(decode("a.b", Kind::Ucan).is_err());
        assert!(decode("a.b.c.d", Kind::Ucan).is_err());
        assert!(decode(&"x".repeat(MAX_TOKEN_BYTES + 1), Kind::Ucan).is_err());
    }

    fn signed_with_header(identity: &Identity, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(identity.sign(input.as_bytes())))
    }

    /// Domain separation: a signed envelope is not a presence record or a consent token, whatever its
    /// body says, and a token without a type is none of them.
    #[test]
    fn a_token_is_read_only_as_the_kind_it_names() {
        let alice = Identity::generate();
        let envelope = sign(&alice, Kind::Envelope, &serde_json::json!({"iss": alice.did()})).unwrap();
        assert!(decode(&envelope, Kind::Envelope).is_ok());
        for other in [Kind::Presence, Kind::Ucan] {
            let Err(Error::TokenMalformed { reason }) = decode(&envelope, other) else {
                panic!("an envelope was read as {other:?}");
            };
            assert!(reason.contains("type"), "{reason}");
        }
        let untyped = signed_with_header(&alice, r#"{"alg":"EdDSA"}"#, "{}");
        assert!(decode(&untyped, Kind::Envelope).is_err());
        // Media types compare case-insensitively.
        let shouting = signed_with_header(&alice, r#"{"alg":"EdDSA","typ":"KLP-Envelope+JWT"}"#, "{}");
        assert!(decode(&shouting, Kind::Envelope).is_ok());
    }

    #[test]
    fn consent_tokens_name_ucan_0_8() {
        let alice = Identity::generate();
        for (ucv, accepted) in [
            ("0.8.1", true),
            ("0.8.0", true),
            ("0.10.0", false),
            ("0.8", false),
            ("0.8.1-rc", false),
            ("1.0.0", false),
        ] {
            let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","ucv":"{ucv}"}}"#);
            let token = signed_with_header(&alice, &header, "{}");
            assert_eq!(decode(&token, Kind::Ucan).is_ok(), accepted, "{ucv}");
        }
        let no_version = signed_with_header(&alice, r#"{"alg":"EdDSA","typ":"JWT"}"#, "{}");
        assert!(decode(&no_version, Kind::Ucan).is_err());
    }

    /// Two parsers reading a repeated key differently (first-wins or last-wins) would see two different
    /// signed claims; the token is refused wherever the repetition hides.
    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let alice = Identity::generate();
        let did = alice.did();
        for payload in [
            format!(r#"{{"iss":"{did}","a":1,"a":2}}"#),
            format!(r#"{{"iss":"{did}","att":[{{"with":"tool:x","can":"tool/call","can":"*"}}]}}"#),
            format!(r#"{{"iss":"{did}","fct":[{{"x":{{"deep":[{{"k":1,"k":1}}]}}}}]}}"#),
        ] {
            let token = signed_with_header(&alice, Kind::Envelope.header(), &payload);
            let result = decode(&token, Kind::Envelope)
                .unwrap()
                .verify::<serde_json::Value>(&did);
            let Err(Error::TokenMalformed { reason }) = result else {
                panic!("{payload} was accepted");
            };
            assert!(reason.contains("twice"), "{reason}");
        }
        let header = r#"{"alg":"EdDSA","alg":"none","typ":"klp-envelope+jwt"}"#;
        assert!(decode(&signed_with_header(&alice, header, "{}"), Kind::Envelope).is_err());
        let fine = signed_with_header(&alice, Kind::Envelope.header(), r#"{"a":{"k":1},"b":{"k":2}}"#);
        assert!(
            decode(&fine, Kind::Envelope)
                .unwrap()
                .verify::<serde_json::Value>(&did)
                .is_ok()
        );
    }
}
