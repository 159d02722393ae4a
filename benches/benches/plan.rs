//! What the plan executor costs per subtask, with a scripted model: a plan of eight independent
//! subtasks run one at a time, beside the same eight agent runs made by hand in a loop (the
//! baseline). The difference is the executor's scheduling, inputs, records and events.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt as _;
use futures::executor::block_on;
use kai_core::Agent;
use kai_core::plan::{Plan, PlanExecutor, PlanState, Subtask};
use kai_core::testing::ScriptedModel;

const SUBTASKS: usize = 8;

fn worker() -> Agent {
    let model = ScriptedModel::new().text("done").repeat().record_requests(false);
    Agent::builder(model).build().unwrap()
}

fn plan() -> Plan {
    Plan::new((0..SUBTASKS).map(|i| Subtask::new(format!("s{i}"), "Do one small thing.")))
}

fn plan_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_8_subtasks");
    let executor = PlanExecutor::builder(worker()).max_concurrency(1).build().unwrap();
    let plan = plan();
    group.bench_function("executor", |b| {
        b.iter(|| block_on(executor.resume(PlanState::with_plan("goal", plan.clone()))).map(|o| o.results.len()))
    });
    group.bench_function("executor_streamed", |b| {
        b.iter(|| {
            block_on(
                executor
                    .stream_with(PlanState::with_plan("goal", plan.clone()), Default::default())
                    .count(),
            )
        })
    });
    let agent = worker();
    group.bench_function("by_hand", |b| {
        b.iter(|| {
            block_on(async {
                let mut answers = Vec::with_capacity(SUBTASKS);
                for subtask in &plan.subtasks {
                    let input = format!(
                        "{}\n\nThis is one subtask ({}) of a larger goal: goal",
                        subtask.description, subtask.id
                    );
                    answers.push(agent.run(input).await.map(|output| output.answer));
                }
                answers
            })
        })
    });
    group.finish();
}

criterion_group!(benches, plan_overhead);
criterion_main!(benches);
