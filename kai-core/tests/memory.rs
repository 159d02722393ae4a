//! Heap held by an idle `Conversation`, measured with a counting allocator. One test per binary, so
//! no other test allocates while it measures.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use kai_core::testing::ScriptedModel;
use kai_core::{Agent, Conversation, tool_fn};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// The agent both measurements talk to: a calculator with an `add` tool.
fn calculator(model: ScriptedModel) -> Agent {
    Agent::builder(model)
        .instructions("You are a calculator.")
        .tool(tool_fn("add", "Adds.", |x: Add| async move { Ok(x.a + x.b) }))
        .build()
        .unwrap()
}

#[test]
fn an_idle_conversation_holds_little_heap() {
    let model = ScriptedModel::new()
        .record_requests(false)
        .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
        .text("2 + 3 = 5")
        .repeat();
    let agent = calculator(model);

    let before = LIVE.load(Ordering::SeqCst);
    let fresh = Box::new(Conversation::new(agent.clone()));
    let fresh_bytes = LIVE.load(Ordering::SeqCst) - before;

    let before = LIVE.load(Ordering::SeqCst);
    let mut chat = Box::new(Conversation::new(agent));
    drop(futures::executor::block_on(chat.send("What is 2 + 3?")).unwrap());
    let after_one_exchange = LIVE.load(Ordering::SeqCst) - before;

    // Ten messages: two tool-using exchanges (four messages each) and one plain one, as the Python
    // bench (`benches/python/conversation_memory.py`) holds them.
    let model = ScriptedModel::new()
        .record_requests(false)
        .tool_call("add", serde_json::json!({"a": 2, "b": 3}))
        .text("2 + 3 = 5")
        .tool_call("add", serde_json::json!({"a": 5, "b": 5}))
        .text("5 + 5 = 10")
        .text("You are welcome.");
    let agent = calculator(model);
    let before = LIVE.load(Ordering::SeqCst);
    let mut chat = Box::new(Conversation::new(agent));
    for input in ["What is 2 + 3?", "And 5 + 5?", "Thanks!"] {
        drop(futures::executor::block_on(chat.send(input)).unwrap());
    }
    let after_ten_messages = LIVE.load(Ordering::SeqCst) - before;
    assert_eq!(chat.history().len(), 10);

    println!(
        "heap per idle Conversation: new {fresh_bytes} B, after one tool-using exchange {after_one_exchange} B, \
         with 10 messages {after_ten_messages} B"
    );
    assert!(fresh_bytes <= 128, "{fresh_bytes}");
    assert!(after_one_exchange < 4096, "{after_one_exchange}");
    assert!(after_ten_messages < 8192, "{after_ten_messages}");
    drop(fresh);
}
