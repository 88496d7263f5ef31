FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY driftloop ./driftloop
COPY consumers ./consumers
COPY detectors ./detectors
COPY retrain ./retrain
RUN pip install --no-cache-dir ".[postgres]"
RUN useradd --create-home driftloop && mkdir -p /var/lib/driftloop && chown driftloop /var/lib/driftloop
USER driftloop
ENTRYPOINT []
