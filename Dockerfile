# Rapport: one image, one binary. Each Deployment picks its role with
# `rapport serve -target=<customer|ticket|loyalty|survey|gateway>`; see
# deploy/k8s. Build from the repository root: docker build -t rapport:dev .

# Build inside the go.work workspace, statically, without VCS stamping (the
# .git directory is not in the context).
FROM golang:1.26.8 AS build
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -o /rapport ./services/rapport

# Distroless static: CA certificates, tzdata and a nonroot user (65532), no
# shell. The manifests run it with a read-only root filesystem.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /rapport /rapport
USER 65532:65532
EXPOSE 9090 8080
ENTRYPOINT ["/rapport"]
CMD ["serve"]
