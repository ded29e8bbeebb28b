# handoff: router, gateway and the all-in-one, built in one stage, run from a small
# non-root image with nothing but the binaries and CA certificates. The image holds no
# config to run: mount yours at /etc/handoff/handoff.toml (secrets as HANDOFF__...
# variables). Without one the binaries refuse to start, so an image never serves the
# example config's published tokens.
#
#   docker build -t handoff .
#   docker run --rm -p 8080:8080 -v "$PWD/handoff.toml:/etc/handoff/handoff.toml:ro" \
#     -v /srv/handoff:/var/lib/handoff handoff                    # the all-in-one
#   docker run --rm -p 50051:50051 -v "$PWD/handoff.toml:/etc/handoff/handoff.toml:ro" \
#     -v /srv/handoff:/var/lib/handoff -e HANDOFF__ROUTER__LISTEN=0.0.0.0:50051 \
#     handoff handoff-router --config /etc/handoff/handoff.toml
#
# The gateway binds 0.0.0.0:8080 inside the container; the router's gRPC port stays on the
# container's loopback unless HANDOFF__ROUTER__LISTEN says otherwise (the all-in-one needs
# no one else to reach it). The example config is in /usr/share/doc/handoff for reference.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin handoff --bin handoff-router --bin handoff-gateway \
 && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/handoff /src/target/release/handoff-router \
     /src/target/release/handoff-gateway /usr/local/bin/
COPY --from=build /src/config/handoff.example.toml /usr/share/doc/handoff/handoff.example.toml
# The state directory, writable by the image's user (distroless nonroot is 65532).
COPY --from=build --chown=65532:65532 /state /var/lib/handoff
ENV HANDOFF__ROUTER__LISTEN=127.0.0.1:50051 \
    HANDOFF__GATEWAY__LISTEN=0.0.0.0:8080 \
    HANDOFF__ROUTER__STORE__PATH=/var/lib/handoff/handoff.redb
WORKDIR /var/lib/handoff
USER 65532:65532
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/handoff"]
CMD ["--config", "/etc/handoff/handoff.toml"]
