# decay-worker container image.
#
#   docker build -t decay-worker:local .
#
# Stage 1 builds the release binary with the same command the README gives
# (`cargo build --release --locked --bin decay-worker`); stage 2 is a slim Debian runtime
# that runs it as a non-root user.

# ---------------------------------------------------------------------------------------------
# Builder. The project needs rustc >= 1.94 (Cargo.toml `rust-version`); the tag is pinned.
FROM rust:1.95-slim-bookworm AS builder

WORKDIR /build

# No database is reachable while the image builds: sqlx must never try to connect at compile
# time (migrations are embedded by `sqlx::migrate!`, which reads files, not the database).
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# Dependency layer: only the manifests, the lock file and .cargo/ are copied, so this layer is
# rebuilt only when dependencies change. The crate's own sources are stubbed out: an empty
# library, a `main` that does nothing, and a stub for every [[bench]] / [[test]] / [[example]]
# that Cargo.toml declares (cargo refuses to load a manifest whose declared target files are
# missing, even when it does not build them).
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
RUN set -eux; \
    mkdir -p src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    awk ' \
      function flush() { if (kind != "" && name != "") print (path != "" ? path : dir[kind] "/" name ".rs"); kind = ""; name = ""; path = "" } \
      BEGIN { dir["bench"] = "benches"; dir["test"] = "tests"; dir["example"] = "examples" } \
      /^[ \t]*\[/ { flush(); if ($0 ~ /^[ \t]*\[\[(bench|test|example)\]\]/) { kind = $0; gsub(/[\[\] \t]/, "", kind) } next } \
      kind != "" && /^[ \t]*(name|path)[ \t]*=/ { v = $0; k = $0; sub(/^[ \t]*/, "", k); sub(/[ \t]*=.*/, "", k); sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); if (k == "name") name = v; else path = v } \
      END { flush() }' Cargo.toml \
    | while read -r stub; do mkdir -p "$(dirname "$stub")"; echo 'fn main() {}' > "$stub"; done; \
    cargo build --release --locked --bin decay-worker

# Real build. migrations/ must be in place now: `sqlx::migrate!` embeds them into the binary.
# The sources are touched (and the stub crate's fingerprints dropped) so that cargo rebuilds
# the crate instead of trusting the stub build's timestamps.
COPY src/ src/
COPY migrations/ migrations/
RUN set -eux; \
    find src migrations -type f -exec touch {} +; \
    rm -rf target/release/.fingerprint/decay-worker-* \
           target/release/deps/decay_worker-* \
           target/release/deps/libdecay_worker-*; \
    cargo build --release --locked --bin decay-worker; \
    install -m 0755 target/release/decay-worker /usr/local/bin/decay-worker

# ---------------------------------------------------------------------------------------------
# Runtime: Debian slim with CA certificates only (TLS to an LLM backend or an amqps:// broker).
FROM debian:bookworm-slim AS runtime

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 decay; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin decay

COPY --from=builder /usr/local/bin/decay-worker /usr/local/bin/decay-worker

USER 10001:10001

# /healthz, /readyz and /metrics (DECAY_HTTP_ADDR, default 0.0.0.0:9090).
EXPOSE 9090

# The worker drains in-flight jobs on SIGTERM (DECAY_SHUTDOWN_GRACE, default 30s); give the
# container a longer stop timeout than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM

# `decay-worker health` GETs http://127.0.0.1:<port of DECAY_HTTP_ADDR, default 9090>/healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["decay-worker", "health"]

ENTRYPOINT ["decay-worker"]
CMD ["consume"]
