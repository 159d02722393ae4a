//! The vault: round trips, every distinct failure, passphrase changes, backups.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;

mod common;

use kai_memory::{Error, Kdf, Vault};

const FAST: Kdf = Kdf::Pbkdf2Sha256 { iterations: 1_000 };

/// A path named `name` in a fresh directory, removed with its contents when the guard drops.
fn temp_path(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn sample(name: &str) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let (dir, path) = temp_path(name);
    let mut vault = Vault::create(&path, "pass", FAST).unwrap();
    vault.put_secret("openai", "sk-123").unwrap();
    vault
        .put_record("profile", &serde_json::json!({"name": "Ada", "likes": ["tea"]}))
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

fn open_bytes(path: &PathBuf, bytes: &[u8], passphrase: &str) -> Result<Vault, Error> {
    std::fs::write(path, bytes).unwrap();
    Vault::open(path, passphrase)
}

#[test]
fn secrets_and_records_round_trip_across_reopening() {
    let (_dir, path, _) = sample("round-trip.vault");
    let mut vault = Vault::open(&path, "pass").unwrap();
    assert_eq!(vault.secret("openai").unwrap().unwrap().expose(), "sk-123");
    let profile: serde_json::Value = vault.record("profile").unwrap().unwrap();
    assert_eq!(profile["name"], "Ada");
    assert!(
        vault.secret("profile").unwrap().is_none(),
        "secrets and records are separate"
    );
    assert_eq!(vault.secret_names().collect::<Vec<_>>(), ["openai"]);
    assert_eq!(vault.record_names().collect::<Vec<_>>(), ["profile"]);

    vault.put_secret("openai", "sk-456").unwrap();
    assert!(vault.remove("profile").unwrap());
    assert!(!vault.remove("profile").unwrap());
    drop(vault);
    let vault = Vault::open(&path, "pass").unwrap();
    assert_eq!(vault.secret("openai").unwrap().unwrap().expose(), "sk-456");
    assert!(vault.record::<serde_json::Value>("profile").unwrap().is_none());
}

#[test]
fn nothing_secret_reaches_debug_output_or_the_file() {
    let (_dir, path, bytes) = sample("debug.vault");
    let vault = Vault::open(&path, "pass").unwrap();
    let secret = vault.secret("openai").unwrap().unwrap();
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert!(!format!("{vault:?}").contains("sk-123"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("sk-123") && !text.contains("Ada"));
}

#[test]
fn reading_a_record_as_the_wrong_type_does_not_quote_its_contents() {
    let (_dir, path, _) = sample("wrong-type.vault");
    let mut vault = Vault::open(&path, "pass").unwrap();
    vault.put_record("token", &"sk-live-0123").unwrap();
    // serde's own message here would be `invalid type: string "sk-live-0123", expected u32`.
    let error = vault.record::<u32>("token").unwrap_err();
    assert!(matches!(&error, Error::Record { name, .. } if name == "token"));
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(shown.contains("another shape"), "{shown}");
    }
}

#[test]
fn a_wrong_passphrase_is_its_own_error() {
    let (_dir, path, _) = sample("wrong.vault");
    assert!(matches!(Vault::open(&path, "Pass"), Err(Error::WrongPassphrase)));
}

#[test]
fn every_truncation_is_reported_as_truncation() {
    let (_dir, path, bytes) = sample("truncated.vault");
    for length in 0..bytes.len() {
        match open_bytes(&path, &bytes[..length], "pass") {
            Err(Error::Truncated) => {}
            other => panic!("cut at {length} of {}: {other:?}", bytes.len()),
        }
    }
}

#[test]
fn tampering_is_detected_and_located() {
    let (_dir, path, bytes) = sample("tampered.vault");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let flip = |at: usize| {
        let mut copy = bytes.clone();
        copy[at] ^= 0x01;
        copy
    };
    // Replaces one base64 character with another valid one, so the JSON still parses.
    let swap = |at: usize| {
        let mut copy = bytes.clone();
        copy[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        copy
    };

    // The sealed data key.
    let key_at = text.find("\"ciphertext\":\"").unwrap() + 20;
    assert!(matches!(open_bytes(&path, &swap(key_at), "pass"), Err(Error::Tampered { part }) if part == "key"));
    // The vault id is bound to the sealed key (the edit keeps the base64 valid).
    let id_at = text.find("\"vault_id\":\"").unwrap() + 12;
    assert!(matches!(open_bytes(&path, &swap(id_at), "pass"), Err(Error::Tampered { part }) if part == "key"));
    // The body, in an entry's ciphertext.
    let body_at = text.rfind("\"ciphertext\":\"").unwrap() + 20;
    assert!(matches!(open_bytes(&path, &flip(body_at), "pass"), Err(Error::Tampered { part }) if part == "contents"));
    // The MAC.
    assert!(
        matches!(open_bytes(&path, &flip(bytes.len() - 1), "pass"), Err(Error::Tampered { part }) if part == "contents")
    );
    // Extra bytes after the end.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        open_bytes(&path, &longer, "pass"),
        Err(Error::Tampered { .. })
    ));
    // A header that is no longer JSON.
    let brace = text.find("{\"vault_id\"").unwrap();
    let mut broken = bytes.clone();
    broken[brace] = b'[';
    assert!(matches!(open_bytes(&path, &broken, "pass"), Err(Error::Tampered { part }) if part == "header"));
    // The salt and KDF parameters cannot be authenticated before the passphrase is known: changing
    // them is indistinguishable from a wrong passphrase, and never opens the vault.
    let salt_at = text.find("\"salt\":\"").unwrap() + 8;
    assert!(matches!(
        open_bytes(&path, &swap(salt_at), "pass"),
        Err(Error::WrongPassphrase)
    ));
}

#[test]
fn the_version_and_magic_are_checked() {
    let (_dir, path, bytes) = sample("version.vault");
    let mut newer = bytes.clone();
    newer[9] = 3;
    assert!(matches!(
        open_bytes(&path, &newer, "pass"),
        Err(Error::UnsupportedVersion { found: 3, supported: 2 })
    ));
    assert!(matches!(
        open_bytes(&path, b"PK\x03\x04 a zip file", "pass"),
        Err(Error::NotAVault)
    ));
}

#[test]
fn changing_the_passphrase_rewraps_only_the_key() {
    let (_dir, path, before) = sample("rekey.vault");
    let mut vault = Vault::open(&path, "pass").unwrap();
    vault.change_passphrase("new pass", Kdf::argon2id_default()).unwrap();
    drop(vault);
    let after = std::fs::read(&path).unwrap();
    assert!(matches!(Vault::open(&path, "pass"), Err(Error::WrongPassphrase)));
    let vault = Vault::open(&path, "new pass").unwrap();
    assert_eq!(vault.secret("openai").unwrap().unwrap().expose(), "sk-123");
    // The header's wrapped key changed; the data key it wraps did not (the entries open as before).
    assert_ne!(before[..before.len() / 2], after[..after.len() / 2]);
}

/// The file shows nothing of what the vault holds, names included: a stolen file does not tell which
/// services its owner has keys for.
#[test]
fn entry_names_are_not_readable_in_the_file() {
    let (_dir, _path, bytes) = sample("names.vault");
    let text = String::from_utf8_lossy(&bytes);
    for name in ["openai", "profile", "secret", "record"] {
        assert!(!text.contains(name), "{name} is readable in the file");
    }
}

/// A version-1 file (names in the clear), made by the release before version 2, still opens, and is
/// rewritten as version 2, names sealed, when it is opened.
#[test]
fn a_version_1_vault_opens_and_is_upgraded_when_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.vault");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/vault_v1.kaivault");
    std::fs::copy(&fixture, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[8..10], [0, 1]);
    let mut vault = Vault::open(&path, "version one").unwrap();
    // Opening it rewrites it in version 2 at once: the names stop being readable.
    let opened = std::fs::read(&path).unwrap();
    assert_eq!(opened[8..10], [0, 2]);
    assert!(!String::from_utf8_lossy(&opened).contains("openai"));
    assert_eq!(vault.secret("openai").unwrap().unwrap().expose(), "sk-v1-secret");
    vault.put_secret("github", "ghp_2").unwrap();
    drop(vault);
    let upgraded = std::fs::read(&path).unwrap();
    assert_eq!(upgraded[8..10], [0, 2]);
    assert!(!String::from_utf8_lossy(&upgraded).contains("openai"));
    let vault = Vault::open(&path, "version one").unwrap();
    assert_eq!(vault.secret("openai").unwrap().unwrap().expose(), "sk-v1-secret");
    assert_eq!(vault.secret("github").unwrap().unwrap().expose(), "ghp_2");
}

#[test]
fn backups_export_and_import_under_their_own_passphrase() {
    let (_dir, path, _) = sample("source.vault");
    let (_backup_dir, backup) = temp_path("backup.vault");
    Vault::open(&path, "pass")
        .unwrap()
        .export(&backup, "backup pass", FAST)
        .unwrap();
    assert!(matches!(Vault::open(&backup, "pass"), Err(Error::WrongPassphrase)));

    let (_target_dir, target) = temp_path("target.vault");
    let mut other = Vault::create(&target, "other", FAST).unwrap();
    other.put_secret("github", "ghp_x").unwrap();
    assert_eq!(other.import(&backup, "backup pass").unwrap(), 2);
    assert!(matches!(other.import(&backup, "nope"), Err(Error::WrongPassphrase)));
    drop(other);
    let reopened = Vault::open(&target, "other").unwrap();
    assert_eq!(reopened.secret("openai").unwrap().unwrap().expose(), "sk-123");
    assert_eq!(reopened.secret("github").unwrap().unwrap().expose(), "ghp_x");
}

/// Two handles on one vault each saved their own entries over the other's. The second is refused
/// while the first is open, in this process or another, and can open it once the first is dropped.
#[test]
fn a_second_writer_is_refused_while_the_first_has_the_vault_open() {
    let (_dir, path, _) = sample("locked.vault");
    let mut first = Vault::open(&path, "pass").unwrap();
    assert!(matches!(Vault::open(&path, "pass"), Err(Error::Locked { .. })));
    let other_process = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "opening_child", "--nocapture"])
        .env("KAI_VAULT_PATH", &path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&other_process.stdout);
    assert!(said.contains("open: Locked"), "{said}");
    first.put_secret("mine", "kept").unwrap();
    drop(first);
    let second = Vault::open(&path, "pass").unwrap();
    assert_eq!(second.secret("mine").unwrap().unwrap().expose(), "kept");
}

/// Child half of `a_second_writer_is_refused_while_the_first_has_the_vault_open`: tries to open the
/// vault at `KAI_VAULT_PATH` and prints the outcome (does nothing without it).
#[test]
fn opening_child() {
    let Some(path) = std::env::var_os("KAI_VAULT_PATH") else {
        return;
    };
    match Vault::open(&path, "pass") {
        Ok(_) => println!("open: Ok"),
        Err(Error::Locked { .. }) => println!("open: Locked"),
        Err(other) => println!("open: {other}"),
    }
}

/// A change that cannot be saved (the directory is gone) leaves the vault in memory as it was: no
/// imported, added or removed entry that a reopen would not see.
#[test]
fn a_change_that_cannot_be_saved_is_not_kept_in_memory() {
    let (_dir, path, _) = sample("source.vault");
    let (_backup_dir, backup) = temp_path("backup.vault");
    Vault::open(&path, "pass")
        .unwrap()
        .export(&backup, "backup pass", FAST)
        .unwrap();

    let (target_dir, target) = temp_path("target.vault");
    let mut vault = Vault::create(&target, "other", FAST).unwrap();
    vault.put_secret("github", "ghp_x").unwrap();
    std::fs::remove_dir_all(target_dir.path()).unwrap();

    assert!(vault.import(&backup, "backup pass").is_err());
    assert!(vault.put_secret("new", "value").is_err());
    assert!(vault.remove("github").is_err());
    assert!(vault.change_passphrase("changed", FAST).is_err());
    assert_eq!(vault.secret_names().collect::<Vec<_>>(), ["github"]);
    assert_eq!(vault.secret("github").unwrap().unwrap().expose(), "ghp_x");

    // Once it can be saved again, the old passphrase still opens what was written.
    std::fs::create_dir_all(target_dir.path()).unwrap();
    vault.put_secret("later", "ok").unwrap();
    drop(vault);
    let reopened = Vault::open(&target, "other").unwrap();
    assert_eq!(reopened.secret_names().collect::<Vec<_>>(), ["github", "later"]);
}

#[test]
fn creating_over_an_existing_file_is_refused_and_saves_leave_no_temporary_files() {
    let (_dir, path, _) = sample("exists.vault");
    assert!(matches!(
        Vault::create(&path, "x", FAST),
        Err(Error::AlreadyExists { .. })
    ));
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hostile_kdf_parameters_are_refused_not_obeyed() {
    let (_dir, path, bytes) = sample("hostile.vault");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let hostile = text.replacen("\"iterations\":1000", "\"iterations\":4000000000", 1);
    // The header length changes with the edit; rebuild the length prefix so only the value differs.
    let header_start = 14;
    let header_end = header_start + u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let old_header = &text[header_start..header_end];
    let new_header = old_header.replacen("\"iterations\":1000", "\"iterations\":4000000000", 1);
    assert_ne!(hostile, text);
    let mut edited = bytes[..10].to_vec();
    edited.extend_from_slice(&(new_header.len() as u32).to_be_bytes());
    edited.extend_from_slice(new_header.as_bytes());
    edited.extend_from_slice(&bytes[header_end..]);
    assert!(matches!(
        open_bytes(&path, &edited, "pass"),
        Err(Error::InvalidParameters(_))
    ));
}

#[test]
fn a_vault_made_with_the_default_kdf_opens() {
    let (_path_dir, path) = temp_path("default-kdf.vault");
    let mut vault = Vault::create(&path, "pass", Kdf::default()).unwrap();
    vault.put_secret("k", "v").unwrap();
    drop(vault);
    assert_eq!(
        Vault::open(&path, "pass")
            .unwrap()
            .secret("k")
            .unwrap()
            .unwrap()
            .expose(),
        "v"
    );
}

/// Opening and creating derive the key on a thread of their own: the executor awaiting them keeps
/// running its other tasks.
#[test]
fn async_open_and_create_leave_the_executor_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("async.vault");
    let kdf = Kdf::Pbkdf2Sha256 { iterations: 200_000 };
    let created = std::sync::Mutex::new(None);
    assert!(common::leaves_the_executor_free(async {
        *created.lock().unwrap() = Some(Vault::create_async(&path, "pass", kdf).await.unwrap());
    }));
    let mut vault = created.into_inner().unwrap().unwrap();
    vault.put_secret("k", "v").unwrap();
    drop(vault);
    assert!(common::leaves_the_executor_free(async {
        let vault = Vault::open_async(&path, "pass").await.unwrap();
        assert_eq!(vault.secret("k").unwrap().unwrap().expose(), "v");
    }));
    assert!(matches!(
        futures::executor::block_on(Vault::open_async(&path, "wrong")),
        Err(Error::WrongPassphrase)
    ));
}
