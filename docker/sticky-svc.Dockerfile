# sticky-svc: the workload. Built by scripts/images.sh from a context folder that holds only the
# static binary cargo already built for the tests (`+crt-static`, gnu target): no toolchain, no
# base image, nothing to pull. The image is the binary, a non-root user and a health check.
FROM scratch
COPY sticky-svc /sticky-svc
# The same non-root uid/gid the Kubernetes manifests run as (distroless "nonroot").
USER 65532:65532
ENV LISTEN=0.0.0.0:8080
EXPOSE 8080
# No shell or curl in the image: the binary probes its own /healthz on LISTEN's port.
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/sticky-svc", "healthcheck"]
ENTRYPOINT ["/sticky-svc"]
