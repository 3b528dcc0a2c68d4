# syntax=docker/dockerfile:1
# ZimChat homeserver image: `docker build -t zimchat .`
#
# Build stage: install from the lockfile (better-sqlite3 compiles its addon
# here, hence the full bookworm image with python3/make/g++), generate the
# Prisma clients, compile, then drop the dev dependencies. --omit=optional
# too: prisma and typescript are optional peers of @prisma/client that prune
# would otherwise keep (the generated client is compiled and needs neither);
# the only other optional package, pg-cloudflare, is for Cloudflare Workers.
#
# NODE_VERSION is the Node major line of both stages: the current LTS by
# default, another with `--build-arg NODE_VERSION=26`. The code itself runs
# on Node 20.19 and later.
ARG NODE_VERSION=24
FROM docker.io/library/node:${NODE_VERSION}-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY protocol/package.json protocol/
COPY client/package.json client/
COPY plugin-sdk/package.json plugin-sdk/
COPY server/package.json server/
COPY plugins/package.json plugins/
COPY bridge/package.json bridge/
COPY testing/package.json testing/
COPY examples/package.json examples/
COPY bench/package.json bench/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build \
 && npm prune --omit=dev --omit=optional --no-audit --no-fund \
 && rm -rf */dist/test */dist/*.tsbuildinfo \
 && mkdir -p server/node_modules

# Runtime stage: the compiled workspaces, production node_modules and the
# committed migrations (`zimchat serve` applies pending ones at start-up).
FROM docker.io/library/node:${NODE_VERSION}-bookworm-slim
LABEL org.opencontainers.image.title="ZimChat homeserver" \
      org.opencontainers.image.description="Self-hosted, end-to-end encrypted messaging homeserver" \
      org.opencontainers.image.licenses="AGPL-3.0-only" \
      org.opencontainers.image.vendor="ZimChat"
ENV NODE_ENV=production \
    ZIMCHAT_DATA_DIR=/data \
    PORT=8080 \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/prisma/migrations ./prisma/migrations
COPY --from=build /src/protocol/package.json ./protocol/
COPY --from=build /src/protocol/dist ./protocol/dist
COPY --from=build /src/client/package.json ./client/
COPY --from=build /src/client/dist ./client/dist
COPY --from=build /src/plugin-sdk/package.json ./plugin-sdk/
COPY --from=build /src/plugin-sdk/dist ./plugin-sdk/dist
COPY --from=build /src/plugins/package.json ./plugins/
COPY --from=build /src/plugins/dist ./plugins/dist
# The bridges (`zimchat-bridge irc|xmpp --config <file>`; the `bridge` profile of examples/docker-compose.yml).
COPY --from=build /src/bridge/package.json ./bridge/
COPY --from=build /src/bridge/dist ./bridge/dist
COPY --from=build /src/server/package.json ./server/
COPY --from=build /src/server/bin ./server/bin
COPY --from=build /src/server/dist ./server/dist
# The server's own dependencies that npm could not hoist (a version that
# differs from one at the root, e.g. ipaddr.js 2 beside express's 1.x).
COPY --from=build /src/server/node_modules ./server/node_modules
# The node image's unprivileged user (uid 1000); /data holds the SQLite
# database, server keys and attachments (0700: the server creates its files
# 0600). An image cannot set its descriptor limit: run it with
# `--ulimit nofile=65536:65536` (examples/docker-compose.yml sets `ulimits`).
RUN mkdir -p /data && chown node:node /data && chmod 700 /data \
 && ln -s /app/server/bin/zimchat.js /usr/local/bin/zimchat \
 && printf '#!/bin/sh\nexec node /app/bridge/dist/src/main.js "$@"\n' > /usr/local/bin/zimchat-bridge \
 && chmod 755 /usr/local/bin/zimchat-bridge
USER node
VOLUME /data
EXPOSE 8080
# The slim image has no curl: ask node's fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/server/bin/zimchat.js", "serve"]
