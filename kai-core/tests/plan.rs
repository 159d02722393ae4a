//! Plans on the scripted model: diamonds, limits, retries, re-plans, cancellation, deadlines,
//! approvals, and resuming after a crash.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use kai_core::plan::{
    LlmPlanner, Plan, PlanEvent, PlanExecutor, PlanFile, PlanLimits, PlanProblem, PlanRequest, PlanState, Planner,
    RetryPolicy, Subtask, SubtaskStatus, WorkerInfo,
};
use kai_core::testing::ScriptedModel;
use kai_core::{Agent, CancellationToken, Error, RunOptions, Tool, ToolContext, Usage, dynamic_tool};
use serde_json::json;

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

fn tool_of(tool: Result<kai_core::DynamicTool, Error>) -> Arc<dyn Tool> {
    Arc::new(tool.unwrap())
}

fn agent(model: &ScriptedModel, name: &str) -> Agent {
    Agent::builder(model.clone()).name(name).build().unwrap()
}

/// No waiting between attempts, so retries are quick to test.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    }
}

fn diamond() -> Plan {
    Plan::new([
        Subtask::new("a", "Find the numbers.").on("w_a"),
        Subtask::new("b", "Add them.").after(["a"]).on("w_b"),
        Subtask::new("c", "Multiply them.").after(["a"]).on("w_c"),
        Subtask::new("d", "Report both.").after(["b", "c"]).on("w_d"),
    ])
}

/// The text of the first message (the input) of a model's `n`th request.
fn input_of(model: &ScriptedModel, n: usize) -> String {
    model.requests()[n].messages.first().unwrap().text()
}

#[tokio::test]
async fn a_diamond_runs_its_middle_subtasks_at_once_and_passes_results_down() {
    // b and c each wait at a two-party barrier inside a tool: the plan finishes only if they run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let meet = {
        let barrier = Arc::clone(&barrier);
        tool_of(dynamic_tool(
            "meet",
            "Waits for the other branch.",
            json!({"type": "object"}),
            move |_, _| {
                let barrier = Arc::clone(&barrier);
                async move {
                    barrier.wait().await;
                    Ok(json!("met"))
                }
            },
        ))
    };
    let model_a = ScriptedModel::new().text("2 and 3").usage(usage(10, 1));
    let model_b = ScriptedModel::new()
        .tool_call("meet", json!({}))
        .usage(usage(20, 2))
        .text("5")
        .usage(usage(30, 3));
    let model_c = ScriptedModel::new()
        .tool_call("meet", json!({}))
        .usage(usage(20, 2))
        .text("6")
        .usage(usage(30, 3));
    let model_d = ScriptedModel::new().text("sum 5, product 6").usage(usage(40, 4));
    let with_meet = |model: &ScriptedModel, name: &str| {
        Agent::builder(model.clone())
            .name(name)
            .shared_tool(meet.clone())
            .build()
            .unwrap()
    };
    let executor = PlanExecutor::builder(agent(&model_a, "w_a"))
        .worker("w_b", "adds", with_meet(&model_b, "w_b"))
        .worker("w_c", "multiplies", with_meet(&model_c, "w_c"))
        .worker("w_d", "reports", agent(&model_d, "w_d"))
        .max_concurrency(2)
        .build()
        .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        executor.resume(PlanState::with_plan("Numbers", diamond())),
    )
    .await
    .expect("b and c did not run at once")
    .unwrap();

    assert_eq!(output.answer, "sum 5, product 6");
    let ids: Vec<&str> = output.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(output.results[1].output, "5");
    assert_eq!(output.results[1].usage, usage(50, 5));
    assert_eq!(output.results[1].steps, 2);
    assert_eq!(output.results[3].attempts, 1);
    assert_eq!(output.usage, usage(150, 15));
    // Each subtask sees the goal, its description and its dependencies' results, and nothing else's.
    let b_input = input_of(&model_b, 0);
    assert!(b_input.starts_with("Add them."), "{b_input}");
    assert!(b_input.contains("larger goal: Numbers"), "{b_input}");
    assert!(b_input.contains("### a: Find the numbers.\n\n2 and 3"), "{b_input}");
    let d_input = input_of(&model_d, 0);
    assert!(d_input.contains("### b: Add them.\n\n5"), "{d_input}");
    assert!(d_input.contains("### c: Multiply them.\n\n6"), "{d_input}");
    assert!(!d_input.contains("2 and 3"), "{d_input}");
}

#[tokio::test]
async fn the_concurrency_limit_holds() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let work = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        tool_of(dynamic_tool(
            "work",
            "Works a while.",
            json!({"type": "object"}),
            move |_, _| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(json!("done"))
                }
            },
        ))
    };
    let mut builder: Option<kai_core::plan::PlanExecutorBuilder> = None;
    let mut subtasks = Vec::new();
    for i in 0..6 {
        let model = ScriptedModel::new().tool_call("work", json!({})).text(format!("r{i}"));
        let worker = Agent::builder(model).shared_tool(work.clone()).build().unwrap();
        let name = format!("w{i}");
        subtasks.push(Subtask::new(format!("s{i}"), "Work.").on(&name));
        builder = Some(match builder {
            None => PlanExecutor::builder(worker.clone()).worker(&name, "works", worker),
            Some(b) => b.worker(&name, "works", worker),
        });
    }
    let executor = builder.unwrap().max_concurrency(3).build().unwrap();
    let output = executor
        .resume(PlanState::with_plan("Work", Plan::new(subtasks)))
        .await
        .unwrap();
    assert_eq!(output.results.len(), 6);
    assert_eq!(most.load(Ordering::SeqCst), 3);
    // Six independent subtasks: the answer lists each under its id.
    assert!(
        output.answer.starts_with("## s0\n\nr0\n\n## s1\n\nr1"),
        "{}",
        output.answer
    );
}

/// A tool that counts its calls.
fn counter(name: &str, calls: &Arc<AtomicUsize>) -> Arc<dyn Tool> {
    let calls = Arc::clone(calls);
    tool_of(dynamic_tool(name, "Counts.", json!({"type": "object"}), move |_, _| {
        let calls = Arc::clone(&calls);
        async move { Ok(json!(calls.fetch_add(1, Ordering::SeqCst) + 1)) }
    }))
}

#[tokio::test]
async fn failures_are_retried_transient_ones_continuing_their_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new()
        .text("1 and 2")
        // b: a tool call, then a server error (transient, so the run continues), then its answer.
        .tool_call("count", json!({}))
        .fail(Error::Server {
            status: Some(503),
            message: "busy".into(),
        })
        .text("3");
    let executor = one_at_a_time_counting(&model, &calls, 3);
    let plan = Plan::new([
        Subtask::new("a", "Find numbers."),
        Subtask::new("b", "Add them.").after(["a"]),
    ]);
    let events: Vec<PlanEvent> = executor
        .stream_with(PlanState::with_plan("Add", plan), RunOptions::default())
        .map(|event| event.unwrap())
        .collect()
        .await;
    let failed: Vec<&PlanEvent> = events
        .iter()
        .filter(|e| matches!(e, PlanEvent::SubtaskFailed { .. }))
        .collect();
    assert!(
        matches!(failed.as_slice(), [PlanEvent::SubtaskFailed { id, attempt: 1, retry_in_ms: Some(0), error: Error::Server { .. } }] if id == "b"),
        "{failed:?}"
    );
    let Some(PlanEvent::Finished { output }) = events.last() else {
        panic!("no Finished event last: {events:?}");
    };
    assert_eq!(output.answer, "3");
    assert_eq!(output.results[1].attempts, 2);
    // The retry continued the run that failed, its tool call's result kept, the tool not called again.
    let requests = model.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[3].messages, requests[2].messages);
    assert_eq!(requests[3].messages.len(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_subtask_that_keeps_failing_stops_the_plan_with_its_error_and_keeps_what_is_done() {
    let bad_answer = || Error::MalformedResponse {
        message: "garbage".into(),
        snippet: "<html>".into(),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new()
        .text("done a")
        .tool_call("count", json!({}))
        .fail(bad_answer())
        .fail(bad_answer());
    let executor = one_at_a_time_counting(&model, &calls, 2);
    let plan = Plan::new([
        Subtask::new("a", "First."),
        Subtask::new("b", "Second.").after(["a"]),
        Subtask::new("c", "Third.").after(["b"]),
    ]);
    let failure = executor
        .resume(PlanState::with_plan("Three steps", plan))
        .await
        .unwrap_err();
    assert!(
        matches!(&failure.error, Error::SubtaskFailed { subtask, attempts: 2, error } if subtask == "b" && error.kind() == "malformed_response"),
        "{failure:?}"
    );
    assert_eq!(failure.kind(), "subtask_failed");
    assert_eq!(failure.state.output("a"), Some("done a"));
    assert!(matches!(failure.state.record("b").status, SubtaskStatus::Failed { .. }));
    assert!(!failure.state.subtasks.contains_key("c"));
    // A malformed answer is not transient: the retry started afresh from the subtask's input.
    let requests = model.requests();
    assert_eq!(requests[2].messages.len(), 3);
    assert_eq!(requests[3].messages.len(), 1);
    assert_eq!(requests[3].messages, requests[1].messages);
    // Refusals are not retried at all.
    let refused = ScriptedModel::new().fail(Error::Authentication {
        message: "bad key".into(),
    });
    let executor = PlanExecutor::builder(agent(&refused, "worker"))
        .retry(quick_retries(5))
        .build()
        .unwrap();
    let failure = executor
        .resume(PlanState::with_plan("x", Plan::new([Subtask::new("a", "Go.")])))
        .await
        .unwrap_err();
    assert!(
        matches!(failure.error, Error::SubtaskFailed { attempts: 1, .. }),
        "{failure:?}"
    );
}

/// An executor running one subtask at a time, with `attempts` quick attempts, on a worker of `model`
/// with the `count` tool.
fn one_at_a_time_counting(model: &ScriptedModel, calls: &Arc<AtomicUsize>, attempts: u32) -> PlanExecutor {
    let worker = Agent::builder(model.clone())
        .shared_tool(counter("count", calls))
        .build()
        .unwrap();
    PlanExecutor::builder(worker)
        .max_concurrency(1)
        .retry(quick_retries(attempts))
        .build()
        .unwrap()
}

fn plan_call(subtasks: serde_json::Value) -> ScriptedModel {
    ScriptedModel::new().tool_call("final_result", json!({ "subtasks": subtasks }))
}

#[tokio::test]
async fn after_a_failure_the_rest_is_planned_again_on_what_is_done() {
    let planner_model = plan_call(json!([
        {"id": "fetch", "description": "Fetch the data."},
        {"id": "parse", "description": "Parse it as XML.", "depends_on": ["fetch"]},
    ]))
    .tool_call(
        "final_result",
        json!({"subtasks": [{"id": "parse_json", "description": "Parse it as JSON.", "depends_on": ["fetch"]}]}),
    );
    let worker_model = ScriptedModel::new()
        .text("{\"n\": 7}")
        .fail(Error::InvalidRequest {
            message: "not XML".into(),
        })
        .text("n is 7");
    let executor = PlanExecutor::builder(agent(&worker_model, "worker"))
        .planner(LlmPlanner::new(agent(&planner_model, "planner")))
        .max_concurrency(1)
        .retry(quick_retries(1))
        .build()
        .unwrap();
    let events: Vec<PlanEvent> = executor
        .stream_with(PlanState::new("Read the data"), RunOptions::default())
        .map(|event| event.unwrap())
        .collect()
        .await;
    let replanned: Vec<&PlanEvent> = events
        .iter()
        .filter(|e| matches!(e, PlanEvent::Replanned { .. }))
        .collect();
    assert!(
        matches!(replanned.as_slice(), [PlanEvent::Replanned { failed, replan: 1, plan }] if failed == "parse" && plan.subtasks.len() == 2),
        "{replanned:?}"
    );
    let Some(PlanEvent::Finished { output }) = events.last() else {
        panic!("no Finished event last");
    };
    assert_eq!(output.answer, "n is 7");
    let ids: Vec<&str> = output.results.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "parse_json"]);
    assert_eq!(output.state.replans, 1);
    assert_eq!(output.state.replaced.len(), 1);
    assert_eq!(output.state.replaced[0].subtask.id, "parse");
    // The re-plan request told the planner what is done, its result, and why the subtask failed.
    let replan_input = input_of(&planner_model, 1);
    assert!(
        replan_input.contains("- fetch: Fetch the data.\n  Result: {\"n\": 7}"),
        "{replan_input}"
    );
    assert!(
        replan_input.contains("Failed subtask: parse: Parse it as XML."),
        "{replan_input}"
    );
    assert!(replan_input.contains("not XML"), "{replan_input}");
    // `fetch` ran once; the new subtask built on its result.
    assert_eq!(worker_model.requests().len(), 3);
    assert!(input_of(&worker_model, 2).contains("{\"n\": 7}"));
    assert!(output.state.planning_usage.total_tokens() > 0);
}

#[tokio::test]
async fn the_planner_repairs_plans_that_cannot_run_and_names_the_problem_when_it_cannot() {
    let cycle = json!([
        {"id": "a", "description": "x", "depends_on": ["b"]},
        {"id": "b", "description": "y", "depends_on": ["a"]},
    ]);
    let model = plan_call(cycle.clone()).tool_call(
        "final_result",
        json!({"subtasks": [{"id": "a", "description": "x"}, {"id": "b", "description": "y", "depends_on": ["a"]}]}),
    );
    let planner = LlmPlanner::new(agent(&model, "planner"));
    let workers = vec![WorkerInfo {
        name: "worker".into(),
        description: "does things".into(),
        tools: vec!["search".into()],
    }];
    let request = PlanRequest::new("Goal", workers.clone());
    let planned = planner.plan(&request).await.unwrap();
    assert_eq!(planned.plan.subtasks[1].depends_on, ["a"]);
    let repair = &model.requests()[1];
    let shown = format!("{:?}", repair.messages.last().unwrap());
    assert!(shown.contains("depend on each other in a cycle"), "{shown}");
    // The prompt lists the workers and their tools.
    assert!(input_of(&model, 0).contains("- worker: does things (tools: search)"));

    // Out of repairs: the problem comes back typed.
    let model = plan_call(cycle.clone())
        .tool_call("final_result", json!({"subtasks": cycle}))
        .tool_call(
            "final_result",
            json!({"subtasks": [{"id": "a", "description": "x", "agent": "nobody"}]}),
        );
    let planner = LlmPlanner::new(agent(&model, "planner"));
    let error = planner.plan(&request).await.unwrap_err();
    assert_eq!(
        error,
        Error::InvalidPlan {
            problem: PlanProblem::UnknownAgent {
                subtask: "a".into(),
                agent: "nobody".into()
            }
        }
    );
    // Tools the worker lacks are refused too.
    let tools = kai_core::plan::Plan::new([Subtask::new("a", "x").with_tools(["delete_everything"])]);
    assert_eq!(
        request.check(&tools),
        Err(PlanProblem::UnknownTool {
            subtask: "a".into(),
            tool: "delete_everything".into()
        })
    );
}

#[tokio::test]
async fn an_executor_checks_what_any_planner_returns() {
    struct Careless;
    #[kai_core::async_trait]
    impl Planner for Careless {
        async fn plan(&self, _request: &PlanRequest) -> Result<kai_core::plan::Planned, Error> {
            Ok(kai_core::plan::Planned {
                plan: Plan::new([Subtask::new("a", "x").after(["ghost"])]),
                usage: Usage::default(),
            })
        }
    }
    let model = ScriptedModel::new();
    let executor = PlanExecutor::builder(agent(&model, "worker"))
        .planner(Careless)
        .build()
        .unwrap();
    let failure = executor.run("Goal").await.unwrap_err();
    assert!(
        matches!(
            failure.error,
            Error::InvalidPlan {
                problem: PlanProblem::DanglingDependency { .. }
            }
        ),
        "{failure:?}"
    );
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn a_subtask_gets_only_the_tools_it_is_allowed() {
    let noop = |name: &str| {
        tool_of(dynamic_tool(
            name,
            "Does nothing.",
            json!({"type": "object"}),
            |_, _| async { Ok(json!("ok")) },
        ))
    };
    let model = ScriptedModel::new().text("done");
    let worker = Agent::builder(model.clone())
        .shared_tool(noop("read"))
        .shared_tool(noop("write"))
        .build()
        .unwrap();
    let executor = PlanExecutor::builder(worker).build().unwrap();
    let plan = Plan::new([Subtask::new("a", "Read only.").with_tools(["read"])]);
    executor.resume(PlanState::with_plan("g", plan)).await.unwrap();
    let offered: Vec<String> = model.requests()[0].tools.iter().map(|t| t.name.clone()).collect();
    assert_eq!(offered, ["read"]);
}

/// A tool that never returns, and a flag set when its cancellation token fires.
fn stuck_tool(cancelled: &Arc<AtomicUsize>) -> Arc<dyn Tool> {
    let cancelled = Arc::clone(cancelled);
    tool_of(dynamic_tool(
        "stuck",
        "Never returns.",
        json!({"type": "object"}),
        move |_, context: ToolContext| {
            let cancelled = Arc::clone(&cancelled);
            async move {
                context.cancel.cancelled().await;
                cancelled.fetch_add(1, Ordering::SeqCst);
                futures::future::pending::<()>().await;
                Ok(json!("unreachable"))
            }
        },
    ))
}

#[tokio::test]
async fn cancelling_stops_the_plan_and_its_tools_and_keeps_what_is_done() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new().text("a done").tool_call("stuck", json!({}));
    let worker = Agent::builder(model.clone())
        .shared_tool(stuck_tool(&cancelled))
        .build()
        .unwrap();
    let executor = PlanExecutor::builder(worker).max_concurrency(1).build().unwrap();
    let plan = Plan::new([Subtask::new("a", "First."), Subtask::new("b", "Hang.").after(["a"])]);
    let token = CancellationToken::new();
    let mut events = executor.stream_with(PlanState::with_plan("g", plan), RunOptions::cancel_on(token.clone()));
    let mut failure = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(PlanEvent::Subtask {
                id,
                event: kai_core::AgentEvent::ToolCallStarted { .. },
            }) if id == "b" => {
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    token.cancel();
                });
            }
            Ok(_) => {}
            Err(error) => failure = Some(error),
        }
    }
    let failure = failure.expect("the plan did not stop");
    assert_eq!(failure.error, Error::Cancelled);
    assert_eq!(failure.state.output("a"), Some("a done"));
    assert!(matches!(
        failure.state.record("b").status,
        SubtaskStatus::Interrupted { .. }
    ));
    assert_eq!(cancelled.load(Ordering::SeqCst), 1, "the tool did not see the cancel");
}

#[tokio::test]
async fn a_deadline_stops_the_plan_keeping_each_run_where_it_stood() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let model = ScriptedModel::new()
        .text("a done")
        .tool_call("count", json!({}))
        .tool_call("stuck", json!({}));
    let worker = Agent::builder(model)
        .shared_tool(stuck_tool(&cancelled))
        .shared_tool(counter("count", &calls))
        .build()
        .unwrap();
    let executor = PlanExecutor::builder(worker)
        .deadline(Duration::from_millis(200))
        .max_concurrency(1)
        .build()
        .unwrap();
    let plan = Plan::new([
        Subtask::new("a", "First."),
        Subtask::new("b", "Count, then hang.").after(["a"]),
    ]);
    let failure = executor.resume(PlanState::with_plan("g", plan)).await.unwrap_err();
    assert_eq!(failure.error, Error::DeadlineExceeded);
    assert_eq!(cancelled.load(Ordering::SeqCst), 1, "the tool did not see the stop");
    assert_eq!(failure.state.output("a"), Some("a done"));
    let record = failure.state.record("b");
    assert_eq!(record.attempts, 1);
    assert!(record.usage.total_tokens() > 0, "the stopped attempt's usage was lost");
    let SubtaskStatus::Interrupted { run } = record.status else {
        panic!("b is not kept where it stood: {:?}", record.status);
    };
    // Resumed, b goes on from its run: the unfinished call runs again (this time it returns), the
    // counting call, which finished, does not.
    let model = ScriptedModel::new().text("b done");
    let unstuck = tool_of(dynamic_tool(
        "stuck",
        "Returns.",
        json!({"type": "object"}),
        |_, _| async { Ok(json!("unstuck")) },
    ));
    let worker = Agent::builder(model.clone())
        .shared_tool(unstuck)
        .shared_tool(counter("count", &calls))
        .build()
        .unwrap();
    let output = PlanExecutor::builder(worker)
        .build()
        .unwrap()
        .resume(*failure.state)
        .await
        .unwrap();
    assert_eq!(output.answer, "b done");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(model.requests()[0].messages.len(), run.messages.len() + 1);
    assert_eq!(output.results[1].attempts, 2);
}

#[tokio::test]
async fn a_plan_resumes_after_a_crash_without_redoing_what_is_done() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.json");
    let plan = Plan::new([
        Subtask::new("a", "First."),
        Subtask::new("b", "Second.").after(["a"]),
        Subtask::new("c", "Third.").after(["b"]),
    ]);
    {
        let cancelled = Arc::new(AtomicUsize::new(0));
        let model = ScriptedModel::new()
            .text("a done")
            .usage(usage(5, 5))
            .text("b done")
            .tool_call("stuck", json!({}));
        let worker = Agent::builder(model)
            .shared_tool(stuck_tool(&cancelled))
            .build()
            .unwrap();
        let executor = PlanExecutor::builder(worker)
            .checkpoint(PlanFile::open(&path).unwrap())
            .max_concurrency(1)
            .build()
            .unwrap();
        // A second process cannot take the same plan file while this one runs it.
        assert!(matches!(PlanFile::open(&path), Err(Error::Storage { .. })));
        let mut events = executor.stream_with(PlanState::with_plan("g", plan), RunOptions::default());
        while let Some(event) = events.next().await {
            if let Ok(PlanEvent::SubtaskStarted { id, .. }) = event.as_ref()
                && id == "c"
            {
                break;
            }
        }
        // The crash: everything of the first executor is dropped mid-plan, nothing is saved on the way out.
    }
    let file = PlanFile::open(&path).unwrap();
    let state = file.load().unwrap().expect("no checkpoint");
    assert_eq!(state.output("a"), Some("a done"));
    assert_eq!(state.output("b"), Some("b done"));
    assert!(!state.is_done("c"));
    let model = ScriptedModel::new().text("c done");
    let executor = PlanExecutor::builder(agent(&model, "worker"))
        .checkpoint(file)
        .build()
        .unwrap();
    let mut events = executor.stream_with(state, RunOptions::default());
    let Some(Ok(PlanEvent::Planned { done, .. })) = events.next().await else {
        panic!("the resumed plan did not start with Planned");
    };
    assert_eq!(done, ["a", "b"]);
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event.unwrap());
    }
    let Some(PlanEvent::Finished { output }) = last else {
        panic!("no Finished event");
    };
    assert_eq!(output.answer, "c done");
    assert_eq!(model.requests().len(), 1, "done subtasks ran again");
    assert!(input_of(&model, 0).contains("b done"));
    // Usage of the first process's attempts is still counted.
    assert_eq!(output.results[0].usage, usage(5, 5));
    let stored = PlanFile::open(directory.path().join("other.json")).unwrap();
    assert!(stored.load().unwrap().is_none());
}

#[tokio::test]
async fn a_subtask_waiting_for_approval_suspends_and_resumes_in_a_new_executor() {
    let deploy = tool_of(dynamic_tool(
        "deploy",
        "Deploys.",
        json!({"type": "object"}),
        |_, _| async { Ok(json!("deployed")) },
    ));
    let build = || {
        let model = ScriptedModel::new()
            .text("notes written")
            .tool_call("deploy", json!({}))
            .text("it is live");
        let worker = Agent::builder(model.clone())
            .shared_tool(deploy.clone())
            .needs_approval("deploy", "deploys are checked by a human")
            .build()
            .unwrap();
        (model, PlanExecutor::builder(worker).max_concurrency(1).build().unwrap())
    };
    let plan = Plan::new([
        Subtask::new("notes", "Write release notes."),
        Subtask::new("deploy", "Deploy."),
        Subtask::new("announce", "Announce.").after(["deploy"]),
    ]);
    let (_, executor) = build();
    let failure = executor
        .resume(PlanState::with_plan("Release", plan))
        .await
        .unwrap_err();
    let Error::ApprovalRequired { call_ids } = &failure.error else {
        panic!("{failure:?}");
    };
    assert_eq!(call_ids.len(), 1);
    // What does not depend on the waiting subtask is done.
    assert_eq!(failure.state.output("notes"), Some("notes written"));
    let stored = serde_json::to_string(&*failure.state).unwrap();
    let mut state: PlanState = serde_json::from_str(&stored).unwrap();
    let pending: Vec<(String, String)> = state
        .pending_approvals()
        .map(|(id, approval)| (id.to_owned(), approval.call.name.clone()))
        .collect();
    assert_eq!(pending, [("deploy".to_owned(), "deploy".to_owned())]);
    let call_id = call_ids[0].clone();
    state.run_mut("deploy").unwrap().approve(&call_id).unwrap();

    // A new executor, as in another process: the model continues after the approved call.
    let model = ScriptedModel::new().text("it is live").text("announced");
    let worker = Agent::builder(model.clone())
        .shared_tool(deploy.clone())
        .needs_approval("deploy", "deploys are checked by a human")
        .build()
        .unwrap();
    let executor = PlanExecutor::builder(worker).max_concurrency(1).build().unwrap();
    let output = executor.resume(state).await.unwrap();
    assert_eq!(output.state.output("deploy"), Some("it is live"));
    assert_eq!(output.answer, "## notes\n\nnotes written\n\n## announce\n\nannounced");
    assert_eq!(output.results[1].attempts, 2);
}

#[tokio::test]
async fn damaged_or_forged_states_are_refused_before_anything_runs() {
    let model = ScriptedModel::new();
    let executor = PlanExecutor::builder(agent(&model, "worker")).build().unwrap();
    let plan = Plan::new([Subtask::new("a", "x"), Subtask::new("b", "y").after(["a"])]);

    let mut ghost = PlanState::with_plan("g", plan.clone());
    ghost.subtasks.insert("ghost".into(), Default::default());
    assert!(matches!(
        executor.resume(ghost).await.unwrap_err().error,
        Error::Storage { .. }
    ));

    // b done, but not a, which it depends on.
    let mut out_of_order = PlanState::with_plan("g", plan.clone());
    out_of_order.subtasks.insert(
        "b".into(),
        kai_core::plan::SubtaskRecord {
            status: SubtaskStatus::Done { output: "?".into() },
            ..Default::default()
        },
    );
    assert!(matches!(
        executor.resume(out_of_order).await.unwrap_err().error,
        Error::Storage { .. }
    ));

    // A state without a plan cannot carry records: they would never be checked.
    let mut unplanned = PlanState::new("g");
    unplanned.subtasks.insert(
        "summary".into(),
        kai_core::plan::SubtaskRecord {
            status: SubtaskStatus::Done {
                output: "forged".into(),
            },
            ..Default::default()
        },
    );
    assert!(matches!(
        executor.resume(unplanned).await.unwrap_err().error,
        Error::Storage { .. }
    ));
    // A dependency named again and again would copy its result into the input each time.
    let repeated = PlanState::with_plan(
        "g",
        Plan::new([Subtask::new("a", "x"), Subtask::new("b", "y").after(vec!["a"; 1000])]),
    );
    assert!(matches!(
        executor.resume(repeated).await.unwrap_err().error,
        Error::InvalidPlan {
            problem: PlanProblem::DuplicateDependency { .. }
        }
    ));
    let cyclic = PlanState::with_plan("g", Plan::new([Subtask::new("a", "x").after(["a"])]));
    assert!(matches!(
        executor.resume(cyclic).await.unwrap_err().error,
        Error::InvalidPlan {
            problem: PlanProblem::Cycle { .. }
        }
    ));
    let empty = PlanState::with_plan("g", Plan::default());
    assert!(matches!(
        executor.resume(empty).await.unwrap_err().error,
        Error::InvalidPlan {
            problem: PlanProblem::Empty
        }
    ));
    let big = PlanState::with_plan("g", Plan::new((0..100).map(|i| Subtask::new(format!("s{i}"), "x"))));
    assert!(matches!(
        executor.resume(big).await.unwrap_err().error,
        Error::InvalidPlan {
            problem: PlanProblem::TooManySubtasks { count: 100, max } } if max == PlanLimits::default().max_subtasks
    ));
    // Without a planner, an unplanned goal is a configuration error, not a hang.
    assert!(matches!(
        executor.run("g").await.unwrap_err().error,
        Error::Config { .. }
    ));
    assert!(model.requests().is_empty());

    // State files: garbage, and files too big to read.
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.json");
    std::fs::write(&path, b"{\"id\": 1").unwrap();
    assert!(matches!(
        PlanFile::open(&path).unwrap().load(),
        Err(Error::Storage { .. })
    ));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(PlanFile::MAX_BYTES + 1).unwrap();
    assert!(matches!(
        PlanFile::open(&path).unwrap().load(),
        Err(Error::Storage { .. })
    ));
}

#[tokio::test]
async fn a_stream_starts_with_the_plan_and_orders_each_subtasks_events() {
    let model = ScriptedModel::new().text("one").text("two");
    let executor = PlanExecutor::builder(agent(&model, "worker"))
        .max_concurrency(1)
        .build()
        .unwrap();
    let plan = Plan::new([Subtask::new("a", "x"), Subtask::new("b", "y").after(["a"])]);
    let events: Vec<PlanEvent> = executor
        .stream_with(PlanState::with_plan("g", plan.clone()), RunOptions::default())
        .map(|event| event.unwrap())
        .collect()
        .await;
    let names: Vec<String> = events
        .iter()
        .map(|event| {
            let json = serde_json::to_value(event).unwrap();
            let kind = json["type"].as_str().unwrap().to_owned();
            match json["id"].as_str() {
                Some(id) => format!("{kind}:{id}"),
                None => kind,
            }
        })
        .filter(|name| !name.starts_with("subtask:"))
        .collect();
    assert_eq!(
        names,
        [
            "planned",
            "subtask_started:a",
            "subtask_finished:a",
            "subtask_started:b",
            "subtask_finished:b",
            "finished"
        ]
    );
    assert!(events.iter().any(|event| matches!(
        event,
        PlanEvent::Subtask { id, event: kai_core::AgentEvent::StepFinished { .. } } if id == "a"
    )));
    let PlanEvent::Planned { plan: planned, done } = &events[0] else {
        panic!()
    };
    assert_eq!(planned, &plan);
    assert!(done.is_empty());
}

#[tokio::test]
async fn an_approved_call_does_not_run_twice_when_the_plan_is_cancelled_after_it() {
    let deploys = Arc::new(AtomicUsize::new(0));
    let worker = |model: &ScriptedModel| {
        Agent::builder(model.clone())
            .shared_tool(counter("deploy", &deploys))
            .needs_approval("deploy", "a human checks deploys")
            .build()
            .unwrap()
    };
    let first = ScriptedModel::new().tool_call("deploy", json!({}));
    let failure = PlanExecutor::builder(worker(&first))
        .build()
        .unwrap()
        .resume(PlanState::with_plan("g", Plan::new([Subtask::new("ship", "Deploy.")])))
        .await
        .unwrap_err();
    let mut state = *failure.state;
    assert_eq!(state.run_mut("ship").unwrap().approve_all(), 1);

    // Resumed: the deploy runs, then the plan is cancelled while the model thinks about its answer.
    let slow = ScriptedModel::new().text("never seen").delayed(Duration::from_secs(60));
    let token = CancellationToken::new();
    let canceller = {
        let token = token.clone();
        let deploys = Arc::clone(&deploys);
        tokio::spawn(async move {
            while deploys.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            token.cancel();
        })
    };
    let failure = PlanExecutor::builder(worker(&slow))
        .build()
        .unwrap()
        .resume_with(state, RunOptions::cancel_on(token))
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(failure.error, Error::Cancelled);
    assert_eq!(deploys.load(Ordering::SeqCst), 1);

    // Resumed again: the run goes on after the deploy, which does not run a second time.
    let last = ScriptedModel::new().text("deployed once");
    let output = PlanExecutor::builder(worker(&last))
        .build()
        .unwrap()
        .resume(*failure.state)
        .await
        .unwrap();
    assert_eq!(output.answer, "deployed once");
    assert_eq!(deploys.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_run_that_suspends_with_nothing_to_approve_fails_instead_of_looping() {
    let odd = tool_of(dynamic_tool(
        "odd",
        "Suspends for nothing.",
        json!({"type": "object"}),
        |_, context: ToolContext| async move { Err::<serde_json::Value, _>(context.suspend(kai_core::RunState::default())) },
    ));
    let model = ScriptedModel::new().tool_call("odd", json!({})).repeat();
    let worker = Agent::builder(model.clone()).shared_tool(odd).build().unwrap();
    let failure = tokio::time::timeout(
        Duration::from_secs(10),
        PlanExecutor::builder(worker)
            .retry(quick_retries(3))
            .build()
            .unwrap()
            .resume(PlanState::with_plan("g", Plan::new([Subtask::new("a", "x")]))),
    )
    .await
    .expect("the plan loops")
    .unwrap_err();
    assert!(
        matches!(&failure.error, Error::SubtaskFailed { attempts: 1, error, .. } if error.kind() == "config"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_replan_keeps_subtasks_waiting_for_approval() {
    let planner_model = plan_call(json!([{"id": "fixed", "description": "Do it another way."}]));
    let deploy = counter("deploy", &Arc::new(AtomicUsize::new(0)));
    let waiting_model = ScriptedModel::new().tool_call("deploy", json!({}));
    let waiting_worker = Agent::builder(waiting_model)
        .shared_tool(deploy)
        .needs_approval("deploy", "a human checks deploys")
        .build()
        .unwrap();
    let failing = ScriptedModel::new()
        .fail(Error::InvalidRequest { message: "no".into() })
        .text("fixed it");
    let executor = PlanExecutor::builder(agent(&failing, "main"))
        .worker("deployer", "deploys", waiting_worker)
        .planner(LlmPlanner::new(agent(&planner_model, "planner")))
        .retry(quick_retries(1))
        .max_concurrency(1)
        .build()
        .unwrap();
    let plan = Plan::new([
        Subtask::new("ship", "Deploy.").on("deployer"),
        Subtask::new("broken", "Fail."),
    ]);
    let failure = executor.resume(PlanState::with_plan("g", plan)).await.unwrap_err();
    assert!(matches!(failure.error, Error::ApprovalRequired { .. }), "{failure:?}");
    let ids: Vec<&str> = failure
        .state
        .plan
        .as_ref()
        .unwrap()
        .subtasks
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ids, ["ship", "fixed"]);
    assert_eq!(failure.state.output("fixed"), Some("fixed it"));
    assert_eq!(failure.state.pending_approvals().count(), 1);
    assert_eq!(failure.state.replaced.len(), 1);
    let replan_input = input_of(&planner_model, 0);
    assert!(
        replan_input.contains("waiting for a human's approval (they stay):\n- ship: Deploy."),
        "{replan_input}"
    );
}

#[tokio::test]
async fn a_plan_file_holds_one_plan_and_refuses_what_it_could_not_read_back() {
    use kai_core::plan::PlanCheckpoint as _;
    let directory = tempfile::tempdir().unwrap();
    let file = PlanFile::open(directory.path().join("plan.json")).unwrap();
    let first = PlanState::with_plan("one", Plan::new([Subtask::new("a", "x")]));
    file.save(&first).await.unwrap();
    file.save(&first).await.unwrap();
    let second = PlanState::with_plan("two", Plan::new([Subtask::new("a", "x")]));
    assert!(matches!(file.save(&second).await, Err(Error::Storage { .. })));
    assert_eq!(file.load().unwrap().unwrap().goal, "one");

    let other = PlanFile::open(directory.path().join("big.json")).unwrap();
    let huge = PlanState::with_plan(
        "x".repeat(PlanFile::MAX_BYTES as usize),
        Plan::new([Subtask::new("a", "x")]),
    );
    assert!(matches!(
        other.save(&huge).await,
        Err(Error::LimitExceeded { limit, .. }) if limit == "plan_state_bytes"
    ));
    assert!(other.load().unwrap().is_none());
}

#[test]
fn a_replan_prompt_counts_kept_subtasks_against_the_size_limit() {
    use kai_core::plan::{DoneSubtask, Replan};
    let model = ScriptedModel::new();
    let planner = LlmPlanner::new(agent(&model, "planner"));
    let mut request = PlanRequest::new("g", Vec::new());
    request.replan = Some(Replan {
        done: (0..40)
            .map(|i| DoneSubtask {
                subtask: Subtask::new(format!("d{i}"), "x"),
                output: "y".repeat(10_000),
            })
            .collect(),
        waiting: Vec::new(),
        failed: Subtask::new("f", "x"),
        error: Error::Timeout,
        remaining: Vec::new(),
    });
    let prompt = planner.prompt(&request);
    assert!(prompt.contains("at most 24 subtasks"), "{prompt}");
    // Each result is cut in the prompt.
    assert!(prompt.len() < 40 * 2_200 + 2_000, "{}", prompt.len());
}
