# syntax=docker/dockerfile:1
# The images of `make images` for those who build with Docker (or BuildKit, Podman, Kaniko):
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target sb-operator -t REGISTRY/sb-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --target sb-agent    -t REGISTRY/sb-agent:0.1.0 .
#
# (add --build-arg SB_GIT_COMMIT=$(git rev-parse HEAD): .git stays out of the build context,
# so --version would otherwise say "commit unknown")
#
# The runtime stage has the layout scripts/oci-image writes: an empty base holding only the
# static binary at /usr/local/bin/<binary>, the pinned CA bundle at
# /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group with the nonroot user
# 65532, /home/nonroot, /tmp and (for the operator) /var/lib/secrets-bridge; no shell. The
# build stage compiles with the same pinned zig, cargo-zigbuild and certifi as
# scripts/release.sh. `make images` stays the reference (reproducible, no daemon); this file
# is not exercised by the tests, which have no container engine.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
ARG SB_GIT_COMMIT=unknown
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY scripts/release-requirements.txt scripts/
RUN python3 -m venv /opt/release && /opt/release/bin/pip install --no-deps --require-hashes -r scripts/release-requirements.txt
ENV PATH=/opt/release/bin:$PATH
COPY . .
# One cargo run per binary, as scripts/release.sh does (no feature unification between them).
RUN case "$TARGETARCH" in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; *) exit 1 ;; esac >/target-triple \
 && rustup target add "$(cat /target-triple)" \
 && for bin in sb-operator sb-agent; do \
      SB_GIT_COMMIT="$SB_GIT_COMMIT" cargo zigbuild --locked --release --target "$(cat /target-triple)" -p "$bin" || exit 1; \
    done \
 && mkdir -p /out /rootfs/etc/ssl/certs /rootfs/home/nonroot /rootfs/tmp /rootfs/usr/local/bin /data/var/lib/secrets-bridge \
 && cp "target/$(cat /target-triple)/release/sb-operator" "target/$(cat /target-triple)/release/sb-agent" /out/ \
 && cp "$(/opt/release/bin/python -c 'import certifi; print(certifi.where())')" /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && chmod 1777 /rootfs/tmp && chmod 0700 /rootfs/home/nonroot /data/var/lib/secrets-bridge \
 && chown 65532:65532 /rootfs/home/nonroot /data/var/lib/secrets-bridge

FROM scratch AS base
COPY --from=build /rootfs/ /
# COPY makes files root-owned; the nonroot user's home is its own.
COPY --from=build --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /
LABEL org.opencontainers.image.source="https://github.com/secrets-bridge/secrets-bridge" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Secrets Bridge"

FROM base AS sb-agent
COPY --from=build /out/sb-agent /usr/local/bin/sb-agent
LABEL org.opencontainers.image.title="sb-agent"
ENTRYPOINT ["/usr/local/bin/sb-agent"]

# The operator's store volume mounts here; the directory belongs to the nonroot user.
FROM base AS sb-operator
COPY --from=build --chown=65532:65532 /data/var/lib/secrets-bridge /var/lib/secrets-bridge
COPY --from=build /out/sb-operator /usr/local/bin/sb-operator
LABEL org.opencontainers.image.title="sb-operator"
ENTRYPOINT ["/usr/local/bin/sb-operator"]
