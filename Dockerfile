FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftloop ./driftloop
COPY consumers ./consumers
COPY detectors ./detectors
COPY retrain ./retrain
RUN pip install --no-cache-dir ".[postgres]"
# /var/lib/driftloop is the driftloop-state volume: a fresh named volume takes this folder's
# owner, so the store and registry.artifact_dir (/var/lib/driftloop/artifacts) are writable
RUN useradd --create-home driftloop && mkdir -p /var/lib/driftloop/artifacts && chown -R driftloop /var/lib/driftloop
USER driftloop
ENTRYPOINT []
