//! The file operations cannot leave the workspace: traversal, absolute paths, symlinks and hard links
//! are refused with a typed error, and nothing outside is read or changed.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::os::unix::fs::{PermissionsExt, symlink};

use kai_exec::{EntryKind, Error, FileLimits, PathRefusal, Workspace};

/// A workspace and, beside it, a directory with a secret file that must stay out of reach.
struct Setup {
    _root: tempfile::TempDir,
    workspace: Workspace,
    secret: std::path::PathBuf,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("workspace")).unwrap();
    std::fs::create_dir(root.path().join("outside")).unwrap();
    let secret = root.path().join("outside/secret.txt");
    std::fs::write(&secret, "the secret").unwrap();
    let workspace = Workspace::open(root.path().join("workspace")).unwrap();
    Setup {
        _root: root,
        workspace,
        secret,
    }
}

fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> PathRefusal {
    match result {
        Err(Error::PathRefused { reason, .. }) => reason,
        other => panic!("expected a refused path, got {other:?}"),
    }
}

#[test]
fn files_are_written_read_listed_and_removed() {
    let setup = setup();
    let workspace = &setup.workspace;
    workspace.write("notes/2026/todo.txt", b"buy milk").unwrap();
    assert_eq!(workspace.read("notes/2026/todo.txt").unwrap(), b"buy milk");
    assert_eq!(workspace.read("./notes//2026/./todo.txt").unwrap(), b"buy milk");

    // A replaced file keeps its permissions, and no temporary file is left behind.
    let on_disk = workspace.path().join("notes/2026/todo.txt");
    std::fs::set_permissions(&on_disk, std::fs::Permissions::from_mode(0o600)).unwrap();
    workspace.write("notes/2026/todo.txt", b"buy bread").unwrap();
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"buy bread");
    assert_eq!(std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o777, 0o600);

    let listing = workspace.list("notes/2026").unwrap();
    assert_eq!(listing.entries.len(), 1, "{listing:?}");
    assert_eq!(listing.entries[0].name, "todo.txt");
    assert_eq!(listing.entries[0].kind, EntryKind::File);
    assert_eq!(listing.entries[0].size, 9);
    let top = workspace.list(".").unwrap();
    assert_eq!(top.entries[0].kind, EntryKind::Directory);

    assert!(
        matches!(workspace.remove("notes"), Err(Error::Io { .. })),
        "a full directory stays"
    );
    workspace.remove("notes/2026/todo.txt").unwrap();
    workspace.remove("notes/2026").unwrap();
    assert!(matches!(
        workspace.read("notes/2026/todo.txt"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(refusal(workspace.read(".")), PathRefusal::Empty);
    assert_eq!(refusal(workspace.read("notes")), PathRefusal::NotAFile);
}

#[test]
fn sizes_are_bounded() {
    let setup = setup();
    let workspace = setup.workspace.with_limits(FileLimits {
        max_read: 10,
        max_write: 20,
        max_entries: 3,
    });
    assert!(matches!(
        workspace.write("big", &[b'x'; 21]),
        Err(Error::TooLarge {
            size: 21,
            limit: 20,
            ..
        })
    ));
    workspace.write("medium", &[b'x'; 15]).unwrap();
    assert!(matches!(
        workspace.read("medium"),
        Err(Error::TooLarge {
            size: 15,
            limit: 10,
            ..
        })
    ));
    for name in ["a", "b", "c"] {
        workspace.write(name, b"").unwrap();
    }
    let listing = workspace.list(".").unwrap();
    assert_eq!(listing.entries.len(), 3);
    assert!(listing.truncated);
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    let setup = setup();
    let workspace = &setup.workspace;
    let escape = format!("../outside/{}", setup.secret.file_name().unwrap().to_str().unwrap());
    assert_eq!(refusal(workspace.read(&escape)), PathRefusal::ParentComponent);
    assert_eq!(
        refusal(workspace.read("a/../../outside/secret.txt")),
        PathRefusal::ParentComponent
    );
    assert_eq!(
        refusal(workspace.read(setup.secret.to_str().unwrap())),
        PathRefusal::Absolute
    );
    assert_eq!(
        refusal(workspace.write("../outside/secret.txt", b"owned")),
        PathRefusal::ParentComponent
    );
    assert_eq!(refusal(workspace.write("/tmp/owned", b"owned")), PathRefusal::Absolute);
    assert_eq!(refusal(workspace.list("..")), PathRefusal::ParentComponent);
    assert_eq!(
        refusal(workspace.remove("../outside/secret.txt")),
        PathRefusal::ParentComponent
    );
    assert_eq!(refusal(workspace.read("a\0b")), PathRefusal::Nul);
    assert_eq!(std::fs::read_to_string(&setup.secret).unwrap(), "the secret");
}

#[test]
fn symlinks_are_never_followed() {
    let setup = setup();
    let workspace = &setup.workspace;
    let outside = setup.secret.parent().unwrap();
    symlink(&setup.secret, workspace.path().join("link-to-file")).unwrap();
    symlink(outside, workspace.path().join("link-to-directory")).unwrap();
    symlink("../outside", workspace.path().join("relative-link")).unwrap();

    assert_eq!(refusal(workspace.read("link-to-file")), PathRefusal::Symlink);
    assert_eq!(
        refusal(workspace.read("link-to-directory/secret.txt")),
        PathRefusal::Symlink
    );
    assert_eq!(
        refusal(workspace.read("relative-link/secret.txt")),
        PathRefusal::Symlink
    );
    assert_eq!(refusal(workspace.list("link-to-directory")), PathRefusal::Symlink);
    // Writing through a link, or over one, changes nothing outside.
    assert_eq!(
        refusal(workspace.write("link-to-directory/secret.txt", b"owned")),
        PathRefusal::Symlink
    );
    assert_eq!(
        refusal(workspace.write("link-to-directory/new.txt", b"owned")),
        PathRefusal::Symlink
    );
    assert_eq!(refusal(workspace.write("link-to-file", b"owned")), PathRefusal::Symlink);
    assert_eq!(std::fs::read_to_string(&setup.secret).unwrap(), "the secret");
    assert!(!outside.join("new.txt").exists());
    // Removing a link removes the link, not its target.
    workspace.remove("link-to-directory").unwrap();
    workspace.remove("link-to-file").unwrap();
    assert!(setup.secret.exists());
    let listing = workspace.list(".").unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].kind, EntryKind::Symlink);
}

#[test]
fn hard_links_to_files_elsewhere_are_refused() {
    let setup = setup();
    let workspace = &setup.workspace;
    std::fs::hard_link(&setup.secret, workspace.path().join("linked.txt")).unwrap();
    assert_eq!(refusal(workspace.read("linked.txt")), PathRefusal::HardLink);
    assert_eq!(refusal(workspace.write("linked.txt", b"owned")), PathRefusal::HardLink);
    assert_eq!(std::fs::read_to_string(&setup.secret).unwrap(), "the secret");
}

#[test]
fn fifos_and_sockets_are_refused_without_blocking() {
    let setup = setup();
    let workspace = &setup.workspace;
    let status = std::process::Command::new("mkfifo")
        .arg(workspace.path().join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO for reading would wait for a writer forever; it is refused at once.
    assert_eq!(refusal(workspace.read("pipe")), PathRefusal::NotAFile);
    assert_eq!(refusal(workspace.write("pipe", b"x")), PathRefusal::NotAFile);
    assert_eq!(workspace.list(".").unwrap().entries[0].kind, EntryKind::Other);
    let _socket = std::os::unix::net::UnixListener::bind(workspace.path().join("socket")).unwrap();
    assert_eq!(refusal(workspace.read("socket")), PathRefusal::NotAFile);
}
