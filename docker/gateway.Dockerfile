# gateway: the Maglev gateway. Built by scripts/images.sh from a context folder that holds only the
# static binary cargo already built for the tests (`+crt-static`, gnu target).
FROM scratch
COPY gateway /gateway
USER 65532:65532
# The Istio YAML is mounted here (compose: ./k8s/istio, Kubernetes: the gateway-istio ConfigMap).
ENV GATEWAY_CONFIG=/etc/sticky/istio \
    GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_ADMIN=127.0.0.1:15000
EXPOSE 8080 15000
# `gateway healthcheck` GETs /healthz on GATEWAY_ADMIN (0.0.0.0 is read as loopback).
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/gateway", "healthcheck"]
ENTRYPOINT ["/gateway"]
CMD ["run"]
