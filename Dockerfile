# syntax=docker/dockerfile:1
# llmproxy container: `llmproxy-admin serve` (limiterd + the fork-per-
# connection listener) as a sidecar next to an application.
#
#   docker build -t llmproxy .
#   docker compose up -d          (see compose.yaml and docs/deployment.md)

# ---- build: the -dev packages and make -------------------------------------
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config ca-certificates \
      libsqlite3-dev libcurl4-openssl-dev libssl-dev libcjson-dev libzmq3-dev libseccomp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make clean && make -j"$(nproc)" all \
 && install -d /out/usr/local/bin \
 && install -m 0755 bin/proxyd bin/limiterd bin/llmproxy-admin /out/usr/local/bin/ \
 && ln -s llmproxy-admin /out/usr/local/bin/llm-proxy

# ---- runtime: Debian 12 slim with the shared libraries only ----------------
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libsqlite3-0 libcurl4 libssl3 libcjson1 libzmq5 libseccomp2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so that a host-side key file can be chown'ed to it
# (proxyd refuses a master key readable by group or others).
RUN groupadd --system --gid 10001 llmproxy \
 && useradd --system --uid 10001 --gid llmproxy --home-dir /var/lib/llmproxy \
      --shell /usr/sbin/nologin llmproxy \
 && install -d -m 0700 -o llmproxy -g llmproxy /var/lib/llmproxy
COPY --from=build /out/ /

ENV LLMPROXY_HOME=/var/lib/llmproxy
# The state (database, and the master key unless LLMPROXY_MASTER_KEY_FILE
# points elsewhere, e.g. at a compose secret) lives on this volume.
VOLUME ["/var/lib/llmproxy"]
USER llmproxy:llmproxy
EXPOSE 8132

# No HTTP client in the slim image: bash's /dev/tcp speaks just enough HTTP.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8132 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 4 head -c 12 <&3 | grep -q '^HTTP/1.1 200'"]

# serve forwards SIGTERM to limiterd and proxyd; in-flight requests get
# proxyd's grace period.
STOPSIGNAL SIGTERM
CMD ["llmproxy-admin", "--home", "/var/lib/llmproxy", "serve", "--listen", "0.0.0.0:8132"]
