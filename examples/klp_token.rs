//! Consent tokens from the command line, so programs in other languages can check that their tokens
//! and kAI's Rust ones interoperate.
//!
//! ```text
//! klp_token issue <issuer secret key, 64 hex digits> <audience DID> <resource> <ability>
//!     prints a token valid for an hour
//! klp_token authorize <audience DID> <trusted root DID> <token> <resource> <ability>
//!     prints the token's claims as JSON, or the refusal's kind on stderr (exit status 1)
//! ```

use std::process::ExitCode;
use std::time::Duration;

use kai_klp::{Capability, Identity, Verifier};

fn secret_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|error| format!("a secret key is 64 hex digits: {error}"))?;
    Ok(key)
}

fn run(args: &[String]) -> Result<String, String> {
    match args {
        [command, secret, audience, resource, ability] if command == "issue" => {
            let issuer = Identity::from_secret_bytes(&secret_key(secret)?);
            let audience = audience.parse().map_err(|error: kai_klp::Error| error.to_string())?;
            let capability = Capability::new(resource.as_str(), ability.as_str());
            kai_klp::consent::issue(&issuer, &audience, &[capability], Duration::from_secs(3600), &[])
                .map_err(|error| error.to_string())
        }
        [command, audience, root, token, resource, ability] if command == "authorize" => {
            let audience = audience.parse().map_err(|error: kai_klp::Error| error.to_string())?;
            let root = root.parse().map_err(|error: kai_klp::Error| error.to_string())?;
            let claims = Verifier::new(audience, [root])
                .authorize(token, &Capability::new(resource.as_str(), ability.as_str()))
                .map_err(|error| error.kind().to_owned())?;
            serde_json::to_string(&claims).map_err(|error| error.to_string())
        }
        _ => Err(
            "usage: klp_token issue SECRET AUDIENCE RESOURCE ABILITY | authorize AUDIENCE ROOT TOKEN RESOURCE ABILITY"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
