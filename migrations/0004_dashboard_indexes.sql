-- Indexes of the operator dashboard (issue 14). Its jobs list is newest-change first, filtered
-- by state, kind, failure code and an `updated_at` range, and paged by keyset on
-- (updated_at, id); its overview charts completed and failed jobs per minute and counts jobs
-- by state and kind. Each of those reads walks one of these indexes instead of the table, so
-- they stay fast with millions of terminal rows (EXPLAIN numbers in the README).
--
-- `IF NOT EXISTS`: on a large table an operator can build them first without blocking the
-- workers, with `CREATE INDEX CONCURRENTLY` and these exact definitions, and this migration
-- then only records itself.

-- The jobs list, whatever its filter (a page merges one walk per state, so no separate
-- (updated_at, id) index has to be kept up to date by every state change), the per-minute
-- chart (state IN ('completed', 'failed') AND updated_at >= ...) and the counts by state and
-- kind: INCLUDE (kind) makes those counts index-only scans.
CREATE INDEX IF NOT EXISTS idx_decay_jobs_state_updated
    ON decay_jobs (state, updated_at, id) INCLUDE (kind);

-- A failure-code filter and the failures-by-code counts. `failure_code` is set exactly when
-- the job failed (decay_jobs_state_payload), so the partial index holds failed jobs only.
CREATE INDEX IF NOT EXISTS idx_decay_jobs_failed_code
    ON decay_jobs (failure_code, updated_at, id) WHERE state = 'failed';
