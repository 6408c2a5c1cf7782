# syntax=docker/dockerfile:1
# users-api image: the compiled service and its CLI, production dependencies only, non-root.
#   docker build -t users-api .
#   docker run --rm -p 8888:8888 -v users-data:/app/data users-api
# Behind a TLS-inspecting proxy, give npm the proxy's CA for the build only (a build secret: it
# never lands in a layer), e.g. the host's system bundle (docs/deployment.md):
#   docker build --secret id=extra_ca,src=/etc/ssl/certs/ca-certificates.crt -t users-api .
# Build and start use the same npm scripts CI runs (npm ci, npm run build, dist/main.js serve).

# Node 26: the active LTS line, supported the longest (CI runs the whole suite on it; the unit
# and integration suites also on Node 24 and 20). Override with --build-arg NODE_IMAGE=...
ARG NODE_IMAGE=node:26-bookworm-slim

# ---- build: dev dependencies, tsc --------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# tsc needs no native module: skip install scripts (prepare would build before src is here).
RUN --mount=type=secret,id=extra_ca \
    NODE_EXTRA_CA_CERTS="$(test -s /run/secrets/extra_ca && echo /run/secrets/extra_ca)" \
    npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY web ./web
RUN npm run build

# ---- prod-deps: production dependencies, native modules built for the runtime's libc ------
FROM ${NODE_IMAGE} AS prod-deps
# better-sqlite3 compiles from source here (node-gyp needs python3, make, g++), against the
# same Debian release and libc as the runtime stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts skips `prepare` (it needs tsc, a dev dependency); better-sqlite3's own
# install script is then run on purpose.
# The optional extra CA (see the top) also reaches better-sqlite3's prebuilt-binary download.
RUN --mount=type=secret,id=extra_ca \
    export NODE_EXTRA_CA_CERTS="$(test -s /run/secrets/extra_ca && echo /run/secrets/extra_ca)" \
 && npm ci --omit=dev --ignore-scripts && npm rebuild better-sqlite3 && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini is PID 1: it forwards SIGTERM/SIGINT to node (which drains and exits 0) and reaps.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    PORT=8888 \
    HOST=0.0.0.0
WORKDIR /app
COPY --chown=node:node package.json ./
COPY --chown=node:node --from=prod-deps /app/node_modules ./node_modules
COPY --chown=node:node --from=build /app/dist ./dist
COPY --chown=node:node data/users.csv ./data/users.csv
# SQLite's default home (DATABASE_URL unset): keep it on a volume.
RUN mkdir -p /app/data /backups && chown node:node /app/data /backups
VOLUME ["/app/data"]
USER node
EXPOSE 8888
# Liveness only (no database I/O), with node itself: the image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8888)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# --min-semi-space-size=16 (MB): V8 starts the young generation at 1 MB and grows it only when
# its heuristics say so; a server that sometimes stayed small spent 8% of its CPU in scavenges
# and answered /healthcheck ~30% slower. The same flags as `npm start` (a test holds them equal).
ENTRYPOINT ["tini", "--", "node", "--enable-source-maps", "--min-semi-space-size=16", "dist/main.js"]
CMD ["serve"]
