# loadtest: the goose scenarios, run inside the compose network (`just load`) or as a Kubernetes
# Job. Built by scripts/images.sh when the workspace has the `loadtest` binary.
FROM scratch
COPY loadtest /loadtest
USER 65532:65532
ENTRYPOINT ["/loadtest"]
