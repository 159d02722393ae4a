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

/// A token split and decoded, signature not yet checked.
pub(crate) struct Unverified<C> {
    pub(crate) claims: C,
    signing_input: String,
    signature: Vec<u8>,
}

impl<C> Unverified<C> {
    /// Checks the signature with the key of `signer`.
    pub(crate) fn verify(&self, signer: &Did) -> Result<(), Error> {
        signer.verify(self.signing_input.as_bytes(), &self.signature)
    }
}

/// Splits and decodes a compact JWS whose header says EdDSA, of at most [`MAX_TOKEN_BYTES`].
pub(crate) fn decode<C: DeserializeOwned>(token: &str) -> Result<Unverified<C>, Error> {
    decode_within(token, MAX_TOKEN_BYTES)
}

/// [`decode`] for a token of at most `max_bytes`.
pub(crate) fn decode_within<C: DeserializeOwned>(token: &str, max_bytes: usize) -> Result<Unverified<C>, Error> {
    if token.len() > max_bytes {
        return Err(malformed(format!("longer than {max_bytes} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a compact JWS has exactly three parts"));
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64(header, "header")?).map_err(|_| malformed("the header is not JSON"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(malformed("the algorithm must be EdDSA"));
    }
    if header.get("crit").is_some() {
        return Err(malformed("critical header parameters are not supported"));
    }
    let claims =
        serde_json::from_slice(&b64(payload, "payload")?).map_err(|e| malformed(format!("bad claims: {e}")))?;
    let signature = b64(signature, "signature")?;
    Ok(Unverified {
        claims,
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

    #[test]
    fn other_algorithms_and_shapes_are_refused() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(b"{}")
        );
        assert!(matches!(
            decode::<serde_json::Value>(&none),
            Err(Error::TokenMalformed { .. })
        ));
        assert!(decode::<serde_json::Value>("a.b").is_err());
        assert!(decode::<serde_json::Value>("a.b.c.d").is_err());
        assert!(decode::<serde_json::Value>(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }
}
