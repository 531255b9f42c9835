# The headrace server: `docker build -t headrace .`, or `docker compose up`
# (docker-compose.yaml) for the server with Kafka and PostgreSQL.

# --- build: the wheel, with the Rust extension compiled in release mode -------
FROM python:3.11-slim-bookworm AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --default-toolchain stable --no-modify-path \
 && pip install --no-cache-dir "maturin>=1.9.4,<2"

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY rust ./rust
COPY pyproject.toml README.md ./
COPY python ./python
RUN maturin build --release --locked --interpreter python3.11 --out /wheels

# --- runtime: the wheel and its dependencies, no toolchain --------------------
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)[postgres]" \
 && rm -rf /wheels

RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home headrace \
 && mkdir -p /data \
 && chown headrace:headrace /data
VOLUME /data
WORKDIR /data
USER headrace

# Bind all interfaces: a server on 127.0.0.1 inside a container is unreachable
# from outside it. Publish the port on the host's 127.0.0.1 (see docker-compose.yaml).
ENV HEADRACE_HOST=0.0.0.0 HEADRACE_PORT=8080 HEADRACE_DATA_DIR=/data
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

CMD ["headrace", "serve"]
