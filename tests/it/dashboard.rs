//! The dashboard used as a person would: a real chromium (through chromedriver) against a
//! real `decay-worker dashboard` process, the real database and broker, and a real worker
//! where a job has to run. Each test has its own database, queue base and ports, and saves a
//! screenshot under `target/screenshots/`.
use std::collections::BTreeSet;
use std::time::Duration;

use crate::testkit::browser::{Browser, DashboardProcess, PAGE, http, post_form, spawn_dashboard};
use crate::testkit::harness::{Harness, wait_until};
use crate::testkit::*;
use chrono::Utc;
use decay_worker::decay::{JobKind, SummaryMethod};
use decay_worker::ids::{DecayJobId, EpisodeId, MemoryId};
use decay_worker::store::{NewDeadLetter, NewJob};
use sqlx::PgPool;

const TOKEN: &str = "operator-token-for-tests-0123456789";
const LONG: Duration = Duration::from_secs(60);

/// A failed job: a compression of `kind` over a source that does not exist.
async fn failed_job(store: &decay_worker::store::Store, kind: JobKind) -> DecayJobId {
    let source = match kind {
        JobKind::EpisodeCompression => EpisodeId::new().to_string(),
        _ => MemoryId::new().to_string(),
    };
    let id = job_at(
        store,
        kind,
        SummaryMethod::DeterministicConcatenate,
        vec![source],
        Utc::now(),
    )
    .await;
    runner(store).run_specific_job(&id).await.unwrap();
    id
}

async fn failed_candidate(store: &decay_worker::store::Store) -> DecayJobId {
    failed_job(store, JobKind::CandidateCompression).await
}

async fn completed_candidate(store: &decay_worker::store::Store) -> DecayJobId {
    let id = candidate_job(store, Utc::now()).await;
    runner(store).run_specific_job(&id).await.unwrap();
    id
}

async fn state_of(h: &Harness, id: &DecayJobId) -> String {
    sqlx::query_scalar("SELECT state FROM decay_jobs WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// Move a job's last change `minutes_ago` minutes (plus 30 s) into the past; returns the
/// minute's `HH:MM` as the chart labels it.
async fn changed_minutes_ago(h: &Harness, id: &DecayJobId, minutes_ago: i32) -> String {
    sqlx::query_scalar(
        "UPDATE decay_jobs
            SET updated_at = date_trunc('minute', now()) - make_interval(mins => $2)
                             + interval '30 seconds'
          WHERE id = $1
      RETURNING to_char(updated_at AT TIME ZONE 'UTC', 'HH24:MI')",
    )
    .bind(id.to_string())
    .bind(minutes_ago)
    .fetch_one(&h.pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn the_overview_shows_the_seeded_counts_and_refreshes_in_place(pool: PgPool) {
    let h = Harness::new(pool).await;
    let store = &h.store;
    let mut completed = Vec::new();
    for _ in 0..3 {
        completed.push(completed_candidate(store).await);
    }
    let mut failed = Vec::new();
    for _ in 0..2 {
        failed.push(failed_job(store, JobKind::EpisodeCompression).await);
    }
    let p = principle(store).await;
    let due = job_at(
        store,
        JobKind::ExpiredPrincipleReview,
        SummaryMethod::None,
        vec![p.to_string()],
        Utc::now() - chrono::Duration::minutes(5),
    )
    .await;
    let cancelled = candidate_job(store, Utc::now()).await;
    store.cancel_job(&cancelled, "not needed").await.unwrap();
    let mut completed_minute = String::new();
    for id in &completed {
        completed_minute = changed_minutes_ago(&h, id, 10).await;
    }
    let mut failed_minute = String::new();
    for id in &failed {
        failed_minute = changed_minutes_ago(&h, id, 30).await;
    }

    let dash = spawn_dashboard(&h, None).await;
    let b = Browser::start().await;
    b.goto(&dash.url("/")).await;
    assert_eq!(b.text("#count-completed-candidate_compression").await, "3");
    assert_eq!(b.text("#count-failed-episode_compression").await, "2");
    assert_eq!(b.text("#count-failed-candidate_compression").await, "0");
    assert_eq!(b.text("#count-pending-expired_principle_review").await, "1");
    assert_eq!(b.text("#total-pending").await, "1");
    assert_eq!(b.text("#total-cancelled").await, "1");
    assert_eq!(b.text("#total-in_progress").await, "0");
    assert_eq!(b.text("#total-all").await, "7");
    assert_eq!(b.text("#failures").await, "decay.compress.source_missing 2");
    assert!(b.text("#oldest-due").await.contains(&due.to_string()));
    assert_eq!(b.text("#expired-leases").await, "0");
    assert_eq!(b.text("#chart-completed").await, "3");
    assert_eq!(b.text("#chart-failed").await, "2");
    let bar = |minute: &str, attr: &str| format!("#chart g[data-minute='{minute}'][{attr}]");
    assert_eq!(
        b.attrs(&bar(&completed_minute, "data-completed"), "data-completed")
            .await,
        ["3"]
    );
    assert_eq!(
        b.attrs(&bar(&failed_minute, "data-failed"), "data-failed")
            .await,
        ["2"]
    );
    // Queue depths come from the broker (the dashboard declared the topology), dead letters
    // from the table.
    assert_eq!(b.text(&format!("[id='depth-{}']", h.base)).await, "0");
    assert_eq!(b.text("#dead-letters-total").await, "0");
    assert!(b.text("#access").await.contains("Read-only"));
    b.screenshot("overview").await;

    // Refresh without a reload: a marker set in the page survives while a new failure
    // appears in the counts.
    b.client
        .execute("window.__marker = 'kept'; return true;", vec![])
        .await
        .unwrap();
    failed_candidate(store).await;
    wait_until(PAGE, "the overview to show the new failure", || async {
        b.text("#count-failed-candidate_compression").await == "1"
    })
    .await;
    let marker = b
        .client
        .execute("return window.__marker || null;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, serde_json::json!("kept"), "the page was reloaded");
    assert_eq!(b.text("#failures").await, "decay.compress.source_missing 3");
    b.close().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn filtering_by_failed_shows_exactly_the_failed_jobs_page_by_page(pool: PgPool) {
    let h = Harness::new(pool).await;
    let store = &h.store;
    // More failed jobs than one page (50) holds, and others around them.
    let mut failed = BTreeSet::new();
    for _ in 0..53 {
        failed.insert(failed_candidate(store).await.to_string());
    }
    for _ in 0..2 {
        completed_candidate(store).await;
        candidate_job(store, Utc::now()).await;
    }
    let dash = spawn_dashboard(&h, None).await;
    let b = Browser::start().await;
    // Unfiltered, the list merges every state: two pages hold each of the 57 jobs once.
    b.goto(&dash.url("/jobs")).await;
    let mut all: Vec<String> = b.attrs("tr.job", "data-id").await;
    assert_eq!(all.len(), 50, "the first page of all 57 jobs");
    b.click("#page-older").await;
    wait_until(PAGE, "the second page of all jobs", || async {
        b.path_and_query().await.starts_with("/jobs?older=")
    })
    .await;
    all.extend(b.attrs("tr.job", "data-id").await);
    let every: BTreeSet<String> = sqlx::query_scalar("SELECT id FROM decay_jobs")
        .fetch_all(&h.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(all.len(), 57, "no job shown twice");
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), every);
    b.goto(&dash.url("/jobs")).await;
    b.client
        .find(fantoccini::Locator::Css("#f-state"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    b.click("#f-apply").await;
    // The form's empty fields redirect to the canonical address.
    wait_until(PAGE, "the canonical filter address", || async {
        b.path_and_query().await == "/jobs?state=failed"
    })
    .await;
    let first: Vec<String> = b.attrs("tr.job", "data-id").await;
    assert_eq!(first.len(), 50);
    assert!(
        b.attrs("tr.job", "data-state")
            .await
            .iter()
            .all(|s| s == "failed")
    );
    b.screenshot("jobs-failed").await;
    b.click("#page-older").await;
    wait_until(PAGE, "the second page", || async {
        b.path_and_query()
            .await
            .starts_with("/jobs?state=failed&older=")
    })
    .await;
    let second: Vec<String> = b.attrs("tr.job", "data-id").await;
    assert_eq!(second.len(), 3);
    assert_eq!(
        b.count("#page-older").await,
        0,
        "nothing older than the last page"
    );
    let shown: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(shown.len(), 53, "no job shown twice");
    assert_eq!(shown, failed, "exactly the failed jobs");
    b.click("#page-newer").await;
    wait_until(PAGE, "back on the first page", || async {
        b.attrs("tr.job", "data-id").await == first
    })
    .await;
    b.close().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_jobs_detail_shows_its_summary_and_sources(pool: PgPool) {
    let h = Harness::new(pool).await;
    let store = &h.store;
    let claims = [
        "the deploy window is tuesdays",
        "rollbacks need two approvals",
        "staging mirrors production",
    ];
    let mut sources = Vec::new();
    for c in claims {
        sources.push(memory(store, c, 0.8, "agent").await.to_string());
    }
    let id = job_at(
        store,
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        sources.clone(),
        Utc::now(),
    )
    .await;
    runner(store).run_specific_job(&id).await.unwrap();
    let summary: (String, String) = sqlx::query_as(
        "SELECT m.id, m.claim FROM decay_jobs j JOIN memories m ON m.id = j.result_memory_id
          WHERE j.id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&h.pool)
    .await
    .unwrap();

    let dash = spawn_dashboard(&h, None).await;
    let b = Browser::start().await;
    b.goto(&dash.url("/jobs")).await;
    b.click(&format!("tr.job[data-id='{id}'] a")).await;
    assert_eq!(b.text("#job-id").await, id.to_string());
    assert_eq!(b.text("#job-state").await, "completed");
    assert_eq!(b.text("#summary-id").await, summary.0);
    assert_eq!(b.text("#summary-claim").await, summary.1);
    for c in claims {
        assert!(
            summary.1.contains(c),
            "the summary concatenates its sources"
        );
    }
    assert_eq!(b.attrs("tr.source", "data-id").await, sources);
    for (i, c) in claims.iter().enumerate() {
        let cell = b
            .text(&format!("tr.source[data-id='{}'] td.claim", sources[i]))
            .await;
        assert_eq!(cell, *c);
    }
    assert_eq!(
        b.count("tr.edge").await,
        3,
        "one supersession edge per source"
    );
    let claim = b.text("#claim").await;
    assert!(claim.contains("test/1"), "claimed_by is shown: {claim}");
    b.screenshot("job-completed").await;

    // A failed job: the reason in full, and the missing source named.
    let bad = failed_candidate(store).await;
    let reason: String = sqlx::query_scalar("SELECT state_reason FROM decay_jobs WHERE id = $1")
        .bind(bad.to_string())
        .fetch_one(&h.pool)
        .await
        .unwrap();
    b.goto(&dash.url(&format!("/jobs/{bad}"))).await;
    assert_eq!(b.text("#job-state").await, "failed");
    assert_eq!(b.text("#state-reason").await, reason);
    assert!(b.text("#sources").await.contains("missing"));
    assert_eq!(b.text("#no-summary").await, "No summary memory.");
    b.screenshot("job-failed").await;
    b.close().await;
}

/// Sign in through the page with the operator token.
async fn sign_in(b: &Browser, dash: &DashboardProcess) {
    b.goto(&dash.url("/login")).await;
    b.type_into("#token", TOKEN).await;
    b.click("#login").await;
    wait_until(PAGE, "signed in", || async {
        b.client
            .find(fantoccini::Locator::Css("#access[data-mode='operator']"))
            .await
            .is_ok()
    })
    .await;
}

#[sqlx::test(migrations = "./migrations")]
async fn requeueing_a_dead_letter_with_the_token_runs_the_job(pool: PgPool) {
    let h = Harness::new(pool).await;
    // A message for a job that does not exist yet is dead-lettered `job_not_found` at once.
    let mut w = h.spawn_worker_env("w-dash", &[], &[("DECAY_NOT_FOUND_RETRIES", "0")]);
    let ghost = DecayJobId::new();
    h.publish(&ghost).await;
    wait_until(LONG, "the dead letter recorded", || async {
        h.dead_letters().await.len() == 1
    })
    .await;
    let letter = h.dead_letters().await.remove(0);
    assert_eq!(letter.reason, "job_not_found");
    // The cause is fixed: the job now exists.
    let mut job = NewJob::new(
        JobKind::CandidateCompression,
        SummaryMethod::DeterministicConcatenate,
        vec![
            memory(&h.store, "one", 0.5, "agent").await.to_string(),
            memory(&h.store, "two", 0.6, "agent").await.to_string(),
        ],
        Utc::now(),
        "operator:test",
        Utc::now(),
    );
    job.id = ghost;
    h.store.insert_job(&job).await.unwrap();

    let dash = spawn_dashboard(&h, Some(TOKEN)).await;
    let b = Browser::start().await;
    b.goto(&dash.url("/dead-letters")).await;
    assert_eq!(b.attrs("tr.letter", "data-job").await, [ghost.to_string()]);
    assert_eq!(b.count(".requeue").await, 0, "no actions before signing in");
    sign_in(&b, &dash).await;
    b.goto(&dash.url("/dead-letters")).await;
    b.screenshot("dead-letters-operator").await;
    b.click(&format!("#requeue-{}", letter.id)).await;
    assert!(
        b.text("#done-lines").await.contains(&ghost.to_string()),
        "the result names the job"
    );
    b.screenshot("dead-letter-requeued").await;
    wait_until(LONG, "the requeued job completed", || async {
        state_of(&h, &ghost).await == "completed"
    })
    .await;
    assert_eq!(h.dead_letters().await, vec![], "the letter is gone");
    h.assert_exactly_one_summary_per_job().await;
    let log = dash.log();
    assert!(
        log.contains("dashboard action: dead letters requeued"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token was logged");
    assert_eq!(w.terminate().await, Some(0));
    b.close().await;
}

/// The session cookie and CSRF token a signed-in browser would have, over plain HTTP.
async fn session_over_http(port: u16) -> (String, String) {
    let login = post_form(port, "/login", &[], &format!("token={TOKEN}")).await;
    assert_eq!(login.status, 303, "{login:?}");
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = http(port, "GET", "/dead-letters", &[("cookie", &cookie)], "").await;
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    (cookie, csrf)
}

#[sqlx::test(migrations = "./migrations")]
async fn without_the_token_actions_are_refused_and_nothing_changes(pool: PgPool) {
    let h = Harness::new(pool).await;
    // A pending job whose message was dead-lettered (recorded as the intake would).
    let id = candidate_job(&h.store, Utc::now()).await;
    let body = format!("{{\"job_id\":\"{id}\"}}");
    h.store
        .insert_dead_letter(&NewDeadLetter {
            queue: h.base.clone(),
            job_id: Some(id),
            reason: "job_not_found".into(),
            detail: "retried 5 times".into(),
            body: body.clone().into_bytes(),
            body_bytes: i32::try_from(body.len()).unwrap(),
            deliveries: 6,
            dead_lettered_at: Utc::now(),
        })
        .await
        .unwrap();
    let unchanged = || async {
        assert_eq!(
            h.dead_letters().await.len(),
            1,
            "the dead letter is still there"
        );
        assert_eq!(state_of(&h, &id).await, "pending");
        assert_eq!(h.ready_in(&h.base).await, 0, "nothing was published");
    };

    // 1. No token configured: read-only, and says so.
    let ro = spawn_dashboard(&h, None).await;
    let b = Browser::start().await;
    b.goto(&ro.url("/dead-letters")).await;
    assert!(
        b.text("#access")
            .await
            .contains("DECAY_DASHBOARD_TOKEN is not set")
    );
    assert_eq!(b.count("tr.letter").await, 1);
    assert_eq!(b.count("button").await, 0, "no action buttons at all");
    b.screenshot("dead-letters-read-only").await;
    let forged = post_form(ro.port, "/dead-letters/requeue", &[], "csrf=x&scope=all").await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("read-only"));
    let login = post_form(ro.port, "/login", &[], &format!("token={TOKEN}")).await;
    assert_eq!(login.status, 403, "nothing to sign in to");
    unchanged().await;

    // 2. Token configured, but this browser has not signed in, or signs in wrongly.
    let dash = spawn_dashboard(&h, Some(TOKEN)).await;
    b.goto(&dash.url(&format!("/jobs/{id}"))).await;
    assert_eq!(
        b.text("#access").await,
        "Read-only until you sign in with the operator token."
    );
    assert_eq!(b.count("#cancel").await, 0);
    b.goto(&dash.url("/login")).await;
    b.type_into("#token", "not-the-operator-token").await;
    b.click("#login").await;
    assert_eq!(
        b.text("#error-detail").await,
        "That is not the operator token."
    );
    b.screenshot("sign-in-refused").await;
    let requeue = |headers: Vec<(&'static str, String)>, body: String| {
        let port = dash.port;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(port, "/dead-letters/requeue", &headers, &body).await
        }
    };
    let no_session = requeue(vec![], "csrf=x&scope=all".into()).await;
    assert_eq!(no_session.status, 403);
    assert!(no_session.body.contains("Sign in"));
    let cancel = post_form(
        dash.port,
        &format!("/jobs/{id}/cancel"),
        &[],
        "csrf=x&reason=no",
    )
    .await;
    assert_eq!(cancel.status, 403);
    let publish = post_form(dash.port, &format!("/jobs/{id}/publish"), &[], "csrf=x").await;
    assert_eq!(publish.status, 403);

    // 3. A valid session, but not the session's CSRF token, or another site's request.
    let (cookie, csrf) = session_over_http(dash.port).await;
    let body = format!("csrf={csrf}&scope=all");
    let bad_csrf = requeue(
        vec![("cookie", cookie.clone())],
        "csrf=0000&scope=all".into(),
    )
    .await;
    assert_eq!(bad_csrf.status, 403);
    assert!(bad_csrf.body.contains("CSRF"));
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
    ] {
        let elsewhere = requeue(
            vec![("cookie", cookie.clone()), (name, value.into())],
            body.clone(),
        )
        .await;
        assert_eq!(elsewhere.status, 403, "{name}: {value}");
    }
    unchanged().await;
    let log = dash.log();
    assert!(log.contains("dashboard action refused"), "{log}");
    assert!(!log.contains(TOKEN), "the token was logged");

    // The same request with everything in order does act: the refusals above were about
    // what they lacked.
    let ok = requeue(vec![("cookie", cookie.clone())], body).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(h.dead_letters().await, vec![]);
    assert_eq!(
        h.ready_in(&h.base).await,
        1,
        "the message is back in the main queue"
    );
    b.close().await;
}

#[sqlx::test(migrations = "./migrations")]
async fn bad_input_gets_a_clear_4xx_page(pool: PgPool) {
    let h = Harness::new(pool).await;
    let mut dash = spawn_dashboard(&h, Some(TOKEN)).await;
    let b = Browser::start().await;
    let unknown = DecayJobId::new();

    b.goto(&dash.url(&format!("/jobs/{unknown}"))).await;
    assert_eq!(
        b.text("#error-detail").await,
        format!("There is no job {unknown}.")
    );
    b.screenshot("unknown-job").await;
    b.goto(&dash.url("/jobs?state=bogus")).await;
    assert!(
        b.text("#error-detail")
            .await
            .contains("`state=bogus` is not accepted")
    );
    b.screenshot("bad-filter").await;
    // The filter form, with a failure code outside the alphabet.
    b.goto(&dash.url("/jobs")).await;
    b.type_into("#f-code", "Not A Code").await;
    b.click("#f-apply").await;
    assert!(b.text("#error-detail").await.contains("failure code"));

    let long = format!("/jobs?code={}", "a".repeat(3000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "unknown job",
            format!("/jobs/{unknown}"),
            404,
            "There is no job",
        ),
        (
            "not a job id",
            "/jobs/not-a-job".into(),
            400,
            "is not a job id",
        ),
        (
            "job id, lowercase",
            format!("/jobs/{}", unknown.to_string().to_lowercase()),
            400,
            "is not a job id",
        ),
        (
            "bad state",
            "/jobs?state=FAILED".into(),
            400,
            "one of pending",
        ),
        (
            "impossible date",
            "/jobs?from=2026-02-30T00%3A00%3A00Z".into(),
            400,
            "no such date",
        ),
        (
            "bad cursor",
            "/jobs?older=yesterday".into(),
            400,
            "list position",
        ),
        (
            "unknown filter",
            "/jobs?colour=red".into(),
            400,
            "unknown parameter",
        ),
        (
            "repeated filter",
            "/jobs?kind=episode_compression&kind=episode_compression".into(),
            400,
            "more than once",
        ),
        (
            "bad letter page",
            "/dead-letters?after=-1".into(),
            400,
            "positive number",
        ),
        ("oversized query", long, 414, "query string"),
        ("no such page", "/no/such/page".into(), 404, "no page"),
    ];
    for (what, path, status, says) in cases {
        let r = http(dash.port, "GET", &path, &[], "").await;
        assert_eq!(r.status, status, "{what}: {path}");
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{what}: an HTML page"
        );
        assert!(r.body.contains(says), "{what}: {}", r.body);
    }
    let wrong_method = http(dash.port, "DELETE", "/jobs", &[], "").await;
    assert_eq!(wrong_method.status, 405);
    let huge_form = post_form(
        dash.port,
        "/login",
        &[],
        &format!("token={}", "x".repeat(64 * 1024)),
    )
    .await;
    assert_eq!(huge_form.status, 413);
    let huge_header = http(
        dash.port,
        "GET",
        "/",
        &[("x-junk", &"y".repeat(32 * 1024))],
        "",
    )
    .await;
    assert_eq!(huge_header.status, 431);
    let page = http(dash.port, "GET", "/", &[], "").await;
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(dash.alive(), "the dashboard survived: {}", dash.log());
    assert!(!dash.log().contains("panicked"));
    b.close().await;
}
