//! `decay-worker demo`: seed sample memories and episodes and schedule jobs of every kind, so a
//! new user sees the system work end to end. The seeding lives here, not in the library: it
//! is sample data for this command and nothing else.

use chrono::Utc;
use serde_json::json;

use super::CliError;
use crate::app::{self, Pool};
use crate::broker::BrokerConfig;
use crate::broker::producer::Producer;
use crate::cli::DemoArgs;
use crate::decay::{JobKind, SummaryMethod};
use crate::ids::{DecayJobId, EpisodeId, MemoryId, PrincipleId};
use crate::store::{NewEpisode, NewJob, NewMemory, NewPrinciple, Store};

const CLAIMS: [&str; 8] = [
    "The user prefers concise answers with code first",
    "Deploys happen on Tuesdays after the standup",
    "The staging database is reset every night at 02:00 UTC",
    "The team uses trunk-based development with short-lived branches",
    "Incidents are tracked in the ops channel, not by email",
    "The user works in Europe/Berlin and starts at 08:00",
    "Release notes are written by whoever merges the last PR",
    "Flaky tests are quarantined within one day",
];
const EPISODES: [&str; 6] = [
    "Debugged a connection-pool exhaustion during the Tuesday deploy",
    "Pairing session on the retry-queue design",
    "Post-incident review of the nightly staging reset",
    "Planning meeting for the Q3 memory-decay rollout",
    "Reviewed the on-call handbook with the new teammate",
    "Migrated the job store from SQLite to PostgreSQL",
];
const AUTHORITIES: [&str; 4] = ["user", "agent", "candidate", "derived"];

pub async fn run(a: DemoArgs) -> Result<(), CliError> {
    let broker = a.broker.broker_config().map_err(CliError::usage)?;
    let store = app::connect_store(&a.db, Pool::Command).await?;
    store.migrate().await?;
    let seeded = seed(&store).await?;
    let ids = schedule(&store, broker, &seeded, a.jobs).await?;
    if a.print_ids {
        print_ids(&seeded, &ids);
    }
    eprintln!(
        "done: {} jobs published; watch them with `decay-worker jobs stats`",
        ids.len()
    );
    Ok(())
}

/// `--print-ids`: shell assignments, comma-separated as `schedule`'s id flags take them.
fn print_ids(seeded: &Seeded, jobs: &[DecayJobId]) {
    fn joined<T: ToString>(ids: &[T]) -> String {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
    println!("MEMORY_IDS={}", joined(&seeded.memories));
    println!("EPISODE_IDS={}", joined(&seeded.episodes));
    println!("PRINCIPLE_ID={}", seeded.principle);
    println!("JOB_IDS={}", joined(jobs));
}

/// What [`seed`] inserted, for the jobs to point at.
struct Seeded {
    memories: Vec<MemoryId>,
    episodes: Vec<EpisodeId>,
    principle: PrincipleId,
}

/// Insert the sample memories and episodes and one principle whose waiver has expired.
async fn seed(store: &Store) -> Result<Seeded, CliError> {
    let now = Utc::now();
    let mut memories = Vec::new();
    for (i, claim) in CLAIMS.iter().enumerate() {
        let id = MemoryId::new();
        store
            .insert_memory(&NewMemory {
                id,
                memory_type: "semantic".into(),
                status: "active".into(),
                claim: (*claim).into(),
                source_episodes_json: json!([]),
                source_events_json: json!([format!("evt_{}", ulid::Ulid::new())]),
                domains_json: json!([(["ops", "team", "user"])[i % 3]]),
                confidence: 0.55 + (i as f64) * 0.05,
                authority: AUTHORITIES[i % AUTHORITIES.len()].into(),
                created_at: now,
            })
            .await?;
        memories.push(id);
    }
    let mut episodes = Vec::new();
    for (i, summary) in EPISODES.iter().enumerate() {
        let id = EpisodeId::new();
        store
            .insert_episode(&NewEpisode {
                id,
                trace_id: format!("trc_{}", ulid::Ulid::new()),
                summary: (*summary).into(),
                source_events_json: json!([format!("evt_{}", ulid::Ulid::new())]),
                domains_json: json!([(["ops", "engineering"])[i % 2]]),
                confidence: 0.6 + (i as f64) * 0.05,
            })
            .await?;
        episodes.push(id);
    }
    let principle = PrincipleId::new();
    store
        .insert_principle(&NewPrinciple {
            id: principle,
            statement: "Never store secrets in memories".into(),
            waiver_expires_at: Some(now),
        })
        .await?;
    eprintln!(
        "seeded {} memories, {} episodes, 1 principle",
        memories.len(),
        episodes.len()
    );
    Ok(Seeded {
        memories,
        episodes,
        principle,
    })
}

/// Schedule `jobs` jobs over the seeded rows, cycling through the kinds, publishing each.
async fn schedule(
    store: &Store,
    broker: BrokerConfig,
    seeded: &Seeded,
    jobs: usize,
) -> Result<Vec<DecayJobId>, CliError> {
    let Seeded {
        memories,
        episodes,
        principle,
    } = seeded;
    let mut producer = Producer::new(broker, "decay-worker demo");
    let mut ids = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let (kind, method, sources) = match n % 5 {
            4 => (
                JobKind::ExpiredPrincipleReview,
                SummaryMethod::None,
                vec![principle.to_string()],
            ),
            k if k % 2 == 1 => {
                let start = n % episodes.len();
                let picked = (0..2).map(|j| episodes[(start + j) % episodes.len()].to_string());
                (
                    JobKind::EpisodeCompression,
                    SummaryMethod::DeterministicConcatenate,
                    picked.collect(),
                )
            }
            _ => {
                let start = n % memories.len();
                let picked = (0..3).map(|j| memories[(start + j) % memories.len()].to_string());
                (
                    JobKind::CandidateCompression,
                    SummaryMethod::DeterministicConcatenate,
                    picked.collect(),
                )
            }
        };
        let job = NewJob::new(
            kind,
            method,
            sources,
            Utc::now(),
            "operator:demo",
            Utc::now(),
        );
        // Marked published as it is inserted: before the message exists, never after (see
        // `Store::mark_published`).
        store.insert_job_to_publish(&job).await?;
        if let Err(e) = producer.publish(&job.id).await {
            store.unmark_published(&[job.id]).await?;
            producer.close().await;
            return Err(e.into());
        }
        ids.push(job.id);
        if (n + 1) % 10 == 0 || n + 1 == jobs {
            eprintln!("scheduled {}/{jobs} jobs", n + 1);
        }
    }
    producer.close().await;
    Ok(ids)
}
