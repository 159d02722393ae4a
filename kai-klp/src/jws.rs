//! Compact JWS with EdDSA (RFC 7515, RFC 8037), signed by a KLP identity.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::did::Did;
use crate::error::Error;
use crate::identity::Identity;

/// The largest token accepted, in bytes: bounds the work an attacker can ask of a verifier.
pub(crate) const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":"JWT"}`.
pub(crate) fn sign<C: Serialize>(identity: &Identity, claims: &C) -> Result<String, Error> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
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
    /// The claims, once the signature checks out with the key of `signer`.
    pub(crate) fn verify<C: DeserializeOwned>(&self, signer: &Did) -> Result<C, Error> {
        signer.verify(self.signing_input.as_bytes(), &self.signature)?;
        serde_json::from_slice(&self.payload).map_err(|e| malformed(format!("bad claims: {e}")))
    }

    /// Only the claim naming the signer (`S` is a struct of that one field), read without building
    /// the rest of the payload: who to check the signature against.
    pub(crate) fn claimed_signer<S: DeserializeOwned>(&self) -> Result<S, Error> {
        serde_json::from_slice(&self.payload).map_err(|e| malformed(format!("bad claims: {e}")))
    }
}

/// Splits and decodes a compact JWS whose header says EdDSA, of at most [`MAX_TOKEN_BYTES`].
pub(crate) fn decode(token: &str) -> Result<Unverified, Error> {
    decode_within(token, MAX_TOKEN_BYTES)
}

/// [`decode`] for a token of at most `max_bytes`.
pub(crate) fn decode_within(token: &str, max_bytes: usize) -> Result<Unverified, Error> {
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
    let header: serde_json::Value =
        serde_json::from_slice(&b64(header, "header")?).map_err(|_| malformed("the header is not JSON"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(malformed("the algorithm must be EdDSA"));
    }
    if header.get("crit").is_some() {
        return Err(malformed("critical header parameters are not supported"));
    }
    let payload = b64(payload, "payload")?;
    let signature = b64(signature, "signature")?;
    Ok(Unverified {
        payload,
        signing_input: token[..token.len() - parts_len(token)].to_owned(),
        signature,
    })
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
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(b"[[[[[[[[ not json");
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        let someone = Identity::generate().did();
        let result = decode(&token).unwrap().verify::<serde_json::Value>(&someone);
        assert!(matches!(result, Err(Error::BadSignature)), "{:?}", result.err());
    }

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(b"{}")
        );
        assert!(matches!(decode(&none), Err(Error::TokenMalformed { .. })));
        assert!(decode("a.b").is_err());
        assert!(decode("a.b.c.d").is_err());
        assert!(decode(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }
}
