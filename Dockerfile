# syntax=docker/dockerfile:1
# Multi-stage build: the crate compiles offline from the committed .sqlx/ query data
# (no database needed), the runtime image is Debian slim with a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY templates templates
COPY static static
COPY src src
RUN cargo build --release --locked --bin member-portal \
 && strip target/release/member-portal

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin portal
WORKDIR /app
COPY --from=build /src/target/release/member-portal /usr/local/bin/member-portal
COPY static /app/static
ENV STATIC_DIR=/app/static \
    BIND_ADDR=0.0.0.0:3000 \
    LOG_FORMAT=json
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:3000/healthz || exit 1
ENTRYPOINT ["member-portal"]
CMD ["serve"]
