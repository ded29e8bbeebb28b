# handoff: router, gateway and the all-in-one, built in one stage, run from a small
# non-root image with nothing but the binaries, the example config and CA certificates.
#
#   docker build -t handoff .
#   docker run --rm -p 8080:8080 handoff                        # the all-in-one, example config
#   docker run --rm -p 50051:50051 -v /srv/handoff:/var/lib/handoff \
#     -e HANDOFF__ROUTER__STORE__PATH=/var/lib/handoff/handoff.redb \
#     handoff handoff-router --config /etc/handoff/handoff.toml
#
# Listeners bind 0.0.0.0 inside the container (the example config's 127.0.0.1 would not be
# reachable from outside it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin handoff --bin handoff-router --bin handoff-gateway \
 && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/handoff /src/target/release/handoff-router \
     /src/target/release/handoff-gateway /usr/local/bin/
COPY --from=build /src/config/handoff.example.toml /etc/handoff/handoff.toml
# The state directory, writable by the image's user (distroless nonroot is 65532).
COPY --from=build --chown=65532:65532 /state /var/lib/handoff
ENV HANDOFF__ROUTER__LISTEN=0.0.0.0:50051 \
    HANDOFF__GATEWAY__LISTEN=0.0.0.0:8080 \
    HANDOFF__ROUTER__STORE__PATH=/var/lib/handoff/handoff.redb
WORKDIR /var/lib/handoff
USER 65532:65532
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/handoff"]
CMD ["--config", "/etc/handoff/handoff.toml"]
