# decay-worker container image.
#
#   docker build -t decay-worker:local .
#
# The builder stages compile the release binary with the same command the README gives
# (`cargo build --release --locked --bin decay-worker`); the last stage is a slim Debian
# runtime that runs it as a non-root user.

# ---------------------------------------------------------------------------------------------
# Builder. The project needs rustc >= 1.94 (Cargo.toml `rust-version`); the tag is pinned.
# Dependencies are cached with cargo-chef (pinned): `prepare` reduces the workspace to a recipe
# (manifests, lock file, .cargo/config.toml, stub targets), `cook` builds only the dependencies
# from it, so that layer is rebuilt only when dependencies change.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /build
# No database is reachable while the image builds: sqlx must never try to connect at compile
# time (migrations are embedded by `sqlx::migrate!`, which reads files, not the database).
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin decay-worker
# The real build: the same command the README gives.
COPY . .
RUN cargo build --release --locked --bin decay-worker \
    && install -m 0755 target/release/decay-worker /usr/local/bin/decay-worker

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

# A working directory the non-root user can write (`attest keygen --out`, envelopes), and the
# directory workers read LLM attestations from (mount a volume there; DECAY_ATTESTATION_DIR).
RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/decay-worker /attestations
WORKDIR /var/lib/decay-worker

USER 10001:10001

# /healthz, /readyz and /metrics (DECAY_HTTP_ADDR, default 0.0.0.0:9090).
EXPOSE 9090
# `decay-worker dashboard` (DECAY_DASHBOARD_ADDR); compose runs it as its own service.
EXPOSE 8080

# The worker drains in-flight jobs on SIGTERM (DECAY_SHUTDOWN_GRACE, default 30s); give the
# container a longer stop timeout than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM

# `decay-worker health` GETs http://127.0.0.1:<port of DECAY_HTTP_ADDR, default 9090>/healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["decay-worker", "health"]

ENTRYPOINT ["decay-worker"]
CMD ["consume"]
