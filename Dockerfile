# syntax=docker/dockerfile:1
# Atoll: multi-stage build, non-root runtime. The SQLite database lives on the /data volume; with
# DATABASE_URL=postgresql://… (deploy/compose.yaml) the node applies PostgreSQL's migrations at start-up.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 is compiled from source (no prebuilt download needed).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY . .
# `npm ci` runs `prepare`: prisma generate (offline-safe), tsc into dist/, and the web pages into web/dist/.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=file:/data/atoll.db
WORKDIR /app
# The code stays root's (readable, not writable, by node): nothing running as node, agent code included,
# can change what the next start runs. Only /data is node's.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/web/dist ./web/dist
COPY --from=build /app/prisma/sqlite/migrations ./prisma/sqlite/migrations
COPY --from=build /app/prisma/postgresql/migrations ./prisma/postgresql/migrations
RUN mkdir -p /data && chown node:node /data
# As node, cells share the front's OS user: Node's permission model and the threads' guards are the walls
# (README, Threat model). `docker run --user root` also gives each cell an OS user of its own (CELL_UID_BASE).
USER node
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Exec form: SIGTERM reaches node directly, so runs drain gracefully.
CMD ["node", "dist/server/main.js"]
