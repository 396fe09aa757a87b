# gameday's container image: the `gameday` binary on distroless, nothing else.
#
#   docker build -t gameday:0.1.0 .
#
# The runtime image holds the binary, CA certificates (TLS to AWS), the time
# zone database (schedules and policy windows in IANA zones) and glibc: no
# shell, no package manager, no experiments. Experiments and the safety
# policy are the team's, and change more often than gameday: mount them
# (Kubernetes ConfigMaps, deploy/kubernetes/cronjob.yaml) or bake them into an
# image of your own FROM this one (README, "Deploying"). It runs as the
# unprivileged user 65532 and writes only to /tmp (the runs store's scratch
# copy), so the root file system can be read-only.
#
# Pin the base images by digest in your own builds (`image:tag@sha256:...`):
# the tags below are exact versions, but a tag can be moved.

# --- build: the release binary, `--locked` to Cargo.lock ---------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Strip symbols: the image carries no debugger, and the binary shrinks by half.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gameday \
    && install -D -m 0755 target/release/gameday /out/gameday

# --- runtime: distroless with glibc, CA certificates and tzdata ---------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gameday /usr/local/bin/gameday
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /gameday
ENTRYPOINT ["/usr/local/bin/gameday"]
CMD ["--help"]
