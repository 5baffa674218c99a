# The control plane: `replicas serve` on port 8321, its data (SQLite, key file, mirrors) in the /data volume.
#   docker build -t replicas:latest .            (or: --build-arg BASE_IMAGE=<a Debian bookworm image>)
# The layers up to the dependencies' are the same as images/workspace/Dockerfile's: the two builds share them.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# EXTRA_CA_CERTS: PEM certificates to trust besides Debian's (a TLS-intercepting proxy's CA, say).
ARG EXTRA_CA_CERTS=
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/replicas/bin:$PATH \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt

# Debian packages, fetched only when the base lacks them (the tests' mmdebstrap base needs no mirror).
RUN set -eu; missing=""; \
    for p in python3 python3-venv git ca-certificates; do \
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"; done; \
    if [ -n "$missing" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; fi; \
    if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra.crt \
      && update-ca-certificates >/dev/null; fi

# The dependencies first (their layer survives source changes), then the package itself.
COPY pyproject.toml /opt/replicas-src/pyproject.toml
RUN python3 -m venv /opt/replicas \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/opt/replicas-src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -q -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY README.md /opt/replicas-src/README.md
COPY src /opt/replicas-src/src
RUN pip install -q --no-deps /opt/replicas-src && rm -rf /opt/replicas-src

# uid 1000 (the tests' base already has it); /data is created before VOLUME so a new volume is owned by it.
RUN id -u replicas >/dev/null 2>&1 \
      || useradd --uid 1000 --user-group --create-home --home-dir /home/replicas --shell /bin/bash replicas; \
    mkdir -p /data && chown 1000:1000 /data

ENV REPLICAS_DATA_DIR=/data REPLICAS_HOST=0.0.0.0 REPLICAS_PORT=8321
VOLUME /data
USER 1000:1000
WORKDIR /home/replicas
EXPOSE 8321
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
  CMD ["/opt/replicas/bin/python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REPLICAS_PORT', '8321'), timeout=4)"]
CMD ["replicas", "serve", "--host", "0.0.0.0"]
