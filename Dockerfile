# syntax=docker/dockerfile:1
# Atoll: multi-stage build, non-root runtime. The SQLite database lives on the /data volume; with
# DATABASE_URL=postgresql://… (deploy/compose.yaml) the node applies PostgreSQL's migrations at start-up.
# tests/container-image.test.ts replays the runtime stage's COPY lines and starts the server from exactly that.

# Node 24 LTS, pinned by version (a digest pin, `node:24.20.0-bookworm-slim@sha256:…`, is stricter still: take
# it from `docker buildx imagetools inspect` when you build). Atoll also runs on Node 20.19+ and 22.
ARG NODE_IMAGE=node:24.20.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# better-sqlite3 is compiled from source (no prebuilt download needed).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# The npm the project is developed with: it reads package.json's `allowScripts` (npm 11.16 and later).
RUN npm install -g npm@11.19.1 --no-audit --no-fund
# Dependencies first, on their own layer: rebuilt only when package.json or the lock file changes, not on every
# source edit. The project's own `prepare` (the build) needs the sources, so install scripts are held back here
# and better-sqlite3's, the one native package (allowScripts), runs by itself.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 --no-audit --no-fund
COPY . .
# The build (scripts/build.js: Prisma clients, tsc into dist/, the web pages into web/dist/), then what the
# runtime stage copies is cut to what the server loads: production packages only, without the optional peers
# and native build leftovers that `npm prune` keeps (scripts/prune-runtime.js).
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && node scripts/prune-runtime.js

FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: it forwards SIGTERM to node and reaps orphans (a killed cell's children would otherwise stay
# <defunct> until the server exits). Same as `docker run --init`, built in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# SHUTDOWN_GRACE_MS: 7 s for running runs, then 0.5 s of cancel grace and ~1 s to close: the drain fits within
# Docker's default 10 s between SIGTERM and SIGKILL. For a longer grace raise both:
# `docker run --stop-timeout 40 -e SHUTDOWN_GRACE_MS=30000` (compose: stop_grace_period).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=file:/data/atoll.db \
    SHUTDOWN_GRACE_MS=7000
WORKDIR /app
# The code stays root's (readable, not writable, by node): nothing running as node, agent code included,
# can change what the next start runs. Only /data is node's.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/web/dist ./web/dist
COPY --from=build /app/prisma/sqlite/migrations ./prisma/sqlite/migrations
COPY --from=build /app/prisma/postgresql/migrations ./prisma/postgresql/migrations
# `npm start` and `npm run db:migrate` work in the image too: with no sources here, scripts/build.js builds nothing.
COPY --from=build /app/scripts/build.js ./scripts/build.js
COPY --from=build /app/scripts/start.js ./scripts/start.js
RUN mkdir -p /data && chown node:node /data
# As node, cells share the front's OS user: Node's permission model and the threads' guards are the walls
# (README, Threat model). `docker run --user root` also gives each cell an OS user of its own (CELL_UID_BASE).
USER node
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# SIGTERM drains runs gracefully (tini passes it on to node).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server/main.js"]
