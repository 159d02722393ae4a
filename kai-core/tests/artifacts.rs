//! The artifact store and its tools.
#![cfg(all(feature = "artifacts", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use kai_core::artifacts::{Artifact, ArtifactLimits, ArtifactStore, NewArtifact, Producer, artifact_tools};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, ContentPart, Error, ToolContext, ToolError};
use serde_json::json;

fn blobs(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("blobs")).unwrap().count()
}

fn in_run(run: &str) -> Producer {
    Producer {
        run_id: Some(run.into()),
        ..Producer::default()
    }
}

#[test]
fn artifacts_round_trip_and_share_one_copy_of_equal_content() {
    let directory = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(directory.path()).unwrap();
    let text = store
        .save(NewArtifact::text("notes.txt", "Buy milk.").produced_by(in_run("r1")))
        .unwrap();
    let json = store
        .save(NewArtifact::json("data.json", &json!({"n": 1})).produced_by(in_run("r1")))
        .unwrap();
    let png = store
        .save(
            NewArtifact::binary("dot.png", "image/png", vec![0x89, b'P', b'N', b'G', 0, 0xff])
                .produced_by(in_run("r1"))
                .with_metadata("width", json!(1)),
        )
        .unwrap();
    let again = store
        .save(NewArtifact::text("copy.txt", "Buy milk.").produced_by(in_run("r2")))
        .unwrap();
    assert_eq!(text.sha256, again.sha256);
    assert_ne!(text.id, again.id);
    assert_eq!(blobs(directory.path()), 3);
    assert_eq!(text.id.len(), 64);

    let (record, content) = store.get(&png.id).unwrap();
    assert_eq!(record, png);
    assert_eq!(content, [0x89, b'P', b'N', b'G', 0, 0xff]);
    assert_eq!(record.metadata["width"], 1);
    assert_eq!(store.get(&json.id).unwrap().1, br#"{"n":1}"#);
    let listed: Vec<String> = store.list(Some("r1")).unwrap().into_iter().map(|a| a.id).collect();
    let mut expected = vec![text.id.clone(), json.id.clone(), png.id.clone()];
    expected.sort_by_key(|id| {
        let record = store.artifact(id).unwrap();
        (record.created_ms, record.id)
    });
    assert_eq!(listed, expected);
    assert_eq!(store.list(Some("r2")).unwrap().len(), 1);
    assert!(store.list(Some("nobody")).unwrap().is_empty());

    // A second process cannot write beside this one; after it closes, the store opens with everything.
    assert!(matches!(
        ArtifactStore::open(directory.path()),
        Err(Error::Storage { .. })
    ));
    drop(store);
    let store = ArtifactStore::open(directory.path()).unwrap();
    assert_eq!(store.get(&text.id).unwrap().1, b"Buy milk.");
}

#[test]
fn limits_per_artifact_and_per_run_refuse_with_nothing_written_and_survive_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let limits = ArtifactLimits {
        max_artifact_bytes: 10,
        max_run_bytes: 15,
        max_run_artifacts: 3,
    };
    let store = ArtifactStore::open(directory.path()).unwrap().with_limits(limits);
    let too_big = store.save(NewArtifact::text("big", "x".repeat(11))).unwrap_err();
    assert_eq!(blobs(directory.path()), 0);
    assert_eq!(
        too_big,
        Error::LimitExceeded {
            limit: "artifact_bytes".into(),
            requested: 11,
            max: 10
        }
    );
    assert_eq!(blobs(directory.path()), 0);
    store
        .save(NewArtifact::text("a", "0123456789").produced_by(in_run("r")))
        .unwrap();
    let over_run = store
        .save(NewArtifact::text("b", "abcdef").produced_by(in_run("r")))
        .unwrap_err();
    assert_eq!(blobs(directory.path()), 1, "a refused artifact was written");
    assert_eq!(
        over_run,
        Error::LimitExceeded {
            limit: "run_bytes".into(),
            requested: 16,
            max: 15
        }
    );
    // Other runs have their own budgets.
    store
        .save(NewArtifact::text("b", "abcdef").produced_by(in_run("other")))
        .unwrap();
    drop(store);

    // Reopened, the store counts what the run saved before.
    let store = ArtifactStore::open(directory.path()).unwrap().with_limits(limits);
    assert!(matches!(
        store.save(NewArtifact::text("c", "abcdef").produced_by(in_run("r"))),
        Err(Error::LimitExceeded { limit, .. }) if limit == "run_bytes"
    ));
    store
        .save(NewArtifact::text("c", "x").produced_by(in_run("r")))
        .unwrap();
    store
        .save(NewArtifact::text("d", "y").produced_by(in_run("r")))
        .unwrap();
    assert!(matches!(
        store.save(NewArtifact::text("e", "z").produced_by(in_run("r"))),
        Err(Error::LimitExceeded { limit, requested: 4, max: 3 }) if limit == "run_artifacts"
    ));
    assert_eq!(store.list(Some("r")).unwrap().len(), 3);
}

#[test]
fn artifacts_that_are_not_what_they_say_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(directory.path()).unwrap();
    let cases = [
        NewArtifact::binary("a", "not a mime type", b"x".to_vec()),
        NewArtifact::binary("a", "text/plain\r\nX-Evil: 1", b"x".to_vec()),
        NewArtifact::binary("a", "text/plain", vec![0xff, 0xfe]),
        NewArtifact::binary("a", "application/json", b"{\"open\":".to_vec()),
        NewArtifact::binary("a", "application/ld+json", b"{} {}".to_vec()),
        NewArtifact::text("", "x"),
        NewArtifact::text("a\nb", "x"),
        NewArtifact::text("n".repeat(256), "x"),
        NewArtifact::text("a", "x").with_metadata("big", json!("m".repeat(20_000))),
    ];
    for artifact in cases {
        let shown = format!("{:?} {:?}", artifact.name, artifact.mime_type);
        assert!(
            matches!(store.save(artifact), Err(Error::InvalidArtifact { .. })),
            "{shown}"
        );
    }
    assert_eq!(blobs(directory.path()), 0);
    store
        .save(NewArtifact::binary(
            "ok.csv",
            "Text/CSV; charset=utf-8",
            b"a,b\n".to_vec(),
        ))
        .unwrap();
}

#[test]
fn damaged_and_forged_files_are_reported_not_trusted() {
    let directory = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(directory.path()).unwrap();
    let saved = store.save(NewArtifact::text("a.txt", "original")).unwrap();
    let blob = directory.path().join("blobs").join(&saved.sha256);

    // The content changed on disk: reading it says so, and saving that content again repairs it.
    std::fs::write(&blob, "tampered").unwrap();
    assert!(matches!(store.get(&saved.id), Err(Error::Storage { .. })));
    store.save(NewArtifact::text("b.txt", "original")).unwrap();
    assert_eq!(store.get(&saved.id).unwrap().1, b"original");
    // Grown past its recorded size (sparse, 1 TiB): refused from its length, not read.
    std::fs::File::create(&blob).unwrap().set_len(1 << 40).unwrap();
    assert!(matches!(store.get(&saved.id), Err(Error::Storage { .. })));
    // A FIFO or a link in its place is refused at once, never waited on or followed.
    std::fs::remove_file(&blob).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&blob)
            .status()
            .unwrap()
            .success()
    );
    assert!(matches!(store.get(&saved.id), Err(Error::Storage { .. })));
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &blob).unwrap();
    assert!(matches!(store.get(&saved.id), Err(Error::Storage { .. })));
    std::fs::remove_file(&blob).unwrap();
    store.save(NewArtifact::text("c.txt", "original")).unwrap();

    // Ids are checked before they become paths.
    for id in [
        "../../etc/passwd",
        "",
        &"a".repeat(63),
        &"G".repeat(64),
        &saved.id.to_uppercase(),
    ] {
        assert!(matches!(store.get(id), Err(Error::NotFound { .. })), "{id}");
    }
    let record = directory
        .path()
        .join("runs")
        .join(&saved.id[..32])
        .join(format!("{}.json", saved.id));
    std::fs::write(&record, "{not json").unwrap();
    assert!(matches!(store.artifact(&saved.id), Err(Error::Storage { .. })));
    std::fs::File::create(&record).unwrap().set_len(1 << 20).unwrap();
    assert!(matches!(store.artifact(&saved.id), Err(Error::Storage { .. })));
    // Records that point their hash at a path, claim a size the store never takes, or claim another
    // run (to reach its content) are refused.
    let forgeries = [
        Artifact {
            sha256: format!("../../../../etc/passwd{}", "0".repeat(42)),
            ..saved.clone()
        },
        Artifact {
            size: u64::MAX,
            ..saved.clone()
        },
        Artifact {
            producer: in_run("victim"),
            ..saved.clone()
        },
    ];
    for forged in forgeries {
        std::fs::write(&record, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert!(matches!(store.get(&saved.id), Err(Error::Storage { .. })), "{forged:?}");
    }
}

#[tokio::test]
async fn an_agent_saves_artifacts_and_its_run_alone_reads_them() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(directory.path()).unwrap());
    let tools = artifact_tools(Arc::clone(&store)).unwrap();
    let model = ScriptedModel::new()
        .tool_calls([
            (
                "save_artifact",
                json!({"name": "summary.md", "mime_type": "text/markdown", "content": "# Done"}),
            ),
            (
                "save_artifact",
                json!({"name": "pixel.png", "mime_type": "image/png", "content": "iVBORw0KGgo=", "base64": true}),
            ),
        ])
        .text("Saved both.");
    let agent = Agent::builder(model).tools(&tools).build().unwrap();
    let output = agent.run("Write it up.").await.unwrap();
    assert_eq!(output.answer, "Saved both.");
    let results: Vec<serde_json::Value> = output
        .messages
        .iter()
        .flat_map(|message| &message.content)
        .filter_map(|part| match part {
            ContentPart::ToolResult(result) => Some(serde_json::from_str(&result.content).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 2);
    // The two calls ran at once: find each result by its artifact's name.
    let id_of = |name: &str| {
        results
            .iter()
            .find(|result| result["name"] == name)
            .and_then(|result| result["id"].as_str())
            .unwrap()
            .to_owned()
    };
    let markdown_id = id_of("summary.md");
    let (record, content) = store.get(&markdown_id).unwrap();
    assert_eq!(content, b"# Done");
    assert_eq!(record.producer.tool.as_deref(), Some("save_artifact"));
    assert_eq!(record.producer.step, Some(1));
    let run_id = record.producer.run_id.clone().expect("no run id recorded");
    let png_id = &id_of("pixel.png");
    assert_eq!(store.get(png_id).unwrap().1, b"\x89PNG\r\n\x1a\n");

    // The same run reads and lists them; another run sees nothing of them.
    let read = tools.get("read_artifact").unwrap();
    let same_run = ToolContext::new("c1").with_run_id(&run_id);
    let answer = read.call(json!({"id": markdown_id}), same_run.clone()).await.unwrap();
    assert_eq!(answer["content"], "# Done");
    assert_eq!(answer["base64"], false);
    let answer = read.call(json!({"id": png_id}), same_run.clone()).await.unwrap();
    assert_eq!(answer["content"], "iVBORw0KGgo=");
    assert_eq!(answer["base64"], true);
    let listed = tools
        .get("list_artifacts")
        .unwrap()
        .call(json!({}), same_run)
        .await
        .unwrap();
    assert_eq!(listed["artifacts"].as_array().unwrap().len(), 2);
    let other_run = ToolContext::new("c2").with_run_id("someone-else");
    let refused = read
        .call(json!({"id": markdown_id}), other_run.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ToolError::Failed { message } if message.contains("nothing is named")),
        "{refused:?}"
    );
    let listed = tools
        .get("list_artifacts")
        .unwrap()
        .call(json!({}), other_run)
        .await
        .unwrap();
    assert_eq!(listed, json!({"artifacts": []}));
    // A model's mistakes come back as tool errors it can read.
    let save = tools.get("save_artifact").unwrap();
    let bad = save
        .call(
            json!({"name": "x.bin", "mime_type": "application/octet-stream", "content": "not base64!", "base64": true}),
            ToolContext::new("c3").with_run_id(&run_id),
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, ToolError::InvalidArguments { .. }), "{bad:?}");
}

#[tokio::test]
async fn reading_a_large_artifact_gives_the_model_a_bounded_part() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(directory.path()).unwrap());
    let big = "é".repeat(40_000);
    let saved = store
        .save(NewArtifact::text("big.txt", big.clone()).produced_by(in_run("r")))
        .unwrap();
    let tools = artifact_tools(store).unwrap();
    let answer = tools
        .get("read_artifact")
        .unwrap()
        .call(json!({"id": saved.id}), ToolContext::new("c").with_run_id("r"))
        .await
        .unwrap();
    let shown = answer["content"].as_str().unwrap();
    assert!(shown.len() <= kai_core::artifacts::MAX_READ_BYTES);
    assert_eq!(answer["cut_bytes"].as_u64().unwrap() as usize, big.len() - shown.len());
}

#[tokio::test]
async fn tools_refuse_calls_without_a_run_and_never_read_another_runs_records() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(directory.path()).unwrap());
    // Saved by the host outside any run: no tool can reach it.
    let host = store.save(NewArtifact::text("host.txt", "private")).unwrap();
    let victim = store
        .save(NewArtifact::text("v.txt", "theirs").produced_by(in_run("victim")))
        .unwrap();
    let tools = artifact_tools(Arc::clone(&store)).unwrap();
    let no_run = ToolContext::new("c");
    for (tool, arguments) in [
        (
            "save_artifact",
            json!({"name": "a", "mime_type": "text/plain", "content": "x"}),
        ),
        ("read_artifact", json!({"id": host.id})),
        ("list_artifacts", json!({})),
    ] {
        let refused = tools
            .get(tool)
            .unwrap()
            .call(arguments, no_run.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, ToolError::Failed { message } if message.contains("no run id")),
            "{tool}: {refused:?}"
        );
    }
    // Another run's record, even damaged, is "nothing" to this run: the store is not read.
    let record = directory
        .path()
        .join("runs")
        .join(&victim.id[..32])
        .join(format!("{}.json", victim.id));
    std::fs::write(&record, "{damaged").unwrap();
    let attacker = ToolContext::new("c").with_run_id("attacker");
    let refused = tools
        .get("read_artifact")
        .unwrap()
        .call(json!({"id": victim.id}), attacker.clone())
        .await
        .unwrap_err();
    let shown = format!("{refused:?}");
    assert!(
        shown.contains("nothing is named") && !shown.contains(directory.path().to_str().unwrap()),
        "{shown}"
    );
    // A failure of the attacker's own store reads is reported without host paths.
    let own = tools
        .get("save_artifact")
        .unwrap()
        .call(
            json!({"name": "o.bin", "mime_type": "application/octet-stream", "content": "AAEC", "base64": true}),
            attacker.clone(),
        )
        .await
        .unwrap();
    let own_record = directory
        .path()
        .join("runs")
        .join(&own["id"].as_str().unwrap()[..32])
        .join(format!("{}.json", own["id"].as_str().unwrap()));
    std::fs::write(&own_record, "{damaged").unwrap();
    let failed = tools
        .get("read_artifact")
        .unwrap()
        .call(json!({"id": own["id"]}), attacker)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, ToolError::Failed { message } if message == "the artifact store failed"),
        "{failed:?}"
    );
}

#[test]
fn one_runs_limit_holds_under_parallel_saves() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(
        ArtifactStore::open(directory.path())
            .unwrap()
            .with_limits(ArtifactLimits {
                max_run_artifacts: 5,
                ..ArtifactLimits::default()
            }),
    );
    let saved: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    store
                        .save(NewArtifact::text("p", format!("content {i}")).produced_by(in_run("busy")))
                        .is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
    });
    assert_eq!(saved, 5);
    assert_eq!(store.list(Some("busy")).unwrap().len(), 5);
    assert_eq!(blobs(directory.path()), 5);
}

#[test]
fn deleting_and_collecting_garbage_keep_shared_contents() {
    let directory = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(directory.path())
        .unwrap()
        .with_limits(ArtifactLimits {
            max_run_artifacts: 2,
            ..ArtifactLimits::default()
        });
    let first = store
        .save(NewArtifact::text("a", "same").produced_by(in_run("r")))
        .unwrap();
    let second = store
        .save(NewArtifact::text("b", "same").produced_by(in_run("r")))
        .unwrap();
    store.delete(&first.id).unwrap();
    assert!(matches!(store.get(&first.id), Err(Error::NotFound { .. })));
    assert_eq!(
        store.get(&second.id).unwrap().1,
        b"same",
        "a shared content was removed"
    );
    // The deleted artifact no longer counts against its run.
    store
        .save(NewArtifact::text("c", "other").produced_by(in_run("r")))
        .unwrap();
    store.delete(&second.id).unwrap();
    assert_eq!(blobs(directory.path()), 1);
    assert!(matches!(store.delete(&second.id), Err(Error::NotFound { .. })));
    // A content without a record (a crash between the two writes) is collected.
    std::fs::write(directory.path().join("blobs").join("0".repeat(64)), "orphan").unwrap();
    assert_eq!(store.collect_garbage().unwrap(), 1);
    assert_eq!(blobs(directory.path()), 1);
}

#[test]
fn names_that_could_escape_a_folder_or_fool_a_reader_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open(directory.path()).unwrap();
    for name in [
        "a/b",
        "..",
        ".",
        "c:\\x",
        "invoice\u{202e}fdp.exe",
        "zero\u{200b}width",
        "bom\u{feff}",
    ] {
        assert!(
            matches!(
                store.save(NewArtifact::text(name, "x")),
                Err(Error::InvalidArtifact { .. })
            ),
            "{name:?}"
        );
    }
    store.save(NewArtifact::text("résumé (final).md", "x")).unwrap();
}

#[tokio::test]
async fn base64_is_read_as_models_write_it() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(directory.path()).unwrap());
    let tools = artifact_tools(Arc::clone(&store)).unwrap();
    let context = ToolContext::new("c").with_run_id("r");
    for content in ["AAEC/w==", "AAEC/w", "AAEC_w", "AA\nEC/w=="] {
        let saved = tools
            .get("save_artifact")
            .unwrap()
            .call(
                json!({"name": "b.bin", "mime_type": "application/octet-stream", "content": content, "base64": true}),
                context.clone(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get(saved["id"].as_str().unwrap()).unwrap().1,
            [0, 1, 2, 255],
            "{content}"
        );
    }
}
