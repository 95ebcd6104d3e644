# The spanflow collector as a container image (docs/install.md). Two stages:
# a static binary built with Go (CGO off), then an image holding only that
# binary, the CA certificates (for Elasticsearch and vCenter over HTTPS) and
# a non-root user. Build it with the commit stamped:
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t spanflow-collector .
# (podman build works the same.)

FROM golang:1.26.8 AS build
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/spanflow ./cmd/spanflow \
 && echo 'spanflow:x:65532:65532:spanflow collector:/nonexistent:/sbin/nologin' >/out/passwd \
 && echo 'spanflow:x:65532:' >/out/group \
 && mkdir -p /out/var/lib/spanflow

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/spanflow /usr/bin/spanflow
# The Elasticsearch spool (es-spool-dir's default): mount a volume here to
# keep it across restarts.
COPY --from=build --chown=65532:65532 /out/var/lib/spanflow /var/lib/spanflow
VOLUME ["/var/lib/spanflow"]
USER 65532:65532
# NetFlow v5/v9, IPFIX (UDP and TCP), sFlow: the standard ports, above 1024,
# so the unprivileged user needs no capability.
EXPOSE 2055/udp 4739/udp 4739/tcp 6343/udp
ENTRYPOINT ["/usr/bin/spanflow"]
# NDJSON on standard output; give `collector run --config FILE` (a mounted
# /etc/spanflow) or flags such as --output elasticsearch --es-url URL instead.
CMD ["collector", "run", "--metrics-listen", ":9109"]
