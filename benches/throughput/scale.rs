//! Many terminal rows: does pick-up stay fast?

use crate::*;

impl Bench {
    /// Insert `rows` completed jobs directly, then VACUUM ANALYZE. Returns seconds taken.
    pub(crate) async fn insert_terminal_rows(&self, rows: i64) -> Result<f64> {
        let t0 = Instant::now();
        let src: String = sqlx::query_scalar("SELECT id FROM memories LIMIT 1")
            .fetch_one(self.pool())
            .await
            .context("no memory to reference")?;
        let chunk = 250_000i64;
        let mut from = 1i64;
        while from <= rows {
            let to = (from + chunk - 1).min(rows);
            sqlx::query(
                "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state,
                        scheduled_for, created_at, created_by, updated_at, attempts, claimed_by)
                 SELECT 'dcy_7' || lpad(upper(to_hex(g)), 25, '0'), 'candidate_compression',
                        'deterministic_concatenate', jsonb_build_array($3::text), 'completed',
                        $4 - g * interval '1 second', $4 - g * interval '1 second',
                        'operator:bench/scale', $4 - g * interval '1 second', 1, 'bench/scale'
                   FROM generate_series($1::bigint, $2::bigint) AS g",
            )
            .bind(from)
            .bind(to)
            .bind(&src)
            .bind(Utc::now() - chrono::Duration::days(1))
            .execute(self.pool())
            .await
            .context("inserting terminal rows")?;
            from = to + 1;
        }
        sqlx::raw_sql("VACUUM ANALYZE decay_jobs")
            .execute(self.pool())
            .await
            .context("VACUUM ANALYZE")?;
        Ok(t0.elapsed().as_secs_f64())
    }
}
